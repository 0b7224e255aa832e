"""directline.aio: the binding on an event loop (API.md, "Python binding", asyncio).

Held to the contract: blocking calls run off the loop, which keeps ticking;
receiving waits on the conversation's descriptor with ``loop.add_reader``
and parks no thread per conversation; a cancelled task loses nothing and
leaves the conversation usable; closing ends a stream; errors are the
synchronous binding's classes. Run with pytest-asyncio (strict mode: each
coroutine test is marked).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest

import directline
from directline import aio
from support import SECRET, python_env, sender

SEND_PATH = "/(activities|messages)$"
LIST_PATH = {"3.0": "/activities$", "1.1": "/messages$"}


# How the listener receives: polling on both protocols, and the library's
# choice on 3.0 (the WebSocket stream where libcurl can; on 1.1 it polls).
LISTENING = [("3.0", "polling"), ("3.0", "auto"), ("1.1", "polling")]


@pytest.fixture(params=LISTENING, ids=[f"{protocol}-{mode}" for protocol, mode in LISTENING])
def listening(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(protocol, listen mode)."""
    return request.param


def is_typing(activity: dict[str, Any]) -> bool:
    """Typing comes over the WebSocket stream only; the tests look at the messages."""
    return activity.get("type") == "typing"


def texts(activities: list[dict[str, Any]]) -> list[str]:
    return [activity.get("text", "") for activity in activities if not is_typing(activity)]


async def receive(conversation: aio.Conversation, count: int, got: list[dict[str, Any]] | None = None,
                  seconds: float = 5.0) -> list[str]:
    """The texts of ``got`` and of what ``next`` hands out until there are ``count`` (or ``seconds`` pass)."""
    taken = list(got or [])
    deadline = time.monotonic() + seconds
    while len(texts(taken)) < count and time.monotonic() < deadline:
        taken += (await conversation.next(max(0.0, deadline - time.monotonic())))["activities"]
    return texts(taken)


@asynccontextmanager
async def aio_client(emulator, protocol: str, **options: Any) -> AsyncIterator[aio.Client]:
    async with aio.Client(emulator.url, secret=SECRET, protocol=protocol, timeout_ms=10_000,
                          retry={"max_attempts": 1}, **options) as client:
        yield client


async def settle_online(conversation: aio.Conversation) -> None:
    """Takes the listener's first state change, so that the next receive waits for activities."""
    deadline = time.monotonic() + 5
    while (await conversation.next(0.5))["state"] != "online":
        assert time.monotonic() < deadline, "the listener never came online"


async def first_of(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async for activity in stream:
        if not is_typing(activity):
            return activity
    raise AssertionError("the stream ended without an activity")


class Ticker:
    """An asyncio task that wakes every `period` seconds and records the longest gap between wakes."""

    def __init__(self, period: float = 0.02, sample: Callable[[], None] | None = None) -> None:
        self.period = period
        self.longest = 0.0
        self.ticks = 0
        self._sample = sample
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.period)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now
            if self._sample is not None:
                self._sample()

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the calls running on it at any moment."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self._count_lock = threading.Lock()
        self.running = 0
        self.completed = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        def counted() -> Any:
            with self._count_lock:
                self.running += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._count_lock:
                    self.running -= 1
                    self.completed += 1

        return super().submit(counted)


@pytest.mark.asyncio
async def test_a_reply_arrives_through_async_for_while_the_loop_keeps_ticking(emulator, listening):
    """The stream waits with nothing to take for 0.7 s, then a send takes 0.8 s at
    the service: neither may hold the loop (a 20 ms ticker never waits 0.5 s)."""
    protocol, mode = listening
    emulator.fault(method="POST", path=SEND_PATH, action="delay", seconds=0.8)
    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        await conversation.listen(mode=mode, poll_interval=0.1)
        async with Ticker() as ticker:
            started = time.monotonic()
            receiving = asyncio.ensure_future(first_of(conversation.stream(timeout=10)))
            await asyncio.sleep(0.7)
            assert not receiving.done()
            await conversation.send_text("user1", "tick tock")
            reply = await asyncio.wait_for(receiving, 10)
            elapsed = time.monotonic() - started
        assert reply.get("text") == "echo: tick tock"
        assert elapsed >= 1.4, "the delayed send did take its time"
        assert ticker.ticks >= 20
        assert ticker.longest < 0.5, f"the loop stalled for {ticker.longest:.2f} s"


