"""The Direct Line 3.0 WebSocket stream (`streamUrl`), on a port of its own.

A `websockets` asyncio server runs an event loop in one background thread.
The store calls `_notify` (from whichever HTTP thread stored something, under
the store's lock, so in the order things happened); that queues the event
and wakes the loop with `call_soon_threadsafe` (once per batch), which puts
it in the queue of each stream of that conversation. Nothing polls.

What a stream does (docs/emulator.md, "The WebSocket stream"):

- the upgrade is authorised by the URL's `t=` (a stream ticket, 60 s to
  connect); faults and refusals answer before the 101;
- one stream per conversation: another one is closed with 1008 `collision`;
- first the replay (everything after the URL's watermark, or after what was
  stored when the URL was issued), then every stored activity as it is
  stored, one ActivitySet per message, and typing (which is never stored);
- an empty text message after `streamKeepAliveSeconds` without a message;
- after an `endOfConversation` is sent, a normal close (1000).
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import http
import logging
import socket
import ssl
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as UpgradeRequest
from websockets.http11 import Response as UpgradeResponse

from . import __version__
from .errors import ApiError, error_body, not_found
from .faults import COLLISION_REASON, STREAM_ACTIONS, UPGRADE_ACTIONS, Fault
from .messages import (GARBAGE_BODY, JSON_CONTENT_TYPE, WRONG_TYPE_BODY, encode_json, first_values,
                       split_target)
from .state import V3, Conversation

COLLISION_CODE = 1008
# The listen queue of the stream's socket (and the HTTP port's), --backlog.
DEFAULT_BACKLOG = 128
# How many ended streams GET /_emulator/streams lists.
CLOSED_KEPT = 200
# Closing a stream waits this long for the client's close frame.
CLOSE_TIMEOUT_SECONDS = 5
# Largest message accepted from a client (it should send none but empty ones).
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
# Commands a stream takes from the control API (besides the fault actions).
COMMANDS = ("close", "drop", "silent", "collision")

# websockets logs refused handshakes and client errors; they are the client's
# business, as for the HTTP server. The emulator's own bugs are printed below.
_QUIET = logging.getLogger("directline-emulator.stream")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class _StreamConnection(ServerConnection):
    """A server connection that can go silent: while `muted`, everything it
    would write (messages, pongs, close frames, TCP half-close) is dropped,
    but it still reads, so it notices when the client goes away."""

    muted = False
    setup: _Setup | None = None
    entry: dict | None = None
    dropped = False

    def send_data(self) -> None:
        if self.muted:
            for _ in self.protocol.data_to_send():
                pass
            return
        super().send_data()


@dataclass
class _Setup:
    """What the upgrade request decided, for the connection's handler."""
    conversation: Conversation
    position: int
    connection_id: int
    fault: Fault | None


@dataclass
class _Stream:
    """One open stream of a conversation."""
    connection: _StreamConnection
    conversation: Conversation
    connection_id: int
    fault: Fault | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    # The watermark: how many stored activities this stream has sent or skipped.
    cursor: int = 0
    frames: int = 0
    keep_alives: int = 0
    received: int = 0
    silent: bool = False
    last_sent: float = 0.0
    # Open when the emulator was reset: its end is not listed, as nothing
    # from before a reset is.
    reset_away: bool = False

    def as_json(self) -> dict:
        return {"connection": self.connection_id, "conversationId": self.conversation.id,
                "state": "silent" if self.silent else "open", "watermark": str(self.cursor),
                "framesSent": self.frames, "keepAlivesSent": self.keep_alives,
                "messagesReceived": self.received}


class _HeaderView:
    """websockets' Headers as the request log reads headers: (name, value) pairs."""

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def items(self):
        return list(self._headers.raw_items())


def _response(status: int, body: bytes, content_type: str | None,
              extra: list[tuple[str, str]] | None = None) -> UpgradeResponse:
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Length", str(len(body)))])
    if content_type:
        headers["Content-Type"] = content_type
    for name, value in extra or []:
        headers[name] = value
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return UpgradeResponse(status, phrase, headers, body)


