"""asyncio: ``directline.aio``, the binding for code that runs on an event loop.

``aio.Client`` and ``aio.Conversation`` wrap a ``directline.Client`` and a
``directline.Conversation`` and offer the same calls as coroutines::

    from directline import aio

    async with aio.Client(endpoint, secret=SECRET) as client:
        async with await client.start_conversation() as conversation:
            await conversation.send_text("user1", "hello")
            async for activity in conversation.stream(timeout=10):
                print(activity.get("text"))

Two ways of calling the library, neither of which stalls the loop:

- Calls that block in the library (sends, uploads, tokens, ``wait``,
  ``confirm``, ``listen``, closing) run on a thread pool: the client's own
  (``max_workers`` threads at most) or the ``executor`` it was given.
- Receiving (``next`` and ``stream``) holds no thread: it waits for the
  conversation's descriptor (``Conversation.fileno()``) to become readable
  with ``loop.add_reader``, and then takes what is queued with a call that
  does not block. A thousand listening conversations are a thousand
  descriptors on the loop, not a thousand threads.

Cancelling a task cancels what it awaits. A receive takes nothing until the
descriptor says something is there, so a cancelled ``next`` or ``stream``
loses nothing; a library call already running on a thread finishes there
(it cannot be interrupted), and what a cancelled ``wait`` takes that way is
kept and handed out by the next ``wait``, ``next`` or ``stream``.

Importing ``directline`` does not import this module: ``from directline
import aio``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import client as _client
from . import conversation as _conversation
from ._native import Bytes, ProgressCallable, _milliseconds
from .conversation import FileItem, StrPath, _closed_during_wait
from .errors import DirectLineError, InvalidArgumentError, InvalidHandleError

if TYPE_CHECKING:
    from typing import Self  # only for annotations: Python 3.11 added it

__all__ = ["Client", "Conversation"]

_T = TypeVar("_T")

_RECHECK_SECONDS = 1.0
"""The longest a receive waits on the descriptor before it looks again.

The descriptor says when something arrived; looking again now and then also
notices what it cannot say: ``unlisten()`` or ``close()`` called on the
wrapped synchronous conversation from elsewhere.
"""


class _Pool:
    """The executor that blocking library calls run on, shared by a client and its conversations.

    A pool the binding made (from ``max_workers``) is shut down once the
    client and every conversation it made are closed; an executor the caller
    gave is never shut down here.
    """

    def __init__(self, executor: concurrent.futures.Executor | None, max_workers: int | None) -> None:
        if executor is not None and max_workers is not None:
            raise TypeError("give executor or max_workers, not both")
        if executor is not None and not isinstance(executor, concurrent.futures.Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor, not {type(executor).__name__}")
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                        or max_workers < 1):
            raise InvalidArgumentError.local("max_workers must be an int of at least 1")
        self._owned = executor is None
        self.executor: concurrent.futures.Executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="directline-aio")
        self._users = 1

    def retain(self) -> None:
        """Counts one more user (a conversation)."""
        self._users += 1

    def release(self) -> None:
        """Counts one user fewer; the last shuts a pool of our own down (running calls finish)."""
        self._users -= 1
        if self._users == 0 and self._owned:
            self.executor.shutdown(wait=False)

    async def run(self, function: Callable[[], _T], *,
                  abandoned: Callable[[_T], None] | None = None) -> _T:
        """Runs ``function`` on the executor and returns what it returned, or raises what it raised.

        When the awaiting task is cancelled before the call started, it never
        starts; once started it runs to its end on its thread, and its result
        goes to ``abandoned`` (on that thread), so that nothing it made is
        left behind.
        """
        future = self.executor.submit(function)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel() and abandoned is not None:
                future.add_done_callback(functools.partial(_dispose, abandoned))
            raise

    async def run_to_end(self, function: Callable[[], None]) -> None:
        """Runs ``function`` on the executor, to its end even if the awaiting task is cancelled."""
        try:
            future = self.executor.submit(function)
        except RuntimeError:  # the caller's executor was shut down: do it here
            function()
            return
        await asyncio.shield(asyncio.wrap_future(future))


def _dispose(abandoned: Callable[[_T], None], future: concurrent.futures.Future[_T]) -> None:
    """Hands the result of a call whose task was cancelled to ``abandoned``."""
    if not future.cancelled() and future.exception() is None:
        abandoned(future.result())


def _close_quietly(orphan: _conversation.Conversation) -> None:
    """Frees a conversation that a cancelled task made and nobody will use."""
    try:
        orphan.close()
    except DirectLineError:
        pass


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _outside(loop: asyncio.AbstractEventLoop) -> bool:
    """True when ``loop`` runs, and not on the calling thread."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    return running is not loop and loop.is_running()


