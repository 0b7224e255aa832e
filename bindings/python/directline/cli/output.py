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


def _one_line(text: str) -> str:
    """``text`` with every control character shown as an escape, newlines and tabs included."""
    return "".join(repr(char)[1:-1] if unicodedata.category(char) == "Cc" else char for char in text)


def sender_name(activity: Mapping[str, Any]) -> str:
    """Who sent an activity, for people: 3.0 ``from.name``, else ``from.id``; 1.1 ``from``; else ``someone``."""
    origin = activity.get("from")
    name = (origin.get("name") or origin.get("id")) if isinstance(origin, Mapping) else origin
    return _one_line(name) if isinstance(name, str) and name.strip() else "someone"


def typing_line(activity: Mapping[str, Any]) -> str:
    """The line ``tail --typing`` prints for a typing activity: ``Echo Bot is typing…``."""
    return f"{sender_name(activity)} is typing\u2026"


STATE_NOTES: Mapping[str, str] = {
    "reconnecting": "the connection was lost; reconnecting\u2026",
    "ended": "the conversation has ended",
}
"""What ``tail`` notes on stderr (without --json) when its listener enters these states."""


def state_note(state: str, previous: str | None) -> str | None:
    """The note for people when ``tail``'s listener goes from ``previous`` to ``state``, if any.

    Connecting and the first ``online`` are the normal start and say
    nothing; ``online`` after ``reconnecting`` says the connection is back;
    ``failed`` says nothing, the error that follows says why.
    """
    if state == previous:
        return None
    if state == "online":
        return "online again" if previous == "reconnecting" else None
    return STATE_NOTES.get(state)


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

    def reply(self, activity: Mapping[str, Any], *, own_as: str | None = None) -> None:
        """One activity (3.0) or message (1.1) from the bot, or (``own_as``: the user's id) the user's own.

        The user's own print as ``USER: TEXT`` rather than ``bot: TEXT``,
        and with --json carry ``"own": true``.
        """
        if self.as_json:
            line: dict[str, Any] = {"event": "reply", "activity": activity}
            if own_as is not None:
                line["own"] = True
            self._line(json.dumps(line))
            return
        kind = activity.get("type", "message")
        words = [] if kind == "message" else [f"[{kind}]"]
        text = activity.get("text")
        if isinstance(text, str) and text:
            words.append(text)
        speaker = "bot:" if own_as is None else _one_line(own_as) + ":"
        lines = [_printable(" ".join([speaker, *words]))]
        attachments = activity.get("attachments")
        for attachment in attachments if isinstance(attachments, list) else []:
            if isinstance(attachment, Mapping):
                name = attachment.get("name") or "(unnamed)"
                content_type = attachment.get("contentType")
                suffix = f" ({content_type})" if content_type else ""
                lines.append(_printable(f"  attachment: {name}{suffix}"))
        self._line("\n".join(lines))

    def typing(self, activity: Mapping[str, Any]) -> None:
        """A typing activity: ``NAME is typing…``, or with --json a reply line like any activity."""
        if self.as_json:
            self._line(json.dumps({"event": "reply", "activity": activity}))
        else:
            self._line(typing_line(activity))

    def state(self, state: str, previous: str | None, mode: str | None) -> None:
        """A change of ``tail``'s listener state.

        With --json every change is a line on stdout, ``{"event": "state",
        "state": ..., "mode": ...}`` (stderr holds errors only); without,
        the few worth telling people are a note on stderr
        (``directline: the conversation has ended``), so that stdout keeps
        what the conversation said.
        """
        if state == previous:
            return
        if self.as_json:
            self._line(json.dumps({"event": "state", "state": state, "mode": mode}))
            return
        note = state_note(state, previous)
        if note is not None:
            self.stderr.write(f"{PROG}: {note}\n")
            self.stderr.flush()

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