@pytest.mark.asyncio
async def test_fifty_conversations_stream_at_once_with_no_thread_waiting(emulator, listening):
    """While 50 streams wait, no executor call runs (none parks a thread), the
    process has no more Python threads than the pool's, and every reply comes."""
    protocol, mode = listening
    baseline = threading.active_count()
    pool = CountingExecutor(max_workers=4)
    try:
        async with aio_client(emulator, protocol, executor=pool) as client:
            conversations = await asyncio.gather(*(client.start_conversation() for _ in range(50)))
            try:
                await asyncio.gather(*(conversation.listen(mode=mode, poll_interval=0.2)
                                       for conversation in conversations))
                listened = pool.completed
                streams = [asyncio.ensure_future(first_of(conversation.stream(timeout=20)))
                           for conversation in conversations]
                deadline = time.monotonic() + 10
                while pool.completed < listened + 50:  # each stream's listen() call has returned
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                busy: list[int] = []
                threads: list[int] = []

                def sample() -> None:
                    busy.append(pool.running)
                    threads.append(threading.active_count())

                async with Ticker(sample=sample):
                    await asyncio.sleep(0.8)
                assert len(busy) >= 10
                assert max(busy) == 0, "an executor thread was busy while the streams only waited"
                assert not any(stream.done() for stream in streams)
                for index, conversation in enumerate(conversations):
                    await conversation.send_text("user1", f"n{index}")
                replies = await asyncio.wait_for(asyncio.gather(*streams), 20)
                assert [reply.get("text") for reply in replies] == [f"echo: n{index}" for index in range(50)]
                assert max(threads) <= baseline + 4
                assert threading.active_count() <= baseline + 4
            finally:
                await asyncio.gather(*(conversation.aclose() for conversation in conversations))
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_cancelling_a_waiting_next_loses_nothing_and_the_conversation_stays_usable(emulator, listening):
    protocol, mode = listening
    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        await conversation.listen(mode=mode, poll_interval=0.5)
        await settle_online(conversation)
        waiting = asyncio.ensure_future(conversation.next())
        await asyncio.sleep(0.2)
        assert not waiting.done(), "next() returned with nothing to hand out"
        await conversation.send_text("user1", "kept")
        waiting.cancel()
        taken: list[dict[str, Any]] = []
        try:
            taken += (await waiting)["activities"]  # the reply came before the cancel: fine too
        except asyncio.CancelledError:
            pass
        assert not asyncio.get_running_loop().remove_reader(conversation.fileno()), "the reader was left behind"
        # Long enough for the listener to have queued the reply (and for a
        # thread a cancelled next left blocked in the library to take it).
        await asyncio.sleep(1.0)
        assert await receive(conversation, 1, taken) == ["echo: kept"]
        # Still usable: another round trip through next.
        await conversation.send_text("user1", "again")
        assert await receive(conversation, 1) == ["echo: again"]


@pytest.mark.asyncio
async def test_a_cancelled_wait_keeps_what_its_thread_took(emulator, protocol):
    """wait() blocks in the library on an executor thread, which cannot be
    interrupted: what it takes after its task was cancelled comes from the
    next wait."""
    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        waiting = asyncio.ensure_future(conversation.wait(timeout=8, interval=0.1, after_send=0.1))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await conversation.send_text("user1", "took")
        waiting.cancel()
        got: list[dict[str, Any]] = []
        try:
            got += await waiting
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(0.6)  # the thread's wait has taken the reply by now
        if not got:
            started = time.monotonic()
            got += await conversation.wait(timeout=5)
            assert time.monotonic() - started < 1, "kept, so it comes at once"
        assert texts(got) == ["echo: took"]
        await conversation.send_text("user1", "more")
        assert texts(await conversation.wait(timeout=5, interval=0.1)) == ["echo: more"]


