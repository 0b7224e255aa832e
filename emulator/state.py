"""Conversations, tokens, uploaded files and settings, behind one lock."""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

DEFAULT_TOKEN_LIFETIME = 1800
DEFAULT_MAX_UPLOAD_BYTES = 4 * 1024 * 1024
PAGE_SIZE = 50
# The WebSocket stream: an empty message after this many idle seconds; a
# stream URL must be connected within this many seconds of being issued
# (the service documents 60).
STREAM_KEEP_ALIVE_SECONDS = 5.0
STREAM_URL_LIFETIME = 60
# Past this many stream tickets, issuing one first forgets the expired ones.
MAX_LIVE_TICKETS = 1000
# Which of two streams of one conversation is closed with `collision`.
COLLISION_POLICIES = ("closeNew", "closeOld")
# The Copilot Studio style token service: its tokens' lifetime, and how its
# answer spells that lifetime (real token services use either).
TOKEN_ENDPOINT_LIFETIME = 60
EXPIRES_KEYS = ("expires_in", "expiresIn")
# The region the regional channel settings name (and put in their URL).
DEFAULT_REGION = "europe"

V3 = "3.0"
V1 = "1.1"

# The bot's reply delay: a fixed number of seconds, or (min, max) for a
# uniformly random one per reply; 0 is "before the send is answered".
ReplyDelay = float | tuple[float, float]
MAX_REPLY_DELAY_SECONDS = 3600.0


def utc_timestamp() -> str:
    """ISO-8601 UTC with microseconds and a `Z`, e.g. 2024-05-01T10:00:00.123456Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Token:
    value: str
    conversation_id: str
    lifetime: int
    expires_at: float
    user: dict | None

    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at

    def seconds_left(self) -> int:
        return max(0, math.ceil(self.expires_at - time.monotonic()))


@dataclass
class StreamTicket:
    """The `t=` of one stream URL: where its replay starts, until when it may connect."""
    value: str
    conversation_id: str
    position: int
    expires_at: float

    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at


@dataclass
class Conversation:
    id: str
    protocol: str
    etag: str
    started: bool = False
    ended: bool = False
    # The `locale` of the 3.0 start that started it, if any.
    locale: str | None = None
    items: list[dict] = field(default_factory=list)
    # Stream-only activities handed out so far (their ids count them).
    live_count: int = 0


@dataclass
class StoredFile:
    id: str
    data: bytes
    content_type: str
    name: str


@dataclass
class Settings:
    token_lifetime: int
    max_upload_bytes: int
    null_watermark: bool = False
    page_size: int = PAGE_SIZE
    # Past the stored items, every GET answers one more made-up activity
    # and a new watermark, for ever: a service that never stops paging.
    endless_pages: bool = False
    stream_keep_alive_seconds: float = STREAM_KEEP_ALIVE_SECONDS
    stream_url_lifetime: int = STREAM_URL_LIFETIME
    stream_collision: str = "closeNew"
    # Added to every bot reply's thinking time (both protocols).
    bot_delay_seconds: float = 0.0
    token_endpoint_lifetime: int = TOKEN_ENDPOINT_LIFETIME
    token_endpoint_expires_key: str = EXPIRES_KEYS[0]
    region: str = DEFAULT_REGION
    # Non-zero: the send is answered at once and the bot's reply is stored
    # this long afterwards (see emulator/scheduler.py).
    reply_delay_seconds: ReplyDelay = 0.0
    # The bot's typing before each reply (3.0 streams only).
    typing_before_reply: bool = True

    def replies_later(self) -> bool:
        """Whether replies come after the send's answer (a non-zero reply delay)."""
        delay = self.reply_delay_seconds
        return (delay[1] if isinstance(delay, tuple) else delay) > 0

    def draw_reply_delay(self) -> float:
        """This reply's delay: the fixed one, or a uniform draw from [min, max]."""
        delay = self.reply_delay_seconds
        return random.uniform(*delay) if isinstance(delay, tuple) else delay

    def as_json(self) -> dict:
        return {"tokenLifetime": self.token_lifetime,
                "maxUploadBytes": self.max_upload_bytes,
                "nullWatermark": self.null_watermark,
                "pageSize": self.page_size,
                "endlessPages": self.endless_pages,
                "streamKeepAliveSeconds": self.stream_keep_alive_seconds,
                "streamUrlLifetime": self.stream_url_lifetime,
                "streamCollision": self.stream_collision,
                "botDelaySeconds": self.bot_delay_seconds,
                "tokenEndpointLifetime": self.token_endpoint_lifetime,
                "tokenEndpointExpiresKey": self.token_endpoint_expires_key,
                "region": self.region,
                "replyDelaySeconds": (list(self.reply_delay_seconds)
                                      if isinstance(self.reply_delay_seconds, tuple)
                                      else self.reply_delay_seconds),
                "typingBeforeReply": self.typing_before_reply}


