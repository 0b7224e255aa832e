"""The echo bot behind every emulated conversation."""

from __future__ import annotations

import re

BOT_ID = "echo-bot"
BOT_NAME = "Echo Bot"

_SLOW = re.compile(r"slow:(\d+(?:\.\d+)?)")


# A 3.0 message with exactly this text makes the bot end the conversation.
END_TEXT = "end"


def bot_account() -> dict:
    """The bot's `from` on 3.0 activities."""
    return {"id": BOT_ID, "name": BOT_NAME}


def welcome_text(locale: str) -> str:
    """What the bot says first in a conversation started with a locale."""
    return f"welcome ({locale})"


def ends_conversation(text: str | None) -> bool:
    return text == END_TEXT


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