@pytest.mark.asyncio
async def test_leaving_a_stream_early_loses_nothing(emulator, listening):
    protocol, mode = listening
    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        for text in ("a", "b", "c"):
            await conversation.send_text("user1", text)
        # Polling, the first poll takes all three replies at once: the
        # stream holds two it has not yielded when it is left.
        await conversation.listen(mode=mode, poll_interval=0.1)
        stream = conversation.stream(timeout=5)
        assert (await first_of(stream)).get("text") == "echo: a"
        await stream.aclose()
        assert await receive(conversation, 2) == ["echo: b", "echo: c"]
        # A task cancelled while its stream waits: the reply is still there for the next receive.
        consumer = asyncio.ensure_future(first_of(conversation.stream()))
        await asyncio.sleep(0.2)
        await conversation.send_text("user1", "d")
        consumer.cancel()
        try:
            got = [await consumer]
        except asyncio.CancelledError:
            got = []
        await asyncio.sleep(0.5)
        assert await receive(conversation, 1, got) == ["echo: d"]


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["aclose", "async with", "close on the loop", "close from another thread"])
async def test_closing_ends_a_running_stream_with_cancelled_error(emulator, listening, how):
    protocol, mode = listening
    loop = asyncio.get_running_loop()
    async with aio_client(emulator, protocol) as client:
        conversation = await client.start_conversation()
        await conversation.listen(mode=mode)
        descriptor = conversation.fileno()
        received: list[dict[str, Any]] = []
        # The library closes the descriptor as it frees the handle: by then
        # it must be off the loop (its number may be reused at once).
        watched_at_free: list[bool] = []
        free = conversation.sync.close

        def spy() -> None:
            selector = getattr(loop, "_selector", None)  # the selector event loop's; checked where it has one
            if selector is not None:
                watched_at_free.append(descriptor in selector.get_map())
            free()

        conversation.sync.close = spy  # type: ignore[method-assign]

        async def consume() -> None:
            async for activity in conversation.stream():
                received.append(activity)

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0.3)
        assert not consumer.done()
        started = time.monotonic()
        if how == "aclose":
            await conversation.aclose()
        elif how == "async with":
            async with conversation:
                pass
        elif how == "close on the loop":
            conversation.close()
        else:
            threading.Thread(target=conversation.close).start()
        with pytest.raises(directline.CancelledError):
            await asyncio.wait_for(consumer, 5)
        assert time.monotonic() - started < 0.5, "the stream noticed only at its next look"
        assert conversation.closed
        assert not loop.remove_reader(descriptor), "the descriptor was left on the loop"
        assert watched_at_free in ([], [False]), "the library closed the descriptor while the loop watched it"
        with pytest.raises(ValueError, match="closed"):
            await conversation.next(0)
        with pytest.raises(ValueError, match="closed"):
            await conversation.send_text("user1", "late")


@pytest.mark.asyncio
async def test_unlisten_ends_a_waiting_next(emulator, listening):
    protocol, mode = listening
    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        await conversation.listen(mode=mode, poll_interval=0.1)
        await settle_online(conversation)
        waiting = asyncio.ensure_future(conversation.next())
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert (await conversation.unlisten())["dropped"] == 0
        with pytest.raises(directline.CancelledError):
            await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 0.5
        with pytest.raises(directline.InvalidArgumentError, match="not listening"):
            await conversation.next(0)


@pytest.mark.asyncio
async def test_errors_are_the_synchronous_bindings_classes(emulator, protocol):
    # A refused credential, from both bindings.
    with directline.Client(emulator.url, secret="wrong", protocol=protocol) as sync_client:
        with pytest.raises(directline.DirectLineError) as sync_error:
            sync_client.start_conversation()
    async with aio.Client(emulator.url, secret="wrong", protocol=protocol) as bad_client:
        with pytest.raises(directline.DirectLineError) as aio_error:
            await bad_client.start_conversation()
    assert type(aio_error.value) is type(sync_error.value)
    assert aio_error.value.status == sync_error.value.status
    with pytest.raises(TypeError):
        aio.Client(emulator.url, secret=SECRET, no_such_option=1)
    with pytest.raises(directline.InvalidArgumentError):
        aio.Client(emulator.url, secret=SECRET, max_workers=0)

    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        emulator.fault(method="POST", path=SEND_PATH, action="status", status=403)
        with pytest.raises(directline.ForbiddenError) as forbidden:
            await conversation.send_text("user1", "refused")
        assert forbidden.value.http_status == 403
        with pytest.raises(directline.InvalidArgumentError, match="not listening"):
            await conversation.next(0)
        with pytest.raises(directline.InvalidArgumentError):
            await conversation.listen(max_queued=0)
        with pytest.raises(directline.InvalidArgumentError):
            await conversation.next(-1)
        with pytest.raises(directline.InvalidArgumentError):
            conversation.stream(timeout=-1)
        with pytest.raises(directline.FileError):
            await conversation.upload_file("user1", "/no/such/file")
        # The failure that stops the listener, through the descriptor path.
        await conversation.send_text("user1", "queued")
        await conversation.listen(mode="polling", poll_interval=0.05)  # polls meet the GET faults
        await asyncio.sleep(0.3)
        emulator.fault(method="GET", path=LIST_PATH[protocol], count=-1, action="status", status=403)
        received: list[dict[str, Any]] = []
        with pytest.raises(directline.ForbiddenError):
            async for activity in conversation.stream(timeout=10):
                received.append(activity)
        assert texts(received) == ["echo: queued"]
        with pytest.raises(directline.ForbiddenError):
            await conversation.next(1)