# What the store tells the stream server, in the order it happened:
#   ("item", conversation_id, index, activity)   an activity was stored at `index`
#   ("live", conversation_id, position, activity) a stream-only activity (typing),
#                                                 due after the first `position` items
#   ("reset", None, 0, None)                      everything was forgotten
Listener = Callable[[tuple], None]


class Store:
    """Everything the emulated service remembers. All methods are thread-safe.

    Stored activities and messages are never mutated after `append`, so the
    lists handed out by `page` can be serialised without the lock.

    The listener (the stream server) is called under the lock, so it sees
    events in exactly the order they happened; it must not block.
    """

    def __init__(self, token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 reply_delay_seconds: ReplyDelay = 0.0,
                 typing_before_reply: bool = True) -> None:
        self._lock = threading.Lock()
        # What a reset restores: the start-up settings (the command line's).
        self._defaults = Settings(token_lifetime, max_upload_bytes,
                                  reply_delay_seconds=reply_delay_seconds,
                                  typing_before_reply=typing_before_reply)
        self.reference_grammar_id = str(uuid.uuid4())
        self._listener: Listener | None = None
        self._clear()

    def _clear(self) -> None:
        self._settings = Settings(**vars(self._defaults))
        self._conversations: dict[str, Conversation] = {}
        self._tokens: dict[str, Token] = {}
        self._files: dict[str, StoredFile] = {}
        self._tickets: dict[str, StreamTicket] = {}

    def reset(self) -> None:
        with self._lock:
            self._clear()
            self._notify(("reset", None, 0, None))

    def set_listener(self, listener: Listener | None) -> None:
        with self._lock:
            self._listener = listener

    def _notify(self, event: tuple) -> None:
        if self._listener is not None:
            self._listener(event)

    def settings(self) -> Settings:
        with self._lock:
            return Settings(**vars(self._settings))

    def configure(self, token_lifetime: int | None = None,
                  max_upload_bytes: int | None = None,
                  null_watermark: bool | None = None,
                  page_size: int | None = None,
                  endless_pages: bool | None = None,
                  stream_keep_alive_seconds: float | None = None,
                  stream_url_lifetime: int | None = None,
                  stream_collision: str | None = None,
                  bot_delay_seconds: float | None = None,
                  token_endpoint_lifetime: int | None = None,
                  token_endpoint_expires_key: str | None = None,
                  region: str | None = None,
                  reply_delay_seconds: ReplyDelay | None = None,
                  typing_before_reply: bool | None = None) -> Settings:
        with self._lock:
            if token_lifetime is not None:
                self._settings.token_lifetime = token_lifetime
            if max_upload_bytes is not None:
                self._settings.max_upload_bytes = max_upload_bytes
            if null_watermark is not None:
                self._settings.null_watermark = null_watermark
            if page_size is not None:
                self._settings.page_size = page_size
            if endless_pages is not None:
                self._settings.endless_pages = endless_pages
            if stream_keep_alive_seconds is not None:
                self._settings.stream_keep_alive_seconds = stream_keep_alive_seconds
            if stream_url_lifetime is not None:
                self._settings.stream_url_lifetime = stream_url_lifetime
            if stream_collision is not None:
                self._settings.stream_collision = stream_collision
            if bot_delay_seconds is not None:
                self._settings.bot_delay_seconds = bot_delay_seconds
            if token_endpoint_lifetime is not None:
                self._settings.token_endpoint_lifetime = token_endpoint_lifetime
            if token_endpoint_expires_key is not None:
                self._settings.token_endpoint_expires_key = token_endpoint_expires_key
            if region is not None:
                self._settings.region = region
            if reply_delay_seconds is not None:
                self._settings.reply_delay_seconds = reply_delay_seconds
            if typing_before_reply is not None:
                self._settings.typing_before_reply = typing_before_reply
            return Settings(**vars(self._settings))

    def create_conversation(self, protocol: str) -> Conversation:
        with self._lock:
            conversation = Conversation(id=secrets.token_urlsafe(16), protocol=protocol,
                                        etag=f'"{secrets.token_hex(8)}"')
            self._conversations[conversation.id] = conversation
            return conversation

    def conversation(self, conversation_id: str) -> Conversation | None:
        with self._lock:
            return self._conversations.get(conversation_id)

    def mark_started(self, conversation: Conversation, locale: str | None = None) -> bool:
        """Start the conversation in `locale`; False when it had been started
        already (its locale then stays the first start's)."""
        with self._lock:
            if conversation.started:
                return False
            conversation.started = True
            conversation.locale = locale
            return True

    def mark_ended(self, conversation: Conversation) -> None:
        with self._lock:
            conversation.ended = True

    def is_ended(self, conversation: Conversation) -> bool:
        with self._lock:
            return conversation.ended

    def issue_token(self, conversation_id: str, user: dict | None, lifetime: int | None = None) -> Token:
        """A new token for the conversation, valid `lifetime` seconds (default: `tokenLifetime`)."""
        with self._lock:
            if lifetime is None:
                lifetime = self._settings.token_lifetime
            token = Token(value=secrets.token_urlsafe(36), conversation_id=conversation_id,
                          lifetime=lifetime, expires_at=time.monotonic() + lifetime,
                          user=user)
            self._tokens[token.value] = token
            return token

    def token(self, value: str) -> Token | None:
        with self._lock:
            return self._tokens.get(value)

    def append(self, conversation: Conversation,
               stamp: Callable[[dict, str, str], dict], item: dict) -> dict:
        """Store `item` stamped with its id (`<conversationId>|<7-digit seq>`)."""
        with self._lock:
            return self._append(conversation, stamp, item)

    def _append(self, conversation: Conversation,
                stamp: Callable[[dict, str, str], dict], item: dict) -> dict:
        item_id = f"{conversation.id}|{len(conversation.items):07d}"
        stored = stamp(dict(item), item_id, utc_timestamp())
        conversation.items.append(stored)
        self._notify(("item", conversation.id, len(conversation.items) - 1, stored))
        return stored

    def append_reply(self, conversation: Conversation,
                     stamp: Callable[[dict, str, str], dict], item: dict,
                     ends: bool = False) -> dict | None:
        """A late bot reply: stored as `append` does (ending the conversation
        first with `ends`), unless the conversation has ended or was reset
        away since the reply was scheduled; then None, and nothing happens."""
        with self._lock:
            if conversation.ended or self._conversations.get(conversation.id) is not conversation:
                return None
            if ends:
                conversation.ended = True
            return self._append(conversation, stamp, item)

    def push_live(self, conversation: Conversation,
                  stamp: Callable[[dict, str, str], dict], item: dict) -> dict:
        """Hand a stream-only activity (typing) to the open streams; never stored.

        Its id (`<conversationId>|live<7-digit n>`) cannot clash with a stored one."""
        with self._lock:
            conversation.live_count += 1
            item_id = f"{conversation.id}|live{conversation.live_count:07d}"
            stamped = stamp(dict(item), item_id, utc_timestamp())
            self._notify(("live", conversation.id, len(conversation.items), stamped))
            return stamped

    def items_from(self, conversation: Conversation, start: int) -> tuple[list[dict], int]:
        """Every item after watermark `start` (unpaged), and how many are stored."""
        with self._lock:
            return conversation.items[start:], len(conversation.items)

    def item_count(self, conversation: Conversation) -> int:
        with self._lock:
            return len(conversation.items)

    def issue_stream_ticket(self, conversation: Conversation, position: int | None) -> StreamTicket:
        """A stream URL's `t=`: replay from `position`, or from what is stored now."""
        with self._lock:
            ticket = StreamTicket(
                value=secrets.token_urlsafe(32), conversation_id=conversation.id,
                position=len(conversation.items) if position is None else position,
                expires_at=time.monotonic() + self._settings.stream_url_lifetime)
            if len(self._tickets) >= MAX_LIVE_TICKETS:
                for value in [v for v, kept in self._tickets.items() if kept.expired()]:
                    del self._tickets[value]
            self._tickets[ticket.value] = ticket
            return ticket

    def stream_ticket(self, value: str) -> StreamTicket | None:
        with self._lock:
            return self._tickets.get(value)

    def page(self, conversation: Conversation, start: int) -> tuple[list[dict], int]:
        """At most `pageSize` items after watermark `start`, and the new watermark."""
        with self._lock:
            chunk = conversation.items[start:start + self._settings.page_size]
            if not chunk and self._settings.endless_pages:
                filler = {"type": "message", "id": f"{conversation.id}|{start:07d}",
                          "from": {"id": "filler"} if conversation.protocol == "3.0" else "filler",
                          "text": f"filler {start}"}
                chunk = [filler]
            return chunk, start + len(chunk)

    def snapshot(self, conversation: Conversation) -> dict:
        with self._lock:
            return {"conversationId": conversation.id, "protocol": conversation.protocol,
                    "started": conversation.started, "ended": conversation.ended,
                    "locale": conversation.locale,
                    "items": list(conversation.items)}

    def every_conversation(self) -> list[tuple[Conversation, bool, list[dict]]]:
        """Every conversation in creation order, whether it has ended, and what
        it has stored (a copy of the list; the items are never mutated)."""
        with self._lock:
            return [(c, c.ended, list(c.items)) for c in self._conversations.values()]

    def store_file(self, data: bytes, content_type: str, name: str) -> StoredFile:
        with self._lock:
            stored = StoredFile(secrets.token_urlsafe(12), data, content_type, name)
            self._files[stored.id] = stored
            return stored

    def file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)
