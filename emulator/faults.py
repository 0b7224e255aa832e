"""Fault rules: which requests misbehave, and how.

A rule is added with `POST /_emulator/faults`; the first rule that matches a
request's method and path and still has uses left fires (the server carries
out the action).

WebSocket stream connections (their upgrade requests) are matched too: the
`stream_*` actions apply only to them (and only once the upgrade is
accepted), and of the HTTP actions only those in UPGRADE_ACTIONS, which make
sense for an upgrade request; a rule whose action does not apply to a
request never matches it (and keeps its uses).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .errors import bad_argument, default_code

HTTP_ACTIONS = ("status", "deliver_then_fail", "hang", "close", "close_mid", "short_body",
                "garbage", "wrong_type", "slow", "delay", "huge_header", "invalid_utf8")
# What the stream does after `frames` ActivitySet messages on one connection.
STREAM_ACTIONS = ("stream_close", "stream_drop", "stream_silent", "stream_collision")
ACTIONS = HTTP_ACTIONS + STREAM_ACTIONS
# HTTP actions that also apply to a stream's upgrade request.
UPGRADE_ACTIONS = ("status", "hang", "close", "delay", "garbage", "wrong_type")
DEFAULT_SECONDS = {"hang": 3600.0, "slow": 2.0, "delay": 1.0, "stream_silent": 3600.0}
DEFAULT_CLOSE_CODES = {"stream_close": 1000, "stream_collision": 1008}
COLLISION_REASON = "collision"
_KEYS = {"method", "path", "count", "skip", "action", "status", "code", "message",
         "retryAfter", "location", "seconds", "bare", "frames", "closeCode", "closeReason"}


def valid_close_code(code) -> bool:
    """A close code a server may send (RFC 6455 7.4: not 1004-1006 or 1015)."""
    if isinstance(code, bool) or not isinstance(code, int):
        return False
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass
class Fault:
    id: int
    action: str
    method: str | None
    path: str | None
    count: int
    status: int | None
    code: str | None
    message: str | None
    retry_after: str | None
    seconds: float
    location: str | None = None
    # Matching requests to let through before the rule fires.
    skip: int = 0
    # The error comes from an intermediary (a gateway's HTML page), not the
    # service (its error JSON).
    bare: bool = False
    # Stream actions: ActivitySet messages sent before the action, and the
    # close frame's code and reason.
    frames: int = 0
    close_code: int | None = None
    close_reason: str | None = None

    def applies_to(self, stream: bool) -> bool:
        if stream:
            return self.action in STREAM_ACTIONS or self.action in UPGRADE_ACTIONS
        return self.action not in STREAM_ACTIONS

    def matches(self, method: str, path: str, stream: bool = False) -> bool:
        if self.count == 0 or not self.applies_to(stream):
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None

    def as_json(self) -> dict:
        return {"id": self.id, "action": self.action, "method": self.method,
                "path": self.path, "count": self.count, "status": self.status,
                "code": self.code, "message": self.message,
                "retryAfter": self.retry_after, "location": self.location,
                "seconds": self.seconds, "skip": self.skip, "bare": self.bare,
                "frames": self.frames, "closeCode": self.close_code,
                "closeReason": self.close_reason}


def _optional_string(spec: dict, key: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_argument(f"fault {key} must be a string")
    return value


def _header_safe(value: str, key: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise bad_argument(f"fault {key} must not contain control characters")
    return value


def parse_fault(spec: dict, fault_id: int) -> Fault:
    """Validate a rule from its JSON form; unknown keys are refused."""
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise bad_argument(f"unknown fault key(s): {', '.join(unknown)}")
    action = spec.get("action")
    if action not in ACTIONS:
        raise bad_argument(f"fault action must be one of: {', '.join(ACTIONS)}")
    method = _optional_string(spec, "method")
    path = _optional_string(spec, "path")
    if path is not None:
        try:
            re.compile(path)
        except re.error as exc:
            raise bad_argument(f"fault path is not a valid regular expression: {exc}") from None
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or (count < 1 and count != -1):
        raise bad_argument("fault count must be a positive integer or -1 (forever)")
    bare = spec.get("bare", False)
    if not isinstance(bare, bool):
        raise bad_argument("fault bare must be true or false")
    skip = spec.get("skip", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise bad_argument("fault skip must be a non-negative integer")
    status = spec.get("status", 502 if action == "deliver_then_fail" else None)
    if action in ("status", "deliver_then_fail"):
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise bad_argument("fault status must be an integer from 200 to 599")
    elif status is not None:
        raise bad_argument(f"fault action {action} takes no status")
    if "seconds" in spec and action not in DEFAULT_SECONDS:
        raise bad_argument(f"fault action {action} takes no seconds")
    seconds = spec.get("seconds", DEFAULT_SECONDS.get(action, 0.0))
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 86400:
        raise bad_argument("fault seconds must be a number from 0 to 86400")
    retry_after = spec.get("retryAfter")
    if isinstance(retry_after, int) and not isinstance(retry_after, bool):
        retry_after = str(retry_after)
    elif retry_after is not None and not isinstance(retry_after, str):
        raise bad_argument("fault retryAfter must be a string")
    if retry_after is not None:
        _header_safe(retry_after, "retryAfter")
    location = _optional_string(spec, "location")
    if location is not None:
        _header_safe(location, "location")
    frames, close_code, close_reason = _stream_parameters(spec, action)
    code = _optional_string(spec, "code")
    message = _optional_string(spec, "message")
    if bare and status is None:
        raise bad_argument(f"fault action {action} takes no bare")
    if status is None:
        if code is not None or message is not None or retry_after is not None or location is not None:
            raise bad_argument(f"fault action {action} takes no code, message, retryAfter or location")
    else:
        code = code or default_code(status)
        message = message or f"injected fault: HTTP {status}"
    return Fault(id=fault_id, action=action,
                 method=method.upper() if method else None, path=path, count=count,
                 status=status, code=code, message=message,
                 retry_after=retry_after, seconds=float(seconds), location=location, skip=skip, bare=bare,
                 frames=frames, close_code=close_code, close_reason=close_reason)


def _stream_parameters(spec: dict, action: str) -> tuple[int, int | None, str | None]:
    """`frames` (stream actions), `closeCode` (close, collision), `closeReason` (close)."""
    if action not in STREAM_ACTIONS:
        if any(key in spec for key in ("frames", "closeCode", "closeReason")):
            raise bad_argument(f"fault action {action} takes no frames, closeCode or closeReason")
        return 0, None, None
    frames = spec.get("frames", 0)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        raise bad_argument("fault frames must be a non-negative integer")
    if action not in DEFAULT_CLOSE_CODES:
        if "closeCode" in spec or "closeReason" in spec:
            raise bad_argument(f"fault action {action} takes no closeCode or closeReason")
        return frames, None, None
    close_code = spec.get("closeCode", DEFAULT_CLOSE_CODES[action])
    if not valid_close_code(close_code):
        raise bad_argument("fault closeCode must be 1000-1003, 1007-1014 or 3000-4999")
    if action == "stream_collision":
        if "closeReason" in spec:
            raise bad_argument("fault action stream_collision takes no closeReason (it is collision)")
        return frames, close_code, COLLISION_REASON
    close_reason = _optional_string(spec, "closeReason") or ""
    if len(close_reason.encode("utf-8")) > 123:
        raise bad_argument("fault closeReason must be at most 123 bytes of UTF-8")
    return frames, close_code, close_reason


class FaultBook:
    """The ordered rule list. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._next_id = 1

    def add(self, spec: dict) -> Fault:
        with self._lock:
            fault = parse_fault(spec, self._next_id)
            self._next_id += 1
            self._rules.append(fault)
            return fault

    def take(self, method: str, path: str, stream: bool = False,
             actions: tuple[str, ...] | None = None) -> Fault | None:
        """The first matching rule with uses left, using one of them up.

        `stream`: the request is a WebSocket stream's upgrade; `actions`: only
        rules with one of these actions are considered."""
        with self._lock:
            for rule in self._rules:
                if actions is not None and rule.action not in actions:
                    continue
                if rule.matches(method, path, stream):
                    if rule.skip > 0:
                        rule.skip -= 1
                        continue
                    if rule.count > 0:
                        rule.count -= 1
                    return rule
            return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def as_json(self) -> list[dict]:
        with self._lock:
            return [rule.as_json() for rule in self._rules]
