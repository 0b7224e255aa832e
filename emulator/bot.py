"""The echo bot behind every emulated conversation."""

from __future__ import annotations

import re

BOT_ID = "echo-bot"
BOT_NAME = "Echo Bot"

_SLOW = re.compile(r"slow:(\d+(?:\.\d+)?)")


def echo_text(text: str | None) -> str:
    return f"echo: {text or ''}"


def upload_text(files: list, text: str | None) -> str:
    """`received 2 attachment(s): a.txt (text/plain, 5 bytes), ...; text: hi`."""
    listing = ", ".join(f"{f.name} ({f.content_type}, {len(f.data)} bytes)" for f in files)
    reply = f"received {len(files)} attachment(s): {listing}"
    return f"{reply}; text: {text}" if text else reply


def thinking_seconds(text: str | None) -> float:
    """How long the bot takes: N for a message that is exactly `slow:N`."""
    match = _SLOW.fullmatch(text or "")
    return float(match.group(1)) if match else 0.0