@pytest.mark.asyncio
async def test_uploads_tokens_and_resume(emulator, protocol, tmp_path):
    loop_thread = threading.get_ident()
    progress_threads: set[int] = set()

    def progress(done: int, total: int) -> None:
        progress_threads.add(threading.get_ident())

    path = tmp_path / "note.txt"
    path.write_bytes(b"from disk")
    async with aio_client(emulator, protocol) as client:
        async with await client.start_conversation() as conversation:
            assert conversation.start_result is not None
            await conversation.upload_bytes("user1", b"hello", filename="hello.txt", progress=progress)
            assert progress_threads and loop_thread not in progress_threads, "progress runs on the executor"
            await conversation.upload_file("user1", path)
            await conversation.upload("user1", [path, {"data": b"two", "filename": "two.txt"}],
                                      activity={"text": "see attached"})
            replies = await conversation.wait(timeout=5, interval=0.1)
            while len(replies) < 3:
                more = await conversation.wait(timeout=5, interval=0.1)
                assert more, "an upload's reply never came"
                replies += more
            assert all(text.startswith("received ") for text in texts(replies))
            if protocol == "3.0":
                sent = await conversation.send_text("user1", "confirm me")
                assert (await conversation.confirm(sent["clientActivityID"], timeout=2))["delivered"] is True
            saved = conversation.state()
            assert conversation.info()["conversationId"] == conversation.id == saved["conversationId"]
        async with await client.resume(saved) as resumed:
            await resumed.send_text("user1", "back")
            assert "echo: back" in texts(await resumed.wait(timeout=5, interval=0.1))
            assert (await resumed.refresh())["conversationId"] == saved["conversationId"]
            # 1.1 renews only the current token of one of the client's conversations.
            assert (await client.refresh_token(resumed.state()["token"]))["token"]
        async with await client.open_conversation(saved["conversationId"], saved["token"]) as opened:
            await opened.send_text("user1", "opened")
        token = (await client.generate_token())["token"]
    async with aio.Client(emulator.url, token=token, protocol=protocol) as token_client:
        async with await token_client.start_conversation() as conversation:
            await conversation.send_text("user1", "with a token")
            assert await conversation.end("user1") is not None


@pytest.mark.asyncio
async def test_a_stream_ends_with_the_conversation_or_after_idle_time(emulator, listening):
    protocol, mode = listening
    async with aio_client(emulator, protocol) as client, await client.start_conversation() as conversation:
        await conversation.listen(mode=mode, poll_interval=0.1)
        started = time.monotonic()
        assert [activity async for activity in conversation.stream(timeout=0.5)] == []
        assert 0.4 < time.monotonic() - started < 2
        if protocol == "3.0":
            await conversation.send_text("user1", "before")
            await conversation.send_text("user1", "end")
            seen = [activity async for activity in conversation.stream(timeout=10) if not is_typing(activity)]
            assert [(item.get("type"), item.get("text")) for item in seen] == [
                ("message", "echo: before"), ("endOfConversation", None)]
            assert sender(seen[-1]) == "echo-bot"


@pytest.mark.asyncio
async def test_a_given_executor_runs_the_calls_and_outlives_the_client(emulator, protocol):
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine")
    names: set[str] = set()

    def progress(done: int, total: int) -> None:
        names.add(threading.current_thread().name)

    try:
        async with aio_client(emulator, protocol, executor=executor) as client:
            async with await client.start_conversation() as conversation:
                await conversation.upload_bytes("user1", b"x", progress=progress)
        assert names and all(name.startswith("mine") for name in names)
        assert executor.submit(lambda: 42).result() == 42, "the caller's executor was shut down"
    finally:
        executor.shutdown()
    with pytest.raises(TypeError):
        aio.Client(emulator.url, secret=SECRET, executor=executor, max_workers=2)


@pytest.mark.asyncio
async def test_an_own_pool_ends_when_the_client_and_its_conversations_are_closed(emulator, protocol):
    before = threading.active_count()
    client = aio.Client(emulator.url, secret=SECRET, protocol=protocol, max_workers=3)
    conversation = await client.start_conversation()
    await client.aclose()
    # The client is closed; its conversation still works on the same pool.
    await conversation.send_text("user1", "still here")
    assert texts(await conversation.wait(timeout=5, interval=0.1)) == ["echo: still here"]
    assert threading.active_count() > before
    await conversation.aclose()
    deadline = time.monotonic() + 5
    while threading.active_count() > before:
        assert time.monotonic() < deadline, "the pool's threads outlived everything that used them"
        await asyncio.sleep(0.05)
    with pytest.raises(ValueError, match="closed"):
        await client.start_conversation()


def test_importing_directline_does_not_import_aio():
    script = ("import sys, directline; assert 'directline.aio' not in sys.modules, 'aio imported'; "
              "from directline import aio; print(aio.Client.__name__, aio.Conversation.__name__)")
    result = subprocess.run([sys.executable, "-c", script], env=python_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Client", "Conversation"]
