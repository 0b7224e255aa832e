"""What the ``directline`` command prints: results and replies, errors, the upload progress bar.

Lines for people, or with ``--json`` one JSON object per line; control
characters in what the bot sent are shown as escapes, never sent to the
terminal.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Mapping
from typing import IO, Any

PROG = "directline"
"""The command's name: argparse's prog, and the start of its error messages."""


def print_json_error(stream: IO[str], error: Mapping[str, Any]) -> None:
    """Writes ``{"error": error}`` as one line to ``stream`` (stderr), as ``--json`` asks."""
    stream.write(json.dumps({"error": dict(error)}) + "\n")
    stream.flush()


def _printable(text: str) -> str:
    """``text`` with control characters (terminal escapes, ``\\r``) shown as escapes; newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(repr(char)[1:-1] if unicodedata.category(char) == "Cc" and char not in "\n\t" else char
                   for char in text)


def _size(count: float) -> str:
    """A byte count for people: ``512 B``, ``3.0 MiB``."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            break
    return f"{count:.1f} {unit}"


class Output:
    """Where results and replies go: lines for people, or one JSON object per line."""

    def __init__(self, as_json: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def _line(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def event(self, event: str, human: str | None, **fields: Any) -> None:
        """One result: ``{"event": event, **fields}`` with --json, else ``human`` (if any)."""
        if self.as_json:
            self._line(json.dumps({"event": event, **fields}))
        elif human is not None:
            self._line(_printable(human))

    def reply(self, activity: Mapping[str, Any]) -> None:
        """One activity (3.0) or message (1.1) from the bot."""
        if self.as_json:
            self._line(json.dumps({"event": "reply", "activity": activity}))
            return
        kind = activity.get("type", "message")
        words = [] if kind == "message" else [f"[{kind}]"]
        text = activity.get("text")
        if isinstance(text, str) and text:
            words.append(text)
        lines = [_printable(" ".join(["bot:", *words]))]
        attachments = activity.get("attachments")
        for attachment in attachments if isinstance(attachments, list) else []:
            if isinstance(attachment, Mapping):
                name = attachment.get("name") or "(unnamed)"
                content_type = attachment.get("contentType")
                suffix = f" ({content_type})" if content_type else ""
                lines.append(_printable(f"  attachment: {name}{suffix}"))
        self._line("\n".join(lines))

    def error(self, code: int, name: str, message: str, detail: Mapping[str, Any] | None = None) -> None:
        """An error on stderr: ``directline: error: ...``, or a JSON object with --json."""
        if self.as_json:
            error = dict(detail or {})
            error.setdefault("name", name)
            error["message"] = message
            error["exitCode"] = code
            print_json_error(self.stderr, error)
        else:
            self.stderr.write(f"{PROG}: error: {_printable(message)}\n")
            self.stderr.flush()


class ProgressBar:
    """An upload's progress on a terminal, one line redrawn in place with ``\\r``.

    Shows the bytes done and in all, the percentage and the mean rate. It is
    redrawn when the percentage changes, or every quarter of a second, and
    always for the final ``(total, total)``; ``finish()`` ends the line.
    """

    WIDTH = 20

    def __init__(self, stream: IO[str], label: str) -> None:
        self._stream = stream
        self._label = label if len(label) <= 16 else label[:15] + "~"
        self._started: float | None = None
        self._last_draw = 0.0
        self._last_percent = -1
        self._last_length = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        final = done >= total
        if not final and percent == self._last_percent and now - self._last_draw < 0.25:
            return
        self._last_percent, self._last_draw = percent, now
        filled = percent * self.WIDTH // 100
        elapsed = now - self._started
        rate = f"{_size(done / elapsed)}/s" if elapsed > 0 and done > 0 else "-"
        line = (f"{self._label} [{'#' * filled}{' ' * (self.WIDTH - filled)}] {percent:3d}%  "
                f"{_size(done)} / {_size(total)}  {rate}")
        padding = " " * max(0, self._last_length - len(line))
        self._last_length = len(line)
        self._stream.write("\r" + line + padding)
        self._stream.flush()

    def finish(self) -> None:
        """Ends the line, if anything was drawn."""
        if self._last_length:
            self._stream.write("\n")
            self._stream.flush()
            self._last_length = 0