class Client:
    """A Direct Line client for asyncio: ``directline.Client``, with coroutines for its calls.

    Takes the same arguments as ``directline.Client`` (construction sends
    nothing), plus where blocking calls run. Use it as ``async with
    aio.Client(...) as client:``. Closing the client leaves the
    conversations it started usable, as in the synchronous binding; the
    thread pool it made is shut down once it and all of them are closed.

    Args:
        endpoint, secret, token, token_endpoint, protocol, **options: as
            ``directline.Client``.
        executor: a ``concurrent.futures.Executor`` to run blocking calls on
            (never shut down by this binding).
        max_workers: the size of the thread pool the client makes when no
            ``executor`` is given; None: ``ThreadPoolExecutor``'s default.
            Only blocking calls use it; receiving uses none of its threads.

    Attributes:
        sync: the wrapped ``directline.Client``, e.g. for other threads.

    Raises:
        TypeError: an unknown keyword argument, or both ``executor`` and
            ``max_workers``.
        InvalidArgumentError: a value the library refuses (as
            ``directline.Client``), or a bad ``max_workers``.
    """

    def __init__(self, endpoint: str | None = None, *, secret: str | None = None, token: str | None = None,
                 token_endpoint: str | None = None, protocol: str = "3.0",
                 executor: concurrent.futures.Executor | None = None,
                 max_workers: int | None = None, **options: Any) -> None:
        pool = _Pool(executor, max_workers)
        try:
            made = _client.Client(endpoint, secret=secret, token=token, token_endpoint=token_endpoint,
                                  protocol=protocol, **options)
        except BaseException:
            pool.release()
            raise
        self._adopt(made, pool)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, executor: concurrent.futures.Executor | None = None,
                    max_workers: int | None = None) -> Client:
        """A client from a ``config_json`` dict in the C spelling, as ``directline.Client.from_config``."""
        pool = _Pool(executor, max_workers)
        try:
            made = _client.Client.from_config(config)
        except BaseException:
            pool.release()
            raise
        client = cls.__new__(cls)
        client._adopt(made, pool)
        return client

    def _adopt(self, made: _client.Client, pool: _Pool) -> None:
        self.sync = made
        self._pool = pool
        self._released = False

    def __repr__(self) -> str:
        return "<directline.aio." + repr(self.sync)[len("<directline."):]

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``aclose()`` has been called."""
        return self.sync.closed

    def close(self) -> None:
        """Releases the C handle at once, on the calling thread. Idempotent.

        Conversations it started stay usable. ``aclose()`` does the same
        without blocking the loop.
        """
        self.sync.close()
        self._release()

    async def aclose(self) -> None:
        """Releases the C handle, on the executor. Idempotent; what ``async with`` calls on exit."""
        if self._released:
            return
        try:
            await self._pool.run_to_end(self.sync.close)
        finally:
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, function: Callable[[], _T]) -> _T:
        if self._released:
            raise ValueError("operation on a closed Client")
        return await self._pool.run(function)

    async def _conversation(self, open_one: Callable[[], _conversation.Conversation]) -> Conversation:
        if self._released:
            raise ValueError("operation on a closed Client")
        # Counted first, so that closing the client meanwhile keeps the pool.
        self._pool.retain()
        try:
            made = await self._pool.run(open_one, abandoned=_close_quietly)
        except BaseException:
            self._pool.release()
            raise
        return Conversation(self, made, self._pool)

    async def start_conversation(self, user_id: str | None = None, user_name: str | None = None, *,
                                 locale: str | None = None) -> Conversation:
        """Starts a new conversation with the bot: ``directline.Client.start_conversation``.

        ``locale`` (3.0 only) is the user's BCP 47 language tag, sent in
        the start request, as in the synchronous call.

        Returns:
            an ``aio.Conversation``; the service's answer is its
            ``start_result`` (it holds the token: a secret).

        Raises:
            as ``directline.Client.start_conversation``. When the task is
            cancelled while the request is in flight, a conversation the
            service still starts is freed locally.
        """
        return await self._conversation(functools.partial(self.sync.start_conversation, user_id, user_name,
                                                            locale=locale))

    async def open_conversation(self, conversation_id: str, token: str | None = None,
                                watermark: str | None = None, stream_url: str | None = None, *,
                                reconnect: bool = False, token_expires_at: str | None = None) -> Conversation:
        """Attaches to an existing conversation: ``directline.Client.open_conversation``.

        Sends nothing unless ``reconnect``. Returns an ``aio.Conversation``;
        raises as the synchronous call.
        """
        return await self._conversation(functools.partial(
            self.sync.open_conversation, conversation_id, token, watermark, stream_url, reconnect=reconnect,
            token_expires_at=token_expires_at))

    async def resume(self, state: Mapping[str, Any], *, reconnect: bool = False) -> Conversation:
        """Reopens a conversation saved with ``Conversation.state()``: ``directline.Client.resume``.

        Returns an ``aio.Conversation``; raises as the synchronous call.
        """
        return await self._conversation(functools.partial(self.sync.resume, state, reconnect=reconnect))

    async def generate_token(self, user_id: str | None = None, user_name: str | None = None,
                             trusted_origins: Sequence[str] | None = None) -> dict[str, Any]:
        """Exchanges the secret for a token: ``directline.Client.generate_token``.

        Returns and raises as the synchronous call (the token is a secret).
        """
        return await self._run(functools.partial(self.sync.generate_token, user_id, user_name, trusted_origins))

    async def refresh_token(self, token: str) -> dict[str, Any]:
        """Renews a token before it expires: ``directline.Client.refresh_token``.

        Returns and raises as the synchronous call.
        """
        return await self._run(functools.partial(self.sync.refresh_token, token))


class Conversation:
    """One conversation for asyncio: ``directline.Conversation``, with coroutines for its calls.

    Made by ``aio.Client.start_conversation``, ``open_conversation`` or
    ``resume``. Meant for one event loop; ``info()``, ``state()`` and
    ``fileno()`` do no I/O and are plain methods. Use it as ``async with``;
    closing it frees the local handle only (``end()`` ends the conversation
    at the service).

    Everything ``wait``, ``next`` or ``stream`` took from the library is
    handed out: activities that a cancelled ``wait`` took on its thread, or
    that a ``stream`` took but had not yielded when it stopped, come first
    from the next ``wait``, ``next`` or ``stream``. (``state()`` counts them
    as taken already.)

    Attributes:
        client: the ``aio.Client`` it came from.
        sync: the wrapped ``directline.Conversation``. Calls on it block;
            close through this object, never through ``sync``, so that the
            descriptor leaves the loop before the library closes it.
    """

    def __init__(self, client: Client, conversation: _conversation.Conversation, pool: _Pool) -> None:
        self.client = client
        self.sync = conversation
        self._pool = pool
        self._closed = False
        self._released = False
        # Taken from the library and not yet handed out, oldest first.
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        # The wait running on a thread, if any, and the one whose task was cancelled.
        self._taking: asyncio.Future[list[dict[str, Any]]] | None = None
        self._abandoned: asyncio.Future[list[dict[str, Any]]] | None = None
        # Receives waiting for the descriptor, and where it is registered.
        self._waiters: set[asyncio.Future[None]] = set()
        self._reader: tuple[asyncio.AbstractEventLoop, int] | None = None

    def __repr__(self) -> str:
        return "<directline.aio." + repr(self.sync)[len("<directline."):]

    # Lifetime ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``aclose()`` has been called."""
        return self._closed

    def close(self) -> None:
        """Releases the C handle on the calling thread (``aclose()`` does it on the executor). Idempotent.

        A ``next`` or ``stream`` in progress ends with
        ``directline.CancelledError``; a call running on a thread finishes
        first, as in the synchronous binding. Called from a thread other
        than the loop's while a receive waits, it hands the closing to that
        loop and returns.
        """
        self._closed = True
        reader = self._reader
        if reader is not None and _outside(reader[0]):
            try:
                reader[0].call_soon_threadsafe(self._close_now)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._close_now()

    def _close_now(self) -> None:
        self._stop_receives()
        if self._released:
            return
        self._released = True
        try:
            self.sync.close()
        finally:
            self._pool.release()

    async def aclose(self) -> None:
        """Releases the C handle without blocking the loop. Idempotent; what ``async with`` calls on exit.

        A ``next`` or ``stream`` in progress ends with
        ``directline.CancelledError`` at once: the descriptor is taken off
        the loop before the library closes it. Listening stops.
        """
        self._closed = True
        self._stop_receives()
        if self._released:
            return
        self._released = True
        try:
            await self._pool.run_to_end(self.sync.close)
        finally:
            self._pool.release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("operation on a closed Conversation")

    async def _run(self, function: Callable[[], _T]) -> _T:
        self._check_open()
        return await self._pool.run(function)

    # Cheap, local --------------------------------------------------------

    @property
    def start_result(self) -> dict[str, Any] | None:
        """The service's Conversation object when it was started here (holds the token), else None."""
        return self.sync.start_result

    @property
    def id(self) -> str:
        """The conversation id."""
        return self.sync.id

    @property
    def watermark(self) -> str | None:
        """The conversation's watermark (see ``directline.Conversation.watermark``)."""
        return self.sync.watermark

    def info(self) -> dict[str, Any]:
        """Describes the conversation locally, without I/O: ``directline.Conversation.info``."""
        return self.sync.info()

    def state(self) -> dict[str, Any]:
        """What ``Client.resume`` needs later, without I/O: ``directline.Conversation.state`` (holds the token)."""
        return self.sync.state()

    def fileno(self) -> int:
        """The listener's descriptor: ``directline.Conversation.fileno``. Never read or close it."""
        return self.sync.fileno()

    # Blocking calls, on the executor --------------------------------------

    async def refresh(self) -> dict[str, Any]:
        """Renews the conversation's token now: ``directline.Conversation.refresh``."""
        return await self._run(self.sync.refresh)

    async def send_activity(self, activity: Mapping[str, Any]) -> dict[str, Any]:
        """Sends one activity (3.0) or message (1.1): ``directline.Conversation.send_activity``.

        A send whose task is cancelled once it started still runs to its end
        on its thread (the library cannot take a request back): the activity
        may reach the bot.
        """
        return await self._run(functools.partial(self.sync.send_activity, activity))

    async def send_text(self, user_id: str, text: str) -> dict[str, Any]:
        """Sends a plain text message: ``directline.Conversation.send_text`` (cancelling: as ``send_activity``)."""
        return await self._run(functools.partial(self.sync.send_text, user_id, text))

    async def get_activities(self) -> dict[str, Any]:
        """Reads one page after the watermark: ``directline.Conversation.get_activities``.

        Refused while listening. What a cancelled ``wait`` kept is not in it
        (``wait``, ``next`` and ``stream`` hand that out).
        """
        return await self._run(self.sync.get_activities)

    async def confirm(self, client_activity_id: str, timeout: float = 0.0) -> dict[str, Any]:
        """Tells whether a send whose outcome is unknown arrived: ``directline.Conversation.confirm``.

        Holds one executor thread for up to ``timeout``.
        """
        return await self._run(functools.partial(self.sync.confirm, client_activity_id, timeout))

    async def end(self, user_id: str) -> dict[str, Any]:
        """Ends the conversation for ``user_id``: ``directline.Conversation.end``."""
        return await self._run(functools.partial(self.sync.end, user_id))

    async def upload_file(self, user_id: str, path: StrPath | bytes, *, content_type: str | None = None,
                          filename: str | None = None,
                          progress: ProgressCallable | None = None) -> dict[str, Any]:
        """Uploads one file from disk: ``directline.Conversation.upload_file``.

        ``progress`` is called on the executor's thread, not the loop's: use
        ``loop.call_soon_threadsafe`` to reach asyncio objects from it.
        """
        return await self._run(functools.partial(self.sync.upload_file, user_id, path, content_type=content_type,
                                                 filename=filename, progress=progress))

    async def upload_bytes(self, user_id: str, data: Bytes, *, content_type: str | None = None,
                           filename: str | None = None,
                           progress: ProgressCallable | None = None) -> dict[str, Any]:
        """Uploads bytes from memory: ``directline.Conversation.upload_bytes`` (``progress``: as ``upload_file``).

        Do not change ``data`` until the call has returned.
        """
        return await self._run(functools.partial(self.sync.upload_bytes, user_id, data, content_type=content_type,
                                                 filename=filename, progress=progress))

    async def upload(self, user_id: str, files: Sequence[FileItem], *, activity: Mapping[str, Any] | None = None,
                     progress: ProgressCallable | None = None) -> dict[str, Any]:
        """Uploads several files in one request: ``directline.Conversation.upload``.

        ``progress``: as ``upload_file``.
        """
        return await self._run(functools.partial(self.sync.upload, user_id, files, activity=activity,
                                                 progress=progress))

    async def listen(self, mode: str = "auto", poll_interval: float = 1.0, include_own: bool = False,
                     max_queued: int = 10000) -> dict[str, Any]:
        """Starts receiving in the background: ``directline.Conversation.listen``.

        Take what arrives with ``next()`` or ``stream()``.

        Returns:
            ``{"mode": ..., "state": ...}``, or the running listener's.
        """
        return await self._run(functools.partial(self.sync.listen, mode, poll_interval, include_own, max_queued))

    async def unlisten(self) -> dict[str, Any]:
        """Stops listening: ``directline.Conversation.unlisten``.

        A ``next`` or ``stream`` waiting on this conversation ends with
        ``directline.CancelledError``. What the library had queued is
        dropped (``state()`` still points before it); what this object had
        already taken is kept for the next ``wait``, ``next`` or ``stream``.

        Returns:
            ``{"dropped": N, "watermark": ...}``.
        """
        try:
            return await self._run(self.sync.unlisten)
        finally:
            self._wake_receives()

    async def wait(self, timeout: float = 10.0, *, interval: float = 1.0, after_send: float = 0.3,
                   user_id: str | None = None, include_own: bool = False,
                   max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Waits for the bot's replies: ``directline.Conversation.wait``, on an executor thread.

        Returns what earlier receives kept (see the class) at once, if
        anything. Otherwise the library's wait runs on a thread for up to
        ``timeout``; cancelling the task leaves it running there, and what it
        takes is kept for the next ``wait``, ``next`` or ``stream``, which
        first lets it finish (``next`` and ``stream`` within their own time
        limits). One wait runs at a time per conversation. While listening,
        ``next`` and ``stream`` wait without a thread.

        Returns and raises as the synchronous ``wait``.
        """
        self._check_open()
        seconds = _milliseconds(timeout, "timeout") / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if not await self._settle(deadline):
            return []  # the timeout passed while a cancelled wait still ran: it keeps what it takes
        if self._pending:
            return self._take_pending()
        self._check_open()
        left = max(0.0, deadline - loop.time())
        call = functools.partial(self.sync.wait, left, interval=interval, after_send=after_send, user_id=user_id,
                                 include_own=include_own, max_bytes=max_bytes)
        taking = asyncio.wrap_future(self._pool.executor.submit(call))
        self._taking = taking
        # Runs before anyone awaiting it resumes.
        taking.add_done_callback(self._wait_finished)
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            if taking.done():
                self._keep(taking)
            else:
                self._abandoned = taking
            raise

    def _wait_finished(self, taking: asyncio.Future[list[dict[str, Any]]]) -> None:
        if self._taking is taking:
            self._taking = None
        if self._abandoned is taking:
            self._abandoned = None
            self._keep(taking)

    def _keep(self, taking: asyncio.Future[list[dict[str, Any]]]) -> None:
        """Keeps what a wait nobody awaits any more took; its error, if any, is dropped."""
        if not taking.cancelled() and taking.exception() is None:
            self._pending.extend(taking.result())

    async def _settle(self, deadline: float | None) -> bool:
        """Lets a wait running on a thread finish (until ``deadline``), so that receives never overlap.

        Returns False if one still runs at the deadline.
        """
        loop = asyncio.get_running_loop()
        while self._taking is not None:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait({self._taking}, timeout=left)
        return True

    def _take_pending(self) -> list[dict[str, Any]]:
        taken = list(self._pending)
        self._pending.clear()
        return taken

    # Receiving on the descriptor ------------------------------------------

    async def next(self, timeout: float | None = None) -> dict[str, Any]:
        """Takes what the listener queued, waiting up to ``timeout`` seconds: ``directline.Conversation.next``.

        Waits for the descriptor on the loop (no thread), then takes what is
        queued without blocking. Cancelling the task takes nothing: a later
        ``next`` or ``stream`` gets everything.

        Args:
            timeout: seconds to wait at most; 0 does not wait; None waits
                without limit.

        Returns:
            ``{"activities": [...], "watermark", "state", "mode",
            "timedOut"}`` as the synchronous ``next``; what earlier receives
            kept (see the class) comes first in ``activities``.

        Raises:
            ValueError: the conversation is closed.
            InvalidArgumentError: not listening, or a bad ``timeout``.
            CancelledError: (``directline.CancelledError``) closed or
                unlistened during the call.
            DirectLineError: the failure that stopped the listener, as the
                synchronous ``next``.
        """
        seconds = None if timeout is None else _milliseconds(timeout, "timeout", within_ms=(0, 2**31 - 1)) / 1000
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        # Past the deadline a wait may still run on its thread; that wait
        # returns as soon as anything is queued, so it leaves next(0) only
        # what came after it.
        await self._settle(deadline)
        result = self._take_now(first=True)
        if self._pending:
            result["activities"] = self._take_pending() + result["activities"]
            result["timedOut"] = False
            return result
        while result["timedOut"]:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            await self._readable(_RECHECK_SECONDS if left is None else min(left, _RECHECK_SECONDS))
            result = self._take_now(first=False)
        return result

    def stream(self, timeout: float | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Yields activities as they arrive: ``async for activity in conversation.stream():``.

        Starts listening with the defaults unless the conversation listens
        already (``await listen(...)`` first for other options), then yields
        each activity (3.0) or message (1.1) in order, waiting for the
        descriptor on the loop between them (no thread). It ends when the
        conversation has ended and everything before the end was yielded,
        or once ``timeout`` seconds pass without anything new (None: never).

        Cancelling the task that iterates, or leaving the loop early, loses
        nothing: what was taken and not yet yielded comes first from the
        next ``wait``, ``next`` or ``stream``.

        Raises:
            ValueError: the conversation is closed (at the first item).
            InvalidArgumentError: a bad ``timeout`` (at once).
            UnsupportedError: as ``listen()``.
            CancelledError: (``directline.CancelledError``) the conversation
                was closed or stopped listening while it ran.
            DirectLineError: the failure that stopped the listener, after
                everything queued before it was yielded.
        """
        idle = None if timeout is None else _milliseconds(timeout, "timeout") / 1000
        return self._stream(idle)

    async def _stream(self, idle: float | None) -> AsyncGenerator[dict[str, Any], None]:
        await self.listen()  # reports the running listener when there is one
        loop = asyncio.get_running_loop()
        deadline = None if idle is None else loop.time() + idle
        while True:
            if self._closed:
                raise _closed_during_wait("the conversation was closed during the stream")
            if self._pending:
                yield self._pending.popleft()
                deadline = None if idle is None else loop.time() + idle
                continue
            if not await self._settle(deadline):
                return
            if self._pending:
                continue
            result = self._take_now(first=False)
            activities: list[dict[str, Any]] = result["activities"]
            self._pending.extend(activities)
            if result["state"] == "ended":
                if not activities:
                    return
                continue  # once ended, only what is still queued is left: take it without waiting
            if activities or not result["timedOut"]:
                continue
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            await self._readable(_RECHECK_SECONDS if left is None else min(left, _RECHECK_SECONDS))

    def _take_now(self, *, first: bool) -> dict[str, Any]:
        """``next(0)`` on the loop's thread: it never blocks.

        After the first take of a receive, a closed or unlistened
        conversation means it was closed or unlistened during the receive:
        CancelledError, as the synchronous binding says it.
        """
        if self._closed:
            if first:
                raise ValueError("operation on a closed Conversation")
            raise _closed_during_wait()
        try:
            return self.sync.next(0)
        except InvalidArgumentError:
            if first:
                raise
            raise _closed_during_wait("the conversation stopped listening during the wait") from None
        except InvalidHandleError:
            if not self.sync.closed:
                raise
            raise _closed_during_wait() from None
        except ValueError as error:  # the wrapped conversation was closed directly
            if first or isinstance(error, DirectLineError):
                raise
            raise _closed_during_wait() from None

    async def _readable(self, seconds: float) -> None:
        """Returns once the descriptor is readable, ``seconds`` passed, or the receive must look again.

        One reader per conversation serves every task waiting on it; it is
        removed as soon as it fires, or when the last waiter leaves
        (cancelled), so a descriptor nobody waits for is never on the loop.
        """
        loop = asyncio.get_running_loop()
        if self._closed:
            return  # closed from another thread since the last take: the caller's next take says so
        if self._reader is None:
            try:
                descriptor = self.sync.fileno()
            except ValueError:  # the wrapped conversation was closed directly: as above
                return
            loop.add_reader(descriptor, self._on_readable)
            self._reader = (loop, descriptor)
        elif self._reader[0] is not loop:
            raise RuntimeError("this conversation is being received on in another event loop")
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
            if not self._waiters:
                self._unwatch()

    def _on_readable(self) -> None:
        self._unwatch()
        self._wake_receives()

    def _wake_receives(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _wake(waiter)

    def _unwatch(self) -> None:
        if self._reader is None:
            return
        loop, descriptor = self._reader
        self._reader = None
        if not loop.is_closed():
            loop.remove_reader(descriptor)

    def _stop_receives(self) -> None:
        """Takes the descriptor off the loop and wakes every receive, which then sees the conversation closed."""
        self._unwatch()
        self._wake_receives()