def _error_response(error: ApiError) -> UpgradeResponse:
    body = encode_json(error_body(error.status, error.code, error.message, False))
    return _response(error.status, body, JSON_CONTENT_TYPE, error.headers)


class StreamServer:
    """The stream's listening socket, event loop thread and open streams."""

    def __init__(self, emulator, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 quiet: bool, connection_ids: Callable[[], int], backlog: int = DEFAULT_BACKLOG) -> None:
        self.emulator = emulator
        self.quiet = quiet
        self.secure = ssl_context is not None
        self._ssl_context = ssl_context
        self._connection_ids = connection_ids
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._backlog = backlog
        self._sock = socket.create_server((host, port), family=family, backlog=backlog)
        self.port = self._sock.getsockname()[1]
        self._streams: dict[str, list[_Stream]] = {}
        # Events from the store not yet dispatched on the loop (see _notify).
        self._events: collections.deque[tuple] = collections.deque()
        self._events_lock = threading.Lock()
        self._drain_due = False
        # The streams that ended, newest last, with what the client's close
        # frame said (GET /_emulator/streams: "closed").
        self._closed: collections.deque[dict] = collections.deque(maxlen=CLOSED_KEPT)
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"directline-emulator-stream:{self.port}")
        self._thread.start()
        self._ready.wait(10)
        if self._failure is not None or not self._ready.is_set():
            self._sock.close()
            raise OSError(f"the WebSocket stream server did not start: {self._failure}")

    # -- the loop thread ---------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._loop_error)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as failure:  # reported to the thread that started the server
            self._failure = failure
            self._ready.set()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), (OSError, ConnectionClosed)):
            return  # resets and failed TLS handshakes: the client's business
        loop.default_exception_handler(context)

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        # The event loop calls listen() again on the socket when it starts
        # serving, with its own default (100) unless given the backlog.
        server = await serve(self._handler, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog,
                             process_request=self._process_request,
                             process_response=self._process_response,
                             server_header=f"directline-emulator/{__version__}",
                             compression=None, open_timeout=None, ping_interval=None,
                             close_timeout=CLOSE_TIMEOUT_SECONDS,
                             max_size=MAX_CLIENT_MESSAGE_BYTES, logger=_QUIET,
                             create_connection=_StreamConnection)
        self.emulator.store.set_listener(self._notify)
        self._ready.set()
        await self._stopping.wait()
        self.emulator.store.set_listener(None)
        for streams in list(self._streams.values()):
            for stream in streams:
                if stream.silent:
                    stream.connection.transport.abort()
        server.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS / 2):
                await server.wait_closed()
        except TimeoutError:
            for task in list(server.handler_tasks):
                task.cancel()

    def stop(self) -> None:
        """Close every stream (1001) and the listening socket; end the thread."""
        if self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop has already ended
        self._thread.join(5)

    async def _pause(self, seconds: float) -> bool:
        """Sleep, but wake when the server stops; True when the full time passed."""
        assert self._stopping is not None
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return True
        return False

    # -- events from the store (any thread) --------------------------------------

    def _notify(self, event: tuple) -> None:
        """Queue the event for the loop; wake the loop only when no drain is due
        yet. Under load this wakes it (a syscall, made under the store's lock)
        once per batch of events instead of once per event."""
        with self._events_lock:
            self._events.append(event)
            if self._drain_due:
                return
            self._drain_due = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            pass  # the loop has ended: the emulator is stopping

    def _drain(self) -> None:
        """Dispatch every queued event, in order (on the loop)."""
        while True:
            with self._events_lock:
                if not self._events:
                    self._drain_due = False
                    return
                events = list(self._events)
                self._events.clear()
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: tuple) -> None:
        kind, conversation_id, number, activity = event
        if kind == "reset":
            self._closed.clear()
            for streams in self._streams.values():
                for stream in streams:
                    stream.reset_away = True
                    stream.queue.put_nowait(("command", "close", 1001, "emulator reset", 0.0))
            return
        for stream in self._streams.get(conversation_id, ()):
            stream.queue.put_nowait((kind, number, activity))

    # -- the control API (HTTP threads) ------------------------------------------

    def _call(self, coroutine, default):
        if self._loop.is_closed() or (self._stopping is not None and self._stopping.is_set()):
            coroutine.close()
            return default
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)
        except (RuntimeError, TimeoutError):
            return default

    def describe(self) -> list[dict]:
        """Every open stream, oldest first."""
        async def collect() -> list[dict]:
            streams = [stream for group in self._streams.values() for stream in group]
            return [stream.as_json() for stream in sorted(streams, key=lambda s: s.connection_id)]
        return self._call(collect(), [])

    def describe_closed(self) -> list[dict]:
        """The streams that ended (the last CLOSED_KEPT), oldest first."""
        async def collect() -> list[dict]:
            return list(self._closed)
        return self._call(collect(), [])

    def command(self, conversation_id: str, action: str, code: int, reason: str,
                seconds: float) -> int:
        """Have the conversation's open streams close, drop or go silent now;
        how many there were. Queued after everything stored before the call."""
        async def send() -> int:
            streams = self._streams.get(conversation_id, [])
            for stream in streams:
                stream.queue.put_nowait(("command", action, code, reason, seconds))
            return len(streams)
        return self._call(send(), 0)

    # -- the upgrade request -----------------------------------------------------

    async def _process_request(self, connection: _StreamConnection,
                               request: UpgradeRequest) -> UpgradeResponse | None:
        try:
            return await self._admit(connection, request)
        except Exception:  # an emulator bug must not look like a network failure
            traceback.print_exc(file=sys.stderr)
            return _error_response(ApiError(500, "ServiceError", "internal emulator error"))

    async def _admit(self, connection: _StreamConnection,
                     request: UpgradeRequest) -> UpgradeResponse | None:
        raw_path, raw_query = split_target(request.path)
        connection_id = self._connection_ids()
        connection.entry = self.emulator.log.record("GET", raw_path, raw_query,
                                                    _HeaderView(request.headers), b"",
                                                    connection_id)
        faults = self.emulator.faults
        fault = faults.take("GET", raw_path, stream=True, actions=UPGRADE_ACTIONS)
        if fault is not None:
            response = await self._upgrade_fault(connection, fault)
            if response is not None or connection.dropped:
                return response
        try:
            conversation, position = self._authorize(raw_path, raw_query)
        except ApiError as error:
            return _error_response(error)
        # A stream fault is used up only by a stream that opens.
        fault = faults.take("GET", raw_path, stream=True, actions=STREAM_ACTIONS)
        connection.setup = _Setup(conversation, position, connection_id, fault)
        return None

    def _authorize(self, raw_path: str, raw_query: str) -> tuple[Conversation, int]:
        """The conversation and replay position the URL's ticket gives, or why not."""
        segments = [unquote(segment) for segment in raw_path.split("/")[1:]]
        expected = ["v3", "directline", "conversations", None, "stream"]
        if len(segments) != len(expected) or not segments[3] or any(
                want is not None and want != got.lower() for want, got in zip(expected, segments)):
            raise not_found("no such path")
        conversation_id = segments[3]
        query = first_values(raw_query)
        store = self.emulator.store
        ticket = store.stream_ticket(query.get("t", ""))
        if ticket is None:
            raise ApiError(403, "BadArgument", "Invalid stream token")
        if ticket.conversation_id != conversation_id:
            raise ApiError(403, "BadArgument", "token not valid for this conversation")
        if ticket.expired():
            raise ApiError(403, "TokenExpired",
                           "the stream URL has expired: reconnect (GET conversations/{id}) for a new one")
        conversation = store.conversation(conversation_id)
        if conversation is None or conversation.protocol != V3:
            raise not_found("conversation not found")
        raw = query.get("watermark", "")
        if raw == "":
            return conversation, ticket.position
        if not raw.isascii() or not raw.isdigit():
            raise ApiError(400, "BadArgument", "watermark is not valid")
        return conversation, int(raw)

    async def _upgrade_fault(self, connection: _StreamConnection,
                             fault: Fault) -> UpgradeResponse | None:
        """An HTTP fault on the upgrade: a response, or None to go on (after
        `delay`; `connection.dropped` when the connection was closed instead)."""
        action = fault.action
        if action == "status":
            headers = [("Retry-After", fault.retry_after)] if fault.retry_after else []
            if fault.location:
                headers.append(("Location", fault.location))
            assert fault.status is not None
            if fault.status in (204, 304):
                return _response(fault.status, b"", None, headers)
            if fault.bare:
                page = f"<html><body><h1>{fault.status}</h1>{fault.message}</body></html>".encode()
                return _response(fault.status, page, "text/html; charset=utf-8", headers)
            return _error_response(ApiError(fault.status, fault.code, fault.message or "", headers))
        if action == "garbage":
            return _response(200, GARBAGE_BODY, "application/json")
        if action == "wrong_type":
            return _response(200, WRONG_TYPE_BODY, "text/html; charset=utf-8")
        if action == "delay":
            if await self._pause(fault.seconds):
                return None
        elif action == "hang":
            await self._pause(fault.seconds)
        # close, hang, or a delay cut short by shutdown: no response at all
        connection.dropped = True
        connection.transport.abort()
        await connection.wait_closed()
        return _response(500, b"", None)  # never sent: the connection is closed

    def _process_response(self, connection: _StreamConnection, request: UpgradeRequest,
                          response: UpgradeResponse) -> None:
        if connection.dropped:
            return
        if connection.entry is not None:
            self.emulator.log.set_status(connection.entry, response.status_code)
        if not self.quiet:
            address = connection.remote_address[0] if connection.remote_address else "-"
            path = request.path.split("?", 1)[0]  # the query holds the stream token
            sys.stderr.write(f"{address} GET {path} -> {response.status_code}\n")

    # -- an open stream ----------------------------------------------------------

    async def _handler(self, connection: _StreamConnection) -> None:
        try:
            await self._serve_stream(connection)
        except ConnectionClosed:
            pass
        except Exception:
            traceback.print_exc(file=sys.stderr)
            connection.transport.abort()

    async def _serve_stream(self, connection: _StreamConnection) -> None:
        setup = connection.setup
        assert setup is not None
        conversation = setup.conversation
        fault = setup.fault
        if fault is not None and fault.action == "stream_collision" and fault.frames == 0:
            await connection.close(fault.close_code or COLLISION_CODE, COLLISION_REASON)
            return
        holders = self._streams.get(conversation.id, [])
        if holders:
            if self.emulator.store.settings().stream_collision == "closeNew":
                await connection.close(COLLISION_CODE, COLLISION_REASON)
                return
            for holder in holders:
                holder.queue.put_nowait(("command", "collision", COLLISION_CODE, COLLISION_REASON, 0.0))
        stream = _Stream(connection, conversation, setup.connection_id, fault,
                         last_sent=asyncio.get_running_loop().time())
        # Registering and taking the replay happen with no await between, so
        # every later activity reaches the queue and none is missed; the
        # queue may repeat some of the replay, which the cursor skips.
        self._streams.setdefault(conversation.id, []).append(stream)
        replay, stored = self.emulator.store.items_from(conversation, setup.position)
        stream.cursor = max(setup.position, stored)
        reader = asyncio.create_task(self._read(stream))
        try:
            await self._pump(stream, replay, setup.position)
        finally:
            self._forget(stream)
            reader.cancel()

    def _forget(self, stream: _Stream) -> None:
        streams = self._streams.get(stream.conversation.id, [])
        if stream in streams:
            streams.remove(stream)
            if not stream.reset_away:
                close = stream.connection.protocol.close_rcvd
                self._closed.append({**stream.as_json(), "state": "closed",
                                     "clientCloseCode": None if close is None else close.code,
                                     "clientCloseReason": None if close is None else close.reason})
        if not streams:
            self._streams.pop(stream.conversation.id, None)

    async def _read(self, stream: _Stream) -> None:
        """Count (and otherwise ignore) what the client sends; report the end."""
        try:
            async for _ in stream.connection:
                stream.received += 1
        except ConnectionClosed:
            pass
        finally:
            stream.queue.put_nowait(("gone",))

    async def _pump(self, stream: _Stream, replay: list[dict], position: int) -> None:
        fault = stream.fault
        if fault is not None and fault.frames == 0:
            await self._act(stream, fault.action, fault.close_code, fault.close_reason, fault.seconds)
            return
        page = max(1, self.emulator.store.settings().page_size)
        for start in range(0, len(replay), page):
            chunk = replay[start:start + page]
            if await self._send_set(stream, chunk, position + start + len(chunk)):
                return
        while True:
            event = await self._next_event(stream)
            kind = event[0]
            if kind == "gone":
                return
            if kind == "command":
                await self._act(stream, *event[1:])
                return
            if kind == "item":
                index, activity = event[1], event[2]
                if index < stream.cursor:
                    continue  # already sent in the replay
                if await self._send_set(stream, [activity], index + 1):
                    return
            elif kind == "live":
                position_due, activity = event[1], event[2]
                if position_due != stream.cursor:
                    continue  # due before what this stream has sent: too late
                if await self._send_set(stream, [activity], None):
                    return

    async def _next_event(self, stream: _Stream) -> tuple:
        """The next queued event; an empty message whenever the stream was idle
        for `streamKeepAliveSeconds`."""
        loop = asyncio.get_running_loop()
        while True:
            interval = self.emulator.store.settings().stream_keep_alive_seconds
            wait = stream.last_sent + interval - loop.time()
            if wait <= 0:
                await stream.connection.send("")
                stream.keep_alives += 1
                stream.last_sent = loop.time()
                continue
            try:
                async with asyncio.timeout(wait):
                    return await stream.queue.get()
            except TimeoutError:
                continue

    async def _send_set(self, stream: _Stream, activities: list[dict], watermark: int | None) -> bool:
        """Send one ActivitySet (no watermark for stream-only activities); True
        when that ended the stream (a fault after N messages, endOfConversation)."""
        document: dict = {"activities": activities}
        if watermark is not None:
            null = self.emulator.store.settings().null_watermark
            document["watermark"] = None if null else str(watermark)
            stream.cursor = watermark
        await stream.connection.send(encode_json(document), text=True)
        stream.frames += 1
        stream.last_sent = asyncio.get_running_loop().time()
        fault = stream.fault
        if fault is not None and stream.frames == fault.frames:
            await self._act(stream, fault.action, fault.close_code, fault.close_reason, fault.seconds)
            return True
        if any(activity.get("type") == "endOfConversation" for activity in activities):
            await stream.connection.close(1000)
            return True
        return False

    async def _act(self, stream: _Stream, action: str, code: int | None, reason: str | None,
                   seconds: float) -> None:
        """End the stream as a fault or the control API says."""
        connection = stream.connection
        if action in ("stream_close", "close"):
            await connection.close(code or 1000, reason or "")
        elif action in ("stream_collision", "collision"):
            await connection.close(code or COLLISION_CODE, COLLISION_REASON)
        elif action in ("stream_drop", "drop"):
            connection.transport.abort()
        elif action in ("stream_silent", "silent"):
            await self._go_silent(stream, seconds)

    async def _go_silent(self, stream: _Stream, seconds: float) -> None:
        """Send nothing more (no messages, keep-alives, pongs or close frame) with
        the TCP connection open, until the client leaves, `seconds` pass, or the
        emulator resets or stops; then drop the connection."""
        stream.silent = True
        stream.connection.muted = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        event = await stream.queue.get()
                except TimeoutError:
                    return
                if event[0] in ("gone", "command"):
                    return
        finally:
            stream.connection.transport.abort()
