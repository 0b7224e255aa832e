"""Conversations, tokens, uploaded files and settings, behind one lock."""

from __future__ import annotations

import math
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

V3 = "3.0"
V1 = "1.1"


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
class Conversation:
    id: str
    protocol: str
    etag: str
    started: bool = False
    ended: bool = False
    items: list[dict] = field(default_factory=list)


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

    def as_json(self) -> dict:
        return {"tokenLifetime": self.token_lifetime,
                "maxUploadBytes": self.max_upload_bytes,
                "nullWatermark": self.null_watermark,
                "pageSize": self.page_size,
                "endlessPages": self.endless_pages}


class Store:
    """Everything the emulated service remembers. All methods are thread-safe.

    Stored activities and messages are never mutated after `append`, so the
    lists handed out by `page` can be serialised without the lock.
    """

    def __init__(self, token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self._lock = threading.Lock()
        self._defaults = Settings(token_lifetime, max_upload_bytes)
        self.reference_grammar_id = str(uuid.uuid4())
        self._clear()

    def _clear(self) -> None:
        self._settings = Settings(self._defaults.token_lifetime,
                                  self._defaults.max_upload_bytes)
        self._conversations: dict[str, Conversation] = {}
        self._tokens: dict[str, Token] = {}
        self._files: dict[str, StoredFile] = {}

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def settings(self) -> Settings:
        with self._lock:
            return Settings(**vars(self._settings))

    def configure(self, token_lifetime: int | None = None,
                  max_upload_bytes: int | None = None,
                  null_watermark: bool | None = None,
                  page_size: int | None = None,
                  endless_pages: bool | None = None) -> Settings:
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

    def mark_started(self, conversation: Conversation) -> bool:
        """Start the conversation; False when it had been started already."""
        with self._lock:
            if conversation.started:
                return False
            conversation.started = True
            return True

    def mark_ended(self, conversation: Conversation) -> None:
        with self._lock:
            conversation.ended = True

    def is_ended(self, conversation: Conversation) -> bool:
        with self._lock:
            return conversation.ended

    def issue_token(self, conversation_id: str, user: dict | None) -> Token:
        with self._lock:
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
            item_id = f"{conversation.id}|{len(conversation.items):07d}"
            stored = stamp(dict(item), item_id, utc_timestamp())
            conversation.items.append(stored)
            return stored

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
                    "items": list(conversation.items)}

    def store_file(self, data: bytes, content_type: str, name: str) -> StoredFile:
        with self._lock:
            stored = StoredFile(secrets.token_urlsafe(12), data, content_type, name)
            self._files[stored.id] = stored
            return stored

    def file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)
