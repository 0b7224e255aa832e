"""Conversation: one conversation with the bot, and everything said and uploaded in it."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from . import _native
from ._handle import NativeObject
from ._native import Bytes, ProgressCallable, _milliseconds, lib
from .errors import CancelledError, DirectLineError, InvalidArgumentError, InvalidHandleError, Status, error_from_status

if TYPE_CHECKING:
    from .client import Client

# upload(files=[{...}]) keys in Python style -> upload_json "files" keys.
_FILE_KEYS: Mapping[str, str] = {
    "path": "path",
    "data": "dataBase64",
    "content_type": "contentType",
    "filename": "filename",
}

StrPath = Union[str, "os.PathLike[str]"]
"""A file system path: a str or an os.PathLike such as pathlib.Path."""

FileItem = Union[StrPath, Mapping[str, Any]]  # noqa: UP007 - evaluated at run time: X | Y needs Python 3.10
"""One file of ``Conversation.upload``: a path, or a dict with ``path`` or
``data`` and optionally ``content_type`` and ``filename``."""


class Conversation(NativeObject):
    """One conversation with the bot: its id, its own token and the watermark read so far.

    Made by ``Client.start_conversation``, ``Client.open_conversation`` or
    ``Client.resume``, never directly. Usable from many threads at once.
    While it is open, the library refreshes its token on a background thread
    at half the token's remaining life (when the expiry is known), until
    ``end()`` or ``close()``. Closing it frees the local handle only; the
    conversation goes on at the service (``end()`` ends it).

    Attributes:
        client: the Client it came from (kept alive by this reference).
        start_result: the service's Conversation object when it was started
            here (``conversationId``, ``token``, ``expires_in``,
            ``streamUrl``...; the token is a secret), else None.
    """

    _kind = "Conversation"

    def __init__(self, client: Client, handle: int, *, start_result: dict[str, Any] | None) -> None:
        # Set by close(), to wake ``replies()`` between its polls.
        self._closing = threading.Event()
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

    def close(self) -> None:
        """Releases the C handle. Idempotent; later use raises ValueError.

        The conversation goes on at the service (see ``end``); its token is
        no longer refreshed. Any other thread's call in flight finishes
        normally, and the handle is released when the last returns; a
        ``wait``, ``replies``, ``next`` or ``stream`` does not hold it back,
        and ends with CancelledError once the handle is released (at once
        when no other call is in flight). Listening stops, and the
        descriptor of ``fileno()`` is closed.
        """
        super().close()
        self._closing.set()

    def info(self) -> dict[str, Any]:
        """Describes the conversation locally; sends nothing.

        Returns:
            ``{"conversationId", "protocol", "watermark", "streamUrl"``
            (without its token), ``"tokenExpiresAt"`` (ISO-8601 UTC such as
            ``"2026-11-21T02:30:00Z"``, or None when unknown),
            ``"autoRefresh"`` (True while the library will refresh the
            token on its own), ``"tokenRefreshError"`` (why the last
            automatic refresh failed, or None), ``"ended"`` (``end()`` was
            called)``}``. Never the token: see ``state()``.

        Raises:
            ValueError: the conversation is closed.
        """
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_info, handle)
        return result

    def state(self) -> dict[str, Any]:
        """What ``Client.resume`` needs to reopen this conversation later; sends nothing.

        The dict is JSON-serializable, so it can be stored anywhere; it
        contains the conversation's token, a secret: store it as one.

        Returns:
            ``{"conversationId", "token", "watermark", "streamUrl",
            "tokenExpiresAt", "tokenLifetime"}`` (``tokenLifetime``: the
            seconds the service gave the token, or None). ``token`` is None
            when the conversation uses the client's secret (which is never
            handed out), and the ``streamUrl`` carries the token too.

        Raises:
            ValueError: the conversation is closed.
        """
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_state, handle)
        return result

    def refresh(self) -> dict[str, Any]:
        """Renews the conversation's token now, and keeps the new one.

        Not needed in normal use: the token is refreshed automatically at
        half its remaining life. Sends ``POST /v3/directline/tokens/refresh``
        (3.0) or ``GET /api/tokens/{id}/renew`` (1.1; POST if the service
        answers 405). The old token stays valid until its own expiry.

        Returns:
            the same as ``info()``, with the new ``tokenExpiresAt``.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: the conversation uses the client's secret,
                which never expires; nothing was sent.
            TokenExpiredError: too late: start a new conversation.
            DirectLineError: a network or service failure.
        """
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_refresh, handle)
        return result

    @property
    def id(self) -> str:
        """The conversation id."""
        conversation_id: str = self.info()["conversationId"]
        return conversation_id

    @property
    def watermark(self) -> str | None:
        """The watermark of the last ``get_activities`` or ``wait`` (None before the first)."""
        watermark: str | None = self.info().get("watermark")
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

    def wait(self, timeout: float = 10.0, *, interval: float = 1.0, after_send: float = 0.3,
             user_id: str | None = None, include_own: bool = False,
             max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Waits for the bot's replies: polls until something arrives from others, or ``timeout``.

        Polls what arrived after the watermark (first ``after_send`` seconds
        after this conversation's last send, then every ``interval``) and
        returns as soon as an activity (3.0) or message (1.1) arrives that
        is not from the caller's users: ``user_id``, or by default every user
        this Conversation has sent or uploaded as. The watermark advances, so
        the next wait returns only newer replies; each activity is returned
        at most once even if the service delivers it twice.

        What one wait returns is bounded: once the pages it holds
        activities from reach ``max_bytes`` (16 MiB by default), it returns
        them at once, and the next wait returns the rest.

        Blocks the calling thread (without the GIL) for up to ``timeout``;
        Ctrl-C takes effect when it returns. ``replies()`` polls in short
        slices instead. Closing the conversation from another thread ends
        the wait with CancelledError (see ``close``).

        Args:
            timeout: seconds to wait at most.
            interval: seconds between polls (at least 0.05).
            after_send: seconds from the last send to the first poll.
            user_id: the one user whose activities do not count as replies.
            include_own: also return the caller's users' own activities.
            max_bytes: the most page bytes (1 to 64 MiB) one wait holds
                activities from before it returns; None: 16 MiB.

        Returns:
            the new activities (3.0) or messages (1.1) from others (and with
            ``include_own`` the caller's own too), in order; an empty list
            when ``timeout`` passed with nothing new. A timeout never raises.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: a negative or out-of-range time, or a bad
                ``user_id``; nothing was sent.
            CancelledError: the conversation was closed during the wait.
            DirectLineError: a network or service failure.
        """
        options = self._wait_options(interval, user_id, include_own)
        options["timeoutMs"] = _milliseconds(timeout, "timeout")
        options["afterSendMs"] = _milliseconds(after_send, "after_send")
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
                raise InvalidArgumentError.local(f"max_bytes must be an int, not {type(max_bytes).__name__}")
            options["maxBytes"] = max_bytes
        result = self._wait_once(_native.encode_json(options, "wait options"), cancel_if_closed=False)
        return _activities(result)

    def replies(self, timeout: float | None = 10.0, *, interval: float = 1.0,
                user_id: str | None = None,
                include_own: bool = False) -> Iterator[dict[str, Any]]:
        """Yields new activities from others as they arrive, until ``timeout`` seconds bring nothing new.

        A generator over ``wait``: polls every ``interval`` seconds, yields
        each new activity (3.0) or message (1.1) that is not from the
        caller's users (``user_id``, or every user this Conversation sent
        as), and ends once ``timeout`` seconds pass without one. The
        conversation may be used, e.g. to send, between the items::

            conversation.send_text("user1", "hello")
            for reply in conversation.replies(timeout=5):
                print(reply.get("text"))

        The library is called in slices of at most about a second, so Ctrl-C
        (KeyboardInterrupt) is honoured promptly.

        Args:
            timeout: seconds without anything new after which the generator
                ends; None never ends it (stop iterating, or close the
                conversation).
            interval: seconds between polls (at least 0.05).
            user_id: the one user whose activities do not count as replies.
            include_own: also yield the caller's users' own activities.

        Returns:
            an iterator of activity (3.0) or message (1.1) dicts.

        Raises:
            InvalidArgumentError: a negative time (at once) or an
                out-of-range one or a bad ``user_id`` (at the first item);
                nothing was sent.
            ValueError: the conversation is closed (at the first item).
            CancelledError: the conversation was closed from another thread
                while the generator ran.
            DirectLineError: a network or service failure.
        """
        idle_ms = None if timeout is None else _milliseconds(timeout, "timeout")
        options = self._wait_options(interval, user_id, include_own)
        return self._replies(idle_ms, options)

    def _replies(self, idle_ms: int | None, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
        interval_ms: int = options["intervalMs"]
        # Each call covers whole poll intervals, and at most _SLICE_MS, so
        # that Ctrl-C is handled between calls; 0 (one poll) when an interval
        # is longer. C polls at the start and at the end of a call; the wait
        # between calls keeps the polls ``interval`` apart.
        slice_ms = (_SLICE_MS // interval_ms) * interval_ms if interval_ms > 0 else 0
        deadline = None if idle_ms is None else time.monotonic() + idle_ms / 1000
        first = True
        while True:
            if deadline is None:
                options["timeoutMs"] = slice_ms
            else:
                options["timeoutMs"] = min(slice_ms, _milliseconds(max(0.0, deadline - time.monotonic()), "timeout"))
            result = self._wait_once(_native.encode_json(options, "wait options"), cancel_if_closed=not first)
            first = False
            polled = time.monotonic()
            found = _activities(result)
            yield from found
            if result.get("more"):
                continue  # cut at the byte bound: the rest is there already
            now = time.monotonic()
            if found and idle_ms is not None:
                deadline = now + idle_ms / 1000
            if deadline is not None and now >= deadline:
                return
            pause = polled + interval_ms / 1000 - now
            if deadline is not None:
                pause = min(pause, deadline - now)
            if pause > 0 and self._closing.wait(pause):
                raise _closed_during_wait()

    @staticmethod
    def _wait_options(interval: float, user_id: str | None, include_own: bool) -> dict[str, Any]:
        """The ``options_json`` of ``dl_conversation_wait`` common to ``wait`` and ``replies``."""
        if not isinstance(include_own, bool):
            raise InvalidArgumentError.local(f"include_own must be a bool, not {type(include_own).__name__}")
        options: dict[str, Any] = {"intervalMs": _milliseconds(interval, "interval"), "includeOwn": include_own}
        if user_id is not None:
            _native.encode_string(user_id, "user_id")  # a str without NUL; the library checks the rest
            options["userId"] = user_id
        return options

    def _wait_once(self, options: bytes, *, cancel_if_closed: bool) -> dict[str, Any]:
        """One ``dl_conversation_wait``, which closing the conversation interrupts.

        With ``cancel_if_closed``, a conversation already closed raises
        CancelledError rather than ValueError (it was closed during a
        ``replies`` loop).
        """
        return self._interruptible_read(lib.dl_conversation_wait, options, cancel_if_closed=cancel_if_closed)

    def _interruptible_read(self, function: Callable[..., int], argument: Any, *,
                       cancel_if_closed: bool) -> dict[str, Any]:
        """One blocking read (``dl_conversation_wait`` or ``_next``) that closing interrupts."""
        if cancel_if_closed and self.closed:
            raise _closed_during_wait()
        try:
            with self._borrow(interruptible=True) as handle:
                result: dict[str, Any] = _native.call(function, handle, argument)
        except InvalidHandleError:
            # Freed by close() before the call reached the library.
            if not self.closed:
                raise
            raise _closed_during_wait() from None
        except ValueError as error:
            if cancel_if_closed and self.closed and not isinstance(error, DirectLineError):
                raise _closed_during_wait() from None
            raise
        return result

    def listen(self, mode: str = "auto", poll_interval: float = 1.0, include_own: bool = False,
               max_queued: int = 10000, stream_silence: float = 90.0) -> dict[str, Any]:
        """Starts receiving this conversation's activities in the background.

        Take them with ``next()`` or ``stream()`` (``wait()`` takes from the
        same queue), or wait for ``fileno()`` to be readable in a selector or
        an event loop. On 3.0 the library reads the conversation's WebSocket
        stream (pushed at once; typing activities come only this way),
        connecting again after a drop, a close or a silence; otherwise it
        polls ``GET .../activities?watermark=`` (1.1: ``.../messages``): at
        once while pages bring new activities, else every ``poll_interval``
        seconds. Both run on the library's one background thread, shared by
        every conversation. Every activity after the watermark reaches
        ``next()`` once, in order, across drops, reconnects, failed polls and
        token refreshes; the caller's own activities (its users, its
        clientActivityIDs) are skipped unless ``include_own``. A failure that
        may pass is retried with backoff (state ``"reconnecting"``); a
        refusal (401, 403, 404, an expired token), a TLS failure or a stream
        closed for a ``collision`` (ConflictError: another client holds it)
        ends in state ``"failed"``, and ``end()`` or the bot's
        endOfConversation in state ``"ended"``.

        While listening, ``get_activities()`` raises InvalidArgumentError
        (one reader per conversation). Listening again reports the listener
        that runs and changes nothing; ``unlisten()`` first to start afresh.

        Args:
            mode: ``"auto"`` (the stream on 3.0 when the libcurl in use
                can, else polling), ``"polling"``, or ``"websocket"``
                (UnsupportedError on 1.1 or with a libcurl older than 8.11
                or built without ws and wss).
            poll_interval: seconds between polls while nothing arrives
                (0.05 to 3600).
            include_own: also hand out the caller's own activities.
            max_queued: activities held unread (1 to 1,000,000) before the
                library stops reading (the stream is paused, polling stops)
                until ``next()`` takes some; nothing is lost.
            stream_silence: seconds the stream may bring nothing, not even
                a keep-alive, before it counts as dropped (0.2 to 3600).

        Returns:
            ``{"mode": "websocket" | "polling", "state": "connecting"}``, or
            the running listener's mode and state.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: a bad option; nothing was started.
            UnsupportedError: ``mode="websocket"`` where no stream can be
                had; nothing was started.
        """
        if not isinstance(mode, str):
            raise InvalidArgumentError.local(f"mode must be a str, not {type(mode).__name__}")
        if not isinstance(include_own, bool):
            raise InvalidArgumentError.local(f"include_own must be a bool, not {type(include_own).__name__}")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int):
            raise InvalidArgumentError.local(f"max_queued must be an int, not {type(max_queued).__name__}")
        options = {"mode": mode, "pollIntervalMs": _milliseconds(poll_interval, "poll_interval"),
                   "includeOwn": include_own, "maxQueued": max_queued,
                   "streamSilenceMs": _milliseconds(stream_silence, "stream_silence")}
        encoded = _native.encode_json(options, "listen options")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_listen, handle, encoded)
        return result

    def next(self, timeout: float | None = None) -> dict[str, Any]:
        """Takes what the listener queued since the last call, waiting up to ``timeout`` for something.

        Returns as soon as activities are queued or the listener's state
        changed since it was last reported. Blocks without the GIL; closing
        the conversation or ``unlisten()`` from another thread ends it with
        CancelledError. Ctrl-C takes effect when it returns (``stream()``
        waits in short slices instead).

        Args:
            timeout: seconds to wait at most; 0 does not wait; None waits
                without limit.

        Returns:
            ``{"activities": [...], "watermark": ..., "state": ..., "mode":
            ..., "timedOut": bool}``: the activities (3.0) or messages (1.1)
            in order, each once; ``state`` one of ``"connecting"``,
            ``"online"``, ``"reconnecting"``, ``"ended"``, ``"failed"``;
            ``watermark`` the conversation's (what ``state()`` saves). A
            timeout never raises: ``timedOut`` is True and the list empty.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: not listening, or a bad ``timeout``.
            CancelledError: closed or unlistened during the call.
            DirectLineError: the failure that stopped the listener (state
                ``"failed"``), once everything queued before it was taken;
                again on every later call.
        """
        timeout_ms = -1 if timeout is None else _milliseconds(timeout, "timeout", within_ms=(0, 2**31 - 1))
        return self._next(timeout_ms, cancel_if_closed=False)

    def _next(self, timeout_ms: int, *, cancel_if_closed: bool) -> dict[str, Any]:
        return self._interruptible_read(lib.dl_conversation_next, timeout_ms, cancel_if_closed=cancel_if_closed)

    def stream(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yields activities as they arrive: a generator over ``listen()`` and ``next()``.

        Starts listening with the defaults unless the conversation listens
        already (call ``listen()`` first for other options), then yields each
        activity (3.0) or message (1.1) ``next()`` hands out, in order::

            for activity in conversation.stream():
                print(activity.get("text"))

        It ends when the conversation has ended (state ``"ended"``) and
        everything before the end was yielded, or once ``timeout`` seconds
        pass without anything new (None: never). The library is called in
        slices of at most a second, so Ctrl-C is honoured promptly.

        Raises:
            ValueError: the conversation is closed (at the first item).
            InvalidArgumentError: a bad ``timeout``.
            UnsupportedError: as ``listen()``.
            CancelledError: the conversation was closed, or stopped
                listening, while the generator ran.
            DirectLineError: the failure that stopped the listener, after
                everything queued before it was yielded.
        """
        idle_ms = None if timeout is None else _milliseconds(timeout, "timeout")
        return self._stream(idle_ms)

    def _stream(self, idle_ms: int | None) -> Iterator[dict[str, Any]]:
        self.listen()  # reports the running listener when there is one
        deadline = None if idle_ms is None else time.monotonic() + idle_ms / 1000
        first = True
        ended = False
        while True:
            # Once ended, only what is still queued is left: no waiting.
            slice_ms = 0 if ended else _SLICE_MS
            if deadline is not None:
                slice_ms = min(slice_ms, _milliseconds(max(0.0, deadline - time.monotonic()), "timeout"))
            try:
                result = self._next(slice_ms, cancel_if_closed=not first)
            except InvalidArgumentError:
                if first:
                    raise
                # Between two slices another thread called unlisten().
                raise _closed_during_wait("the conversation stopped listening during the stream") from None
            first = False
            activities: list[dict[str, Any]] = result["activities"]
            yield from activities
            ended = result["state"] == "ended"
            if ended and not activities:
                return
            if activities and idle_ms is not None:
                deadline = time.monotonic() + idle_ms / 1000
            if deadline is not None and not activities and time.monotonic() >= deadline:
                return

    def fileno(self) -> int:
        """The listener's file descriptor: readable exactly while ``next(0)`` would return something.

        For ``selectors``, ``select`` or asyncio's ``loop.add_reader``:
        level-triggered (activities queued, a state not yet reported, or a
        failure). It belongs to the conversation: never read or close it.
        The same descriptor serves the conversation's whole life (across
        ``unlisten()`` and ``listen()``) and is closed by ``close()``;
        take it out of any selector before closing.

        Raises:
            ValueError: the conversation is closed.
        """
        with self._borrow() as handle:
            descriptor, _ = _native.call_with_int_out(lib.dl_conversation_fd, handle)
        return descriptor

    @property
    def fd(self) -> int:
        """The same as ``fileno()``."""
        return self.fileno()

    def unlisten(self) -> dict[str, Any]:
        """Stops listening; harmless when not listening.

        Polling stops; a ``next()`` blocked in another thread raises
        CancelledError; what was queued and not taken is dropped, and the
        conversation's watermark (``state()``) still points before it, so a
        later read or ``listen()`` gets it again.

        Returns:
            ``{"dropped": N, "watermark": ...}``: the activities dropped and
            the conversation's watermark.

        Raises:
            ValueError: the conversation is closed.
        """
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_unlisten, handle)
        return result

    def confirm(self, client_activity_id: str, timeout: float = 0.0) -> dict[str, Any]:
        """Tells whether a send whose outcome is unknown reached the conversation (3.0).

        After a ``DirectLineError`` whose ``delivery`` is ``"unknown"`` (a
        timeout, a 502...), look its ``detail["clientActivityID"]`` up
        instead of guessing: the bot must not get the message twice, and it
        must not be lost silently. Reads the conversation from the start
        without moving this handle's watermark.

        Args:
            client_activity_id: the activity's ``channelData.clientActivityID``
                (in ``send_activity``'s result, and in the error's ``detail``).
            timeout: seconds to keep looking, in case the service is still
                processing it (0: one look).

        Returns:
            ``{"delivered": True, "id": ..., "clientActivityID": ...}`` or
            ``{"delivered": False, "clientActivityID": ...}``. Not delivered
            after the service had time to store it: sending it again (with
            the same clientActivityID) is safe.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: a bad id, a bad timeout, or a 1.1
                conversation (its messages carry no correlation id).
            DirectLineError: a network or service failure.
        """
        identifier = _native.encode_string(client_activity_id, "client_activity_id")
        options = _native.encode_json({"timeoutMs": _milliseconds(timeout, "timeout")}, "options")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_confirm, handle, identifier, options)
        return result

    def end(self, user_id: str) -> dict[str, Any]:
        """Ends the conversation for ``user_id``, and stops refreshing its token.

        3.0 sends the activity ``{"type": "endOfConversation", "from":
        {"id": user_id}}``; 1.1 has no such message and sends nothing. The
        conversation then lapses when its token expires. Close the
        Conversation afterwards as usual.

        Returns:
            3.0: ``{"id": ..., "clientActivityID": ...}`` as ``send_activity``;
            1.1: ``{}``.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: a bad user id; nothing was sent.
            DirectLineError: a network or service failure (with ``delivery``,
                as for ``send_activity``).
        """
        user = _native.encode_string(user_id, "user_id")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_conversation_end, handle, user)
        return result

    def upload_file(self, user_id: str, path: StrPath | bytes, *, content_type: str | None = None,
                    filename: str | None = None,
                    progress: ProgressCallable | None = None) -> dict[str, Any]:
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
                ``"``, CR, LF and ``%`` in it are sent as ``%22``, ``%0D``,
                ``%0A``, ``%25``, and ``\\`` as ``\\\\``; the name comes back as given.
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

    def upload_bytes(self, user_id: str, data: Bytes, *, content_type: str | None = None,
                     filename: str | None = None,
                     progress: ProgressCallable | None = None) -> dict[str, Any]:
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
               activity: Mapping[str, Any] | None = None,
               progress: ProgressCallable | None = None) -> dict[str, Any]:
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

    def _upload(self, progress: ProgressCallable | None, function: Callable[..., int],
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


_SLICE_MS = 1000
"""The longest ``dl_conversation_wait`` call ``replies()`` makes, in ms."""


def _activities(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The activities (3.0) or messages (1.1) of a wait result."""
    found: list[dict[str, Any]] = result["activities"] if "activities" in result else result["messages"]
    return found


def _closed_during_wait(message: str = "the conversation was closed during the wait") -> CancelledError:
    return CancelledError(message, {"status": Status.ERR_CANCELLED, "name": Status.ERR_CANCELLED.c_name,
                                    "message": message})


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
