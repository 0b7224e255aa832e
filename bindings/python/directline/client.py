"""Client and Conversation: the Pythonic face of the C handles."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

from . import _native
from ._native import lib
from .errors import Status, error_from_status

_Self = TypeVar("_Self", bound="_NativeObject")

# Client(**options) keyword -> config_json key (API.md, "config_json").
_CONFIG_KEYS: Mapping[str, str] = {
    "timeout_ms": "timeoutMs",
    "connect_timeout_ms": "connectTimeoutMs",
    "retry": "retry",
    "user_agent": "userAgent",
    "ca_file": "caFile",
    "proxy": "proxy",
    "insecure_skip_tls_verify": "insecureSkipTlsVerify",
    "allow_insecure_http": "allowInsecureHttp",
    "max_upload_bytes": "maxUploadBytes",
}

# retry={...} keys in Python style -> config_json "retry" keys. Keys already
# in the C spelling pass through; anything else is left for the library to
# refuse.
_RETRY_KEYS: Mapping[str, str] = {
    "max_attempts": "maxAttempts",
    "base_delay_ms": "baseDelayMs",
    "max_delay_ms": "maxDelayMs",
}


class _NativeObject:
    """Owns one C handle; frees it exactly once, never while a call is using it.

    Each call borrows the handle under a lock and counts itself in flight.
    ``close()`` marks the object closed at once; the handle is freed by
    whichever of ``close()`` or the last in-flight call comes later, so
    another thread's call can never receive a freed handle.
    """

    _kind = "object"

    def __init__(self, handle: int, free: Callable[[int], int]) -> None:
        self._lock = threading.Lock()
        self._handle: Optional[int] = handle
        self._free = free
        self._in_flight = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    @contextmanager
    def _borrow(self) -> Iterator[int]:
        with self._lock:
            if self._closed or self._handle is None:
                raise ValueError(f"operation on a closed {self._kind}")
            self._in_flight += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._lock:
                self._in_flight -= 1
                orphan = self._take_if_idle()
            self._release(orphan)

    def _take_if_idle(self) -> Optional[int]:
        # Called with the lock held.
        if self._closed and self._in_flight == 0 and self._handle is not None:
            handle, self._handle = self._handle, None
            return handle
        return None

    def _release(self, handle: Optional[int]) -> None:
        if handle is None:
            return
        status = self._free(handle)
        if status != Status.OK:
            raise error_from_status(
                status, None, f"freeing a {self._kind} handle failed ({_native.status_name(status)})")

    def close(self) -> None:
        """Releases the C handle. Idempotent; later use raises ValueError.

        If another thread is inside a call on this object, that call
        finishes normally and the handle is released when it returns.
        """
        with self._lock:
            self._closed = True
            handle = self._take_if_idle()
        self._release(handle)

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A safety net only: a handle dropped without close() is freed here.
        # At interpreter shutdown module globals may already be gone.
        try:
            if getattr(self, "_handle", None) is not None:
                self.close()
        except Exception:
            pass


class Client(_NativeObject):
    """A Direct Line client: endpoint, credential and transport (a pooled, keep-alive connection).

    Construction sends nothing. One client may be used from many threads at
    once. Closing a client does not close the conversations it started: they
    keep working until they are closed themselves.

    Args:
        endpoint: the service's base URL; defaults to
            ``https://directline.botframework.com``. Plain ``http://`` is
            allowed only for loopback hosts unless ``allow_insecure_http``.
        secret: the bot's Direct Line secret. Give exactly one of
            ``secret`` and ``token``.
        token: a Direct Line token instead of the secret.
        protocol: ``"3.0"`` (default) or ``"1.1"``.
        **options: ``timeout_ms``, ``connect_timeout_ms``, ``retry``
            (a dict: ``max_attempts``, ``base_delay_ms``, ``max_delay_ms``),
            ``user_agent``, ``ca_file``, ``proxy``,
            ``insecure_skip_tls_verify``, ``allow_insecure_http``,
            ``max_upload_bytes``. An option given as None keeps its default.

    Raises:
        TypeError: an unknown keyword argument.
        InvalidArgumentError: a value the library refuses (no credential, a
            bad endpoint, a NUL or control character in a secret, ...).
    """

    _kind = "Client"

    def __init__(self, endpoint: Optional[str] = None, *, secret: Optional[str] = None,
                 token: Optional[str] = None, protocol: str = "3.0", **options: Any) -> None:
        config: dict[str, Any] = {"protocol": protocol}
        for key, value in (("endpoint", endpoint), ("secret", secret), ("token", token)):
            if value is not None:
                config[key] = value
        for name, value in options.items():
            if name not in _CONFIG_KEYS:
                raise TypeError(f"Client() got an unexpected keyword argument {name!r}")
            if name == "retry" and isinstance(value, Mapping):
                config["retry"] = {_RETRY_KEYS.get(key, key): item for key, item in value.items()}
            elif value is not None:
                config[_CONFIG_KEYS[name]] = value
        self._init_from_config(config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Client":
        """A client from a ``config_json`` dict in the C spelling, passed verbatim.

        Example: ``Client.from_config({"endpoint": url, "secret": s, "timeoutMs": 5000})``.
        Unknown keys raise InvalidArgumentError.
        """
        client = cls.__new__(cls)
        client._init_from_config(config)
        return client

    def _init_from_config(self, config: Any) -> None:
        endpoint = config.get("endpoint") if isinstance(config, Mapping) else None
        protocol = config.get("protocol", "3.0") if isinstance(config, Mapping) else None
        self._description = f"endpoint={endpoint!r} protocol={protocol!r}"
        handle, _ = _native.call_constructor(lib.dl_client_new, _native.encode_json(config, "config"))
        super().__init__(handle, lib.dl_client_free)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._description
        return f"<directline.Client {state}>"

    def start_conversation(self, user_id: Optional[str] = None,
                           user_name: Optional[str] = None) -> "Conversation":
        """Starts a new conversation with the bot.

        Sends ``POST /v3/directline/conversations`` (3.0) or
        ``POST /api/conversations`` (1.1), with ``{"user": {"id", "name"}}``
        when a user is given (3.0 only; user ids embedded in tokens start
        with ``dl_``).

        Returns:
            a Conversation holding the conversation id and the token the
            service issued for it; the service's Conversation object is kept
            as ``conversation.start_result`` (it contains that token: treat
            it as a secret).

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: a bad user id; nothing was sent.
            DirectLineError: a network or service failure (a subclass per status).
        """
        request: dict[str, Any] = {}
        user = {key: value for key, value in (("id", user_id), ("name", user_name)) if value is not None}
        if user:
            request["user"] = user
        body = _native.encode_json(request, "request")
        with self._borrow() as handle:
            conversation, result = _native.call_constructor(lib.dl_conversation_start, handle, body)
        return Conversation(self, conversation, start_result=result)

    def open_conversation(self, conversation_id: str, token: Optional[str] = None,
                          watermark: Optional[str] = None,
                          stream_url: Optional[str] = None) -> "Conversation":
        """Attaches to an existing conversation, e.g. one saved earlier. Sends nothing.

        Args:
            conversation_id: the conversation's id.
            token: the token the service issued for that conversation
                (without it, the client's own secret or token is used).
            watermark: where to resume reading; None reads from the start.
            stream_url: the conversation's WebSocket stream URL, if known.

        Returns:
            a Conversation (its ``start_result`` is None).

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: a missing or unsafe id or token.
        """
        state: dict[str, Any] = {"conversationId": conversation_id}
        for key, value in (("token", token), ("watermark", watermark), ("streamUrl", stream_url)):
            if value is not None:
                state[key] = value
        body = _native.encode_json(state, "conversation state")
        with self._borrow() as handle:
            conversation, _ = _native.call_constructor(lib.dl_conversation_open, handle, body)
        return Conversation(self, conversation, start_result=None)


class Conversation(_NativeObject):
    """One conversation with the bot: its id, its own token and the watermark read so far.

    Made by ``Client.start_conversation`` or ``Client.open_conversation``,
    never directly. Usable from many threads at once. Closing it frees the
    local handle only; the conversation goes on at the service.

    Attributes:
        client: the Client it came from (kept alive by this reference).
        start_result: the service's Conversation object when it was started
            here (``conversationId``, ``token``, ``expires_in``,
            ``streamUrl``...; the token is a secret), else None.
    """

    _kind = "Conversation"

    def __init__(self, client: Client, handle: int, *, start_result: Optional[dict[str, Any]]) -> None:
        super().__init__(handle, lib.dl_conversation_free)
        self.client = client
        self.start_result = start_result

    def __repr__(self) -> str:
        if self.closed:
            return "<directline.Conversation closed>"
        info = self.info()
        return (f"<directline.Conversation id={info.get('conversationId')!r} "
                f"protocol={info.get('protocol')!r} watermark={info.get('watermark')!r}>")

    def info(self) -> dict[str, Any]:
        """Describes the conversation locally; sends nothing.

        Returns:
            ``{"conversationId", "protocol", "watermark", "streamUrl",
            "tokenExpiresAt"}`` (never the token).

        Raises:
            ValueError: the conversation is closed.
        """
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_info, handle)
        return result

    @property
    def id(self) -> str:
        """The conversation id."""
        conversation_id: str = self.info()["conversationId"]
        return conversation_id

    @property
    def watermark(self) -> Optional[str]:
        """The watermark of the last ``get_activities`` (None before the first)."""
        watermark: Optional[str] = self.info().get("watermark")
        return watermark

    def send_activity(self, activity: Mapping[str, Any]) -> dict[str, Any]:
        """Sends one activity (3.0) or message (1.1), given as a dict.

        3.0: an Activity with a string ``type`` and ``from.id``; the library
        adds ``channelData.clientActivityID`` unless you set one. 1.1: a
        Message whose ``from`` is a string. At most 262,144 bytes serialized.

        Returns:
            3.0: ``{"id": ..., "clientActivityID": ...}``; 1.1: ``{}``.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: not a valid activity; nothing was sent.
            TooLargeError: over the size limit; nothing was sent.
            DirectLineError: a network or service failure. Its ``delivery``
                says whether the activity may have reached the bot
                (``"unknown"``: look for its clientActivityID before resending).
        """
        body = _native.encode_json(activity, "activity")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_send_activity, handle, body)
        return result

    def send_text(self, user_id: str, text: str) -> dict[str, Any]:
        """Sends a plain text message from ``user_id``.

        Builds ``{"type": "message", "from": {"id": user_id}, "text": text}``
        (3.0) or ``{"from": user_id, "text": text}`` (1.1).

        Returns and raises as ``send_activity``.
        """
        user = _native.encode_string(user_id, "user_id")
        message = _native.encode_string(text, "text")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_send_text, handle, user, message)
        return result

    def get_activities(self) -> dict[str, Any]:
        """Reads what arrived after the watermark, and advances the watermark.

        Sends ``GET .../activities?watermark=`` (3.0) or
        ``GET .../messages?watermark=`` (1.1).

        Returns:
            3.0: the ActivitySet ``{"activities": [...], "watermark": ...}``;
            1.1: the MessageSet ``{"messages": [...], "watermark": ...}``.
            Call again until the list is empty to page.

        Raises:
            ValueError: the conversation is closed.
            DirectLineError: a network or service failure.
        """
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_get_activities, handle)
        return result
