"""Fault rules: which requests misbehave, and how.

A rule is added with `POST /_emulator/faults`; the first rule that matches a
request's method and path and still has uses left fires (the server carries
out the action).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .errors import bad_argument, default_code

ACTIONS = ("status", "deliver_then_fail", "hang", "close", "close_mid", "short_body",
           "garbage", "wrong_type", "slow", "delay", "huge_header", "invalid_utf8")
DEFAULT_SECONDS = {"hang": 3600.0, "slow": 2.0, "delay": 1.0}
_KEYS = {"method", "path", "count", "skip", "action", "status", "code", "message",
         "retryAfter", "location", "seconds", "bare"}


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

    def matches(self, method: str, path: str) -> bool:
        if self.count == 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None

    def as_json(self) -> dict:
        return {"id": self.id, "action": self.action, "method": self.method,
                "path": self.path, "count": self.count, "status": self.status,
                "code": self.code, "message": self.message,
                "retryAfter": self.retry_after, "location": self.location,
                "seconds": self.seconds, "skip": self.skip, "bare": self.bare}


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
                 retry_after=retry_after, seconds=float(seconds), location=location, skip=skip, bare=bare)


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

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching rule with uses left, using one of them up."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
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
