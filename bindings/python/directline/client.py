"""Client and Conversation: the Pythonic face of the C handles."""

from __future__ import annotations

import base64
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

from . import _native
from ._native import Bytes, ProgressCallable, lib
from .errors import DirectLineError, InvalidArgumentError, Status, error_from_status

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

# upload(files=[{...}]) keys in Python style -> upload_json "files" keys.
_FILE_KEYS: Mapping[str, str] = {
    "path": "path",
    "data": "dataBase64",
    "content_type": "contentType",
    "filename": "filename",
}

StrPath = Union[str, "os.PathLike[str]"]
"""A file system path: a str or an os.PathLike such as pathlib.Path."""

FileItem = Union[StrPath, Mapping[str, Any]]
"""One file of ``Conversation.upload``: a path, or a dict with ``path`` or
``data`` and optionally ``content_type`` and ``filename``."""

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
        self._closed = False
        # Every call in flight holds a ticket; tickets only ever increase.
        self._next_ticket = 0
        self._in_flight: set[int] = set()
        # (last ticket that may use it, object): what C may still use.
        self._keepalive: list[tuple[int, object]] = []

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    @contextmanager
    def _borrow(self) -> Iterator[int]:
        with self._lock:
            if self._closed or self._handle is None:
                raise ValueError(f"operation on a closed {self._kind}")
            ticket = self._next_ticket
            self._next_ticket += 1
            self._in_flight.add(ticket)
            handle = self._handle
        try:
            yield handle
        finally:
            with self._lock:
                self._in_flight.discard(ticket)
                oldest = min(self._in_flight, default=self._next_ticket)
                self._keepalive = [kept for kept in self._keepalive if kept[0] >= oldest]
                orphan = self._take_if_idle()
            self._release(orphan)

    def _keep_while_busy(self, thing: object) -> None:
        """Keeps ``thing`` referenced until every call now in flight has returned.

        For what C may still use after this call is done with it: a progress
        callback that another thread's call picked up while it was set.
        """
        with self._lock:
            self._keepalive.append((self._next_ticket - 1, thing))

    def _take_if_idle(self) -> Optional[int]:
        # Called with the lock held.
        if self._closed and not self._in_flight and self._handle is not None:
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
        # The C progress callback belongs to the conversation, not to a call:
        # calls that carry one take turns. Reentrant, so that a progress
        # callable calling back in gets ReentrantError rather than a deadlock.
        self._progress_lock = threading.RLock()

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

    def upload_file(self, user_id: str, path: Union[StrPath, bytes], *, content_type: Optional[str] = None,
                    filename: Optional[str] = None,
                    progress: Optional[ProgressCallable] = None) -> dict[str, Any]:
        """Uploads one file from disk as a raw attachment, streamed (never read whole).

        Sends ``POST .../upload?userId=user_id`` with the file as the body,
        ``Content-Type: content_type`` and
        ``Content-Disposition: name="file"; filename="..."``. The service
        wraps it in a message from ``user_id``.

        Args:
            user_id: the sender.
            path: a str, bytes or os.PathLike, passed as ``os.fsencode(path)``;
                it must be valid UTF-8.
            content_type: the MIME type; None guesses it from the file name's
                extension (``.png`` is ``image/png``), else
                ``application/octet-stream``.
            filename: the name sent; None sends the path's last component.
                ``"``, CR and LF in it are sent as ``%22``, ``%0D``, ``%0A``.
            progress: ``progress(done, total)``, called on this thread as
                body bytes go out (``done`` rises to ``total``, the body's
                size). Return ``False`` (exactly) to cancel; any other value,
                None included, goes on. An exception it raises cancels the
                transfer and is re-raised here once the call has returned.
                It must not call into this library (such calls raise
                ReentrantError). Calls with a progress callable on one
                conversation run one at a time.

        Returns:
            3.0: ``{"id": ...}`` (the activity carrying the file); 1.1: ``{}``.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: a bad user id, content type or file name;
                nothing was sent.
            FileError: the file is missing, a directory or unreadable;
                nothing was sent.
            TooLargeError: over the client's ``max_upload_bytes`` (default
                4 MiB); nothing was sent.
            CancelledError: ``progress`` returned False. Its ``delivery`` is
                ``"not_sent"`` when the body was cut short.
            DirectLineError: a network or service failure.
            Whatever ``progress`` raised.
        """
        arguments = (_native.encode_string(user_id, "user_id"), _native.encode_path(path, "path"),
                     _native.encode_optional_string(content_type, "content_type"),
                     _native.encode_optional_string(filename, "filename"))
        return self._upload(progress, lib.dl_upload_file, *arguments)

    def upload_bytes(self, user_id: str, data: Bytes, *, content_type: Optional[str] = None,
                     filename: Optional[str] = None,
                     progress: Optional[ProgressCallable] = None) -> dict[str, Any]:
        """Uploads bytes from memory as a raw attachment named ``filename``.

        Sends the same request as ``upload_file``, with ``data`` as the body
        (the library copies it first). ``content_type`` None is guessed
        from ``filename``'s extension, else ``application/octet-stream``;
        ``filename`` None sends ``"file"``.

        Returns, raises and calls ``progress`` as ``upload_file`` (less
        FileError).
        """
        buffer, length = _native.byte_buffer(data, "data")
        arguments = (_native.encode_string(user_id, "user_id"), buffer, length,
                     _native.encode_optional_string(content_type, "content_type"),
                     _native.encode_optional_string(filename, "filename"))
        return self._upload(progress, lib.dl_upload_bytes, *arguments)

    def upload(self, user_id: str, files: Sequence[FileItem], *,
               activity: Optional[Mapping[str, Any]] = None,
               progress: Optional[ProgressCallable] = None) -> dict[str, Any]:
        """Uploads several files, and optionally the activity carrying them, in one request.

        Sends one ``multipart/form-data`` ``POST .../upload?userId=user_id``:
        first the activity part when ``activity`` is given (3.0:
        ``application/vnd.microsoft.activity``, its ``type`` defaulting to
        ``"message"``, ``from`` to the user, with a
        ``channelData.clientActivityID`` added; 1.1:
        ``application/vnd.microsoft.bot.message``, ``from`` defaulting to the
        user), then one part per file, in order. Files given by path are
        streamed from disk. Without an activity the 3.0 service wraps the
        files in an empty message.

        Args:
            user_id: the sender.
            files: each a path (str or os.PathLike), or a dict with exactly
                one of ``"path"`` and ``"data"`` (bytes, bytearray or
                memoryview), and optionally ``"content_type"`` and
                ``"filename"`` (defaults as in ``upload_file``).
            activity: the 3.0 activity or 1.1 message, as a dict.
            progress: as in ``upload_file``.

        Returns:
            3.0: ``{"id": ...}``, plus ``"clientActivityID"`` when an activity
            was given; 1.1: ``{}``.

        Raises:
            As ``upload_file``; the size limit applies to the whole body.
            InvalidArgumentError also for a malformed ``files`` item (nothing
            was sent).
        """
        manifest: dict[str, Any] = {"files": _file_manifest(files)}
        if activity is not None:
            manifest["activity"] = activity
        arguments = (_native.encode_string(user_id, "user_id"), _native.encode_json(manifest, "upload"))
        return self._upload(progress, lib.dl_upload_multipart, *arguments)

    def _upload(self, progress: Optional[ProgressCallable], function: Callable[..., int],
                *arguments: Any) -> dict[str, Any]:
        """Calls an upload, with ``progress`` as the conversation's callback while it runs."""
        if progress is None:
            with self._borrow() as handle:
                plain: dict[str, Any] = _native.call(function, handle, *arguments)
            return plain
        if not callable(progress):
            raise TypeError(f"progress must be callable, not {type(progress).__name__}")
        relay = _native.ProgressRelay(progress)
        with self._progress_lock, self._borrow() as handle:
            self._set_progress(handle, relay.function)
            try:
                result: dict[str, Any] = _native.call(function, handle, *arguments)
            except DirectLineError:
                if relay.error is None:
                    raise
            finally:
                self._set_progress(handle, _native.NO_PROGRESS)
                # Another thread's send that started while the relay was set
                # may still call it: keep it until every call has returned.
                self._keep_while_busy(relay)
        if relay.error is not None:
            # Raised here, outside the except block, so that it does not
            # claim to have happened while handling the CancelledError.
            raise relay.error
        return result

    @staticmethod
    def _set_progress(handle: int, function: Any) -> None:
        status = lib.dl_conversation_set_progress(handle, function, None)
        if status != Status.OK:
            raise error_from_status(status, None, f"setting the progress callback failed "
                                                  f"({_native.status_name(status)})")


