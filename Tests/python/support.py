"""Helpers shared by the Python tests: paths, the emulator's control API, shapes."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
BINDINGS = REPO_ROOT / "bindings" / "python"
SECRET = "emulator-secret"
PROTOCOLS = ("3.0", "1.1")
BANNER = "directline-emulator listening on "


def read_banner(process: subprocess.Popen, timeout: float) -> str:
    """The URL from the emulator's first line."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise RuntimeError(f"the emulator printed nothing within {timeout} s")
    line = process.stdout.readline().strip()
    if not line.startswith(BANNER):
        raise RuntimeError(f"unexpected first line from the emulator: {line!r}")
    return line[len(BANNER):]


@contextlib.contextmanager
def emulator_running(*arguments: str, prefix: Sequence[str] = ()) -> Iterator[str]:
    """Runs `python3 -m emulator` on a free port (after `prefix`, e.g. `ip
    netns exec NAME`) with the tests' secret; yields its URL, stops it after."""
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "emulator", "--port", "0", "--secret", SECRET, "--quiet", *arguments],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield read_banner(process, timeout=15)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


class Emulator:
    """A running emulator and its control API (which needs no auth)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _control(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/_emulator/" + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def reset(self) -> None:
        self._control("POST", "reset", {})

    def configure(self, **settings: Any) -> None:
        """POST /_emulator/config, e.g. tokenLifetime=1, nullWatermark=True."""
        self._control("POST", "config", settings)

    def fault(self, **rule: Any) -> None:
        """POST /_emulator/faults; see the emulator's docs for the keys."""
        self._control("POST", "faults", rule)

    def requests(self) -> list[dict]:
        """Every non-control request received since the last reset."""
        return self._control("GET", "requests")["requests"]

    def conversations(self) -> list[dict]:
        """GET /_emulator/conversations: every conversation's summary, in creation order."""
        return self._control("GET", "conversations")["conversations"]

    def conversation(self, conversation_id: str) -> dict:
        return self._control("GET", "conversations/" + conversation_id)


def text_activity(protocol: str, text: str, user: str = "user1") -> dict:
    """The smallest valid activity (3.0) or message (1.1) carrying `text`."""
    if protocol == "3.0":
        return {"type": "message", "from": {"id": user}, "text": text}
    return {"from": user, "text": text}


def items(result: dict) -> list[dict]:
    """The activities (3.0) or messages (1.1) of a get_activities result."""
    return result["activities"] if "activities" in result else result["messages"]


def sender(item: dict) -> str:
    """The sender id of an activity (3.0, `from.id`) or message (1.1, `from`)."""
    origin = item["from"]
    return origin["id"] if isinstance(origin, dict) else origin


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that imports the binding."""
    env = dict(os.environ)
    env.pop("DIRECTLINE_LIBRARY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BINDINGS), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def streamed_exchange(conversation: Any, emulator_handle: Any, user: str, text: str) -> list[dict[str, Any]]:
    """Listens (auto: the stream on 3.0), waits until the stream is open and
    the in-process emulator `emulator_handle` has registered it (so the reply
    comes live, typing first, not in a replay), sends `text` and returns what
    next() handed out up to the echo."""
    assert conversation.listen()["mode"] == "websocket"
    for _ in range(20):
        if conversation.next(0.5)["state"] == "online" and emulator_handle.server.emulator.streams.describe():
            break
    conversation.send_text(user, text)
    got: list[dict[str, Any]] = []
    for _ in range(20):
        got += conversation.next(0.5)["activities"]
        if any(item.get("text") == f"echo: {text}" for item in got):
            break
    return got
