"""The record of every non-control request, for tests to inspect."""

from __future__ import annotations

import base64
import hashlib
import threading
from email.message import Message

BODY_PREVIEW_BYTES = 64 * 1024
MAX_ENTRIES = 5000


class RequestLog:
    """Entries in arrival order; the oldest are dropped beyond MAX_ENTRIES."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict] = []

    def record(self, method: str, path: str, query: str, headers: Message,
               body: bytes, connection_id: int) -> dict:
        merged: dict[str, str] = {}
        for name, value in headers.items():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        entry = {"method": method, "path": path, "query": query, "headers": merged,
                 "bodyLength": len(body),
                 "bodySha256": hashlib.sha256(body).hexdigest(),
                 **_preview(body),
                 "connection": connection_id, "status": None}
        with self._lock:
            self._entries.append(entry)
            del self._entries[:-MAX_ENTRIES]
        return entry

    def set_status(self, entry: dict, status: int) -> None:
        with self._lock:
            entry["status"] = status

    def annotate(self, entry: dict | None, key: str, value) -> None:
        """Add what only the handler knows (an upload's file names) to an entry."""
        if entry is None:
            return
        with self._lock:
            entry[key] = value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def as_json(self) -> list[dict]:
        with self._lock:
            return [dict(entry) for entry in self._entries]


def _preview(body: bytes) -> dict:
    """The body as text when it is UTF-8, else base64; at most 64 KiB of it."""
    head = body[:BODY_PREVIEW_BYTES]
    truncated = len(body) > BODY_PREVIEW_BYTES
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body": base64.b64encode(head).decode("ascii"),
                "bodyEncoding": "base64", "bodyTruncated": truncated}
    # A cut can split a character; drop only that partial tail.
    return {"body": head.decode("utf-8", errors="ignore"),
            "bodyEncoding": "utf-8", "bodyTruncated": truncated}