def _file_manifest(files: Sequence[FileItem]) -> list[dict[str, Any]]:
    """``upload``'s files in the C spelling of ``upload_json``."""
    if isinstance(files, (str, bytes, os.PathLike, Mapping)):
        raise InvalidArgumentError.local("files must be a list of paths or dicts, not a single "
                                         + type(files).__name__)
    return [_file_part(item, f"files[{index}]") for index, item in enumerate(files)]


def _file_part(item: FileItem, what: str) -> dict[str, Any]:
    if isinstance(item, (str, os.PathLike)):
        return {"path": _path_text(item, what)}
    if not isinstance(item, Mapping):
        raise InvalidArgumentError.local(
            f"{what} must be a path (str or os.PathLike) or a dict, not {type(item).__name__}")
    part: dict[str, Any] = {}
    for key, value in item.items():
        if key not in _FILE_KEYS:
            raise InvalidArgumentError.local(
                f"{what} has an unknown key {key!r}; expected one of {', '.join(_FILE_KEYS)}")
        if value is None:
            continue
        if key == "path":
            value = _path_text(value, f"{what}['path']")
        elif key == "data":
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise InvalidArgumentError.local(
                    f"{what}['data'] must be bytes, bytearray or memoryview, not {type(value).__name__}")
            value = base64.b64encode(value).decode("ascii")
        part[_FILE_KEYS[key]] = value
    return part


def _path_text(path: Any, what: str) -> str:
    """A path as the str that goes into JSON (the library converts it back)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError.local(f"{what} must be a str or os.PathLike, not {type(path).__name__}")
    return os.fsdecode(path)
