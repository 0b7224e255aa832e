"""Listening over the WebSocket stream (issue 15): the emulator's stream as the service's.

Direct Line 3.0 only. These tests hold the stream source to the contract of
../shared/design/API.md ("Receiving as it happens"): `auto` streams on 3.0;
replies and typing arrive with no polling; keep-alives hand out nothing;
every activity once and in order across a clean close, a drop, a refused
upgrade, a silent stream, an expired stream URL and token refreshes, with
the bot going on while the client is away; reconnects that back off and
honour Retry-After; `collision`, 403 and 404 end in `failed`;
endOfConversation in `ended` with no reconnect; backpressure that loses
nothing; the descriptor; blocked calls cancelled; a saved state that
resumes where `next` left off; a close frame on unlisten.
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterator

import pytest

import directline
from support import SECRET, sender
from test_listen import assert_blocked_next_cancelled, collect, readable, replies, texts

CONVERSATION_GET = re.compile(r"^/v3/directline/conversations/[^/]+$")
ACTIVITIES_GET = re.compile(r"^/v3/directline/conversations/[^/]+/activities$")


@pytest.fixture
def client(emulator) -> Iterator[directline.Client]:
    with directline.Client(emulator.url, secret=SECRET, protocol="3.0", timeout_ms=10_000,
                           retry={"max_attempts": 1, "base_delay_ms": 100, "max_delay_ms": 2_000}) as made:
        yield made


def requests(emulator, pattern: re.Pattern[str], method: str = "GET") -> list[dict[str, Any]]:
    return [request for request in emulator.requests() if request["method"] == method
            and pattern.match(request["path"])]


def upgrades(emulator) -> list[dict[str, Any]]:
    return [request for request in emulator.requests() if request["path"].endswith("/stream")]


def streams(emulator, conversation) -> dict[str, list[dict[str, Any]]]:
    answer = emulator._control("GET", "streams")
    return {key: [stream for stream in answer[key] if stream["conversationId"] == conversation.id]
            for key in ("streams", "closed")}


def online(conversation, emulator, seconds: float = 10) -> list[dict[str, Any]]:
    """next() until the listener reports `online` and the emulator lists the
    stream (so that what is sent next goes live, typing first, rather than
    into the replay); what came meanwhile."""
    results: list[dict[str, Any]] = []
    got = collect(conversation, lambda _: bool(results) and results[-1]["state"] == "online", seconds=seconds,
                  results=results)
    assert results and results[-1]["state"] == "online", results[-1:]
    stream_listed(emulator, conversation)
    return got


def echoes(activities: list[dict[str, Any]]) -> list[str]:
    return [text for text in texts(activities) if text.startswith("echo: ")]


def stream_listed(emulator, conversation, seconds: float = 5) -> None:
    """Waits until the emulator lists the conversation's stream as open (the
    client may see the 101 before the server's handler has registered it)."""
    deadline = time.monotonic() + seconds
    while not streams(emulator, conversation)["streams"]:
        assert time.monotonic() < deadline, "the stream never opened"
        time.sleep(0.02)


def command(emulator, conversation, action: str, **extra: Any) -> None:
    stream_listed(emulator, conversation)
    emulator._control("POST", f"streams/{conversation.id}", {"action": action, **extra})


def test_auto_streams_on_3_0_and_replies_and_typing_come_without_polling(conversation, emulator):
    assert conversation.listen() == {"mode": "websocket", "state": "connecting"}
    online(conversation, emulator)
    polls = len(requests(emulator, ACTIVITIES_GET))
    got: list[dict[str, Any]] = []
    for index in range(3):
        conversation.send_text("user1", f"hello {index}")
        got += collect(conversation, replies(1))
    assert echoes(got) == [f"echo: hello {index}" for index in range(3)]
    # The echo bot types before each reply, on the stream only.
    kinds = [(item["type"], item.get("text")) for item in got]
    for index in range(3):
        at = kinds.index(("message", f"echo: hello {index}"))
        assert ("typing", None) in kinds[:at]
    assert all(sender(item) == "echo-bot" for item in got if item["type"] == "typing")
    assert len(requests(emulator, ACTIVITIES_GET)) == polls, "no polling while the stream is open"
    assert conversation.next(0)["mode"] == "websocket"


def test_keep_alives_hand_out_nothing(conversation, emulator):
    emulator.configure(streamKeepAliveSeconds=0.1)
    conversation.listen()
    online(conversation, emulator)
    time.sleep(1.0)
    result = conversation.next(0)
    assert result["timedOut"] is True and result["activities"] == [] and result["state"] == "online"
    assert streams(emulator, conversation)["streams"][0]["keepAlivesSent"] >= 3
    assert len(upgrades(emulator)) == 1, "keep-alives are no reason to connect again"


def interrupt(how: str, emulator, conversation) -> None:
    if how == "close":
        command(emulator, conversation, "close")
    elif how == "drop":
        command(emulator, conversation, "drop")
    elif how == "refused upgrade":
        emulator.fault(method="GET", path="/stream$", count=2, action="status", status=503)
        command(emulator, conversation, "drop")
    elif how == "silent":
        command(emulator, conversation, "silent")
    elif how == "expired stream URL":
        # The next upgrade takes longer than the URL lives: refused, and a new URL is asked for.
        emulator.configure(streamUrlLifetime=1)
        emulator.fault(method="GET", path="/stream$", count=1, action="delay", seconds=1.5)
        command(emulator, conversation, "drop")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["close", "drop", "refused upgrade", "silent", "expired stream URL"])
def test_every_reply_once_and_in_order_across(how, conversation, emulator):
    conversation.listen(stream_silence=1.0)
    online(conversation, emulator)
    got: list[dict[str, Any]] = []
    for index in range(2):
        conversation.send_text("user1", f"before {index}")
        got += collect(conversation, replies(1))
    interrupt(how, emulator, conversation)
    # The bot goes on while the client is away.
    for index in range(3):
        conversation.send_text("user1", f"after {index}")
    results: list[dict[str, Any]] = []
    got += collect(conversation, replies(3), seconds=20, results=results)
    got += collect(conversation, lambda _: False, seconds=0.5)
    assert echoes(got) == ["echo: before 0", "echo: before 1"] + [f"echo: after {index}" for index in range(3)]
    assert len(upgrades(emulator)) >= 2
    reconnects = requests(emulator, CONVERSATION_GET)
    assert reconnects and all("watermark=" in request["query"] for request in reconnects)
    assert results[-1]["state"] == "online"
    assert streams(emulator, conversation)["streams"], "connected again"


def test_reconnect_asks_for_the_watermark_read_to_and_catches_up(conversation, emulator):
    """The reconnect GET is held up for a second while the bot answers
    three messages: the new stream replays them from the watermark."""
    conversation.listen()
    online(conversation, emulator)
    conversation.send_text("user1", "first")
    collect(conversation, replies(1))
    read_to = conversation.info()["watermark"]
    emulator.fault(method="GET", path=r"/conversations/[^/]+$", count=1, action="delay", seconds=1.0)
    command(emulator, conversation, "drop")
    for index in range(3):
        conversation.send_text("user1", f"away {index}")
    got = collect(conversation, replies(3), seconds=15)
    assert echoes(got) == [f"echo: away {index}" for index in range(3)]
    reconnect = requests(emulator, CONVERSATION_GET)[-1]
    assert f"watermark={read_to}" in reconnect["query"]


def test_every_reply_once_across_token_refreshes(client, emulator):
    """2-second tokens, refreshed every second, and the stream dropped
    halfway: the reconnect goes with the token of the moment."""
    emulator.configure(tokenLifetime=2)
    with client.start_conversation() as conversation:
        conversation.listen()
        online(conversation, emulator)
        got: list[dict[str, Any]] = []
        for index in range(8):
            if index == 4:
                command(emulator, conversation, "drop")
            conversation.send_text("user1", f"r{index}")
            got += collect(conversation, replies(1), seconds=10)
            time.sleep(0.4)
        assert echoes(got) == [f"echo: r{index}" for index in range(8)]
        refreshed = [request for request in emulator.requests() if request["path"].endswith("/refresh")]
        assert len(refreshed) >= 2
        assert len(upgrades(emulator)) >= 2


def test_reconnects_honour_retry_after(conversation, emulator):
    conversation.listen()
    online(conversation, emulator)
    emulator.fault(method="GET", path="/stream$", count=2, action="status", status=503, retryAfter="1")
    command(emulator, conversation, "drop")
    dropped_at = time.monotonic()
    conversation.send_text("user1", "later")
    results: list[dict[str, Any]] = []
    got = collect(conversation, replies(1), seconds=15, results=results)
    assert echoes(got) == ["echo: later"]
    # Two refusals, each asking for a second: at least two seconds.
    assert time.monotonic() - dropped_at >= 1.8
    assert "reconnecting" in [result["state"] for result in results]
    assert len(upgrades(emulator)) == 4


def test_reconnects_back_off(conversation, emulator):
    """Upgrades refused five times: the attempts come further and further
    apart (the client's base delay is 100 ms, doubling up to 2 s)."""
    conversation.listen()
    online(conversation, emulator)
    emulator.fault(method="GET", path="/stream$", count=5, action="status", status=503)
    command(emulator, conversation, "drop")
    seen: list[float] = []
    deadline = time.monotonic() + 20
    while len(seen) < 6 and time.monotonic() < deadline:
        count = len(upgrades(emulator))
        while len(seen) < count - 1:
            seen.append(time.monotonic())
        time.sleep(0.01)
    assert len(seen) == 6, "connected again in the end"
    gaps = [later - earlier for earlier, later in zip(seen, seen[1:])]
    # Exponential with full jitter: the last gaps together exceed the first.
    assert sum(gaps[-2:]) > gaps[0]
    conversation.send_text("user1", "back")
    assert echoes(collect(conversation, replies(1))) == ["echo: back"]


def test_a_collision_close_fails_with_conflict_after_what_was_queued(conversation, emulator):
    conversation.listen()
    online(conversation, emulator)
    conversation.send_text("user1", "queued")
    assert readable(conversation, 5)
    time.sleep(0.3)
    command(emulator, conversation, "collision")
    time.sleep(0.5)
    got: list[dict[str, Any]] = []
    with pytest.raises(directline.ConflictError) as caught:
        for _ in range(10):
            got += conversation.next(1)["activities"]
    assert echoes(got) == ["echo: queued"]
    assert "collision" in caught.value.message
    with pytest.raises(directline.ConflictError):
        conversation.next(0)
    upgraded = len(upgrades(emulator))
    time.sleep(0.5)
    assert len(upgrades(emulator)) == upgraded, "no fight over the stream"


def test_a_second_client_on_the_same_conversation_is_refused_by_collision(client, emulator):
    with client.start_conversation() as first:
        first.listen()
        online(first, emulator)
        state = first.state()
        with client.resume(state) as second:
            second.listen()
            with pytest.raises(directline.ConflictError):
                collect(second, lambda _: False, seconds=5)
        first.send_text("user1", "still mine")
        assert echoes(collect(first, replies(1))) == ["echo: still mine"]


@pytest.mark.parametrize("status, error", [(403, directline.ForbiddenError), (404, directline.NotFoundError)])
def test_a_refused_reconnect_fails(conversation, emulator, status, error):
    conversation.listen()
    online(conversation, emulator)
    emulator.fault(method="GET", path=r"/conversations/[^/]+$", count=-1, action="status", status=status)
    command(emulator, conversation, "drop")
    with pytest.raises(error):
        collect(conversation, lambda _: False, seconds=10)
    with pytest.raises(error):
        conversation.next(0)


def test_end_of_conversation_ends_with_no_reconnect(conversation, emulator):
    conversation.listen()
    online(conversation, emulator)
    conversation.send_text("user1", "end")
    results: list[dict[str, Any]] = []
    got = collect(conversation, lambda _: bool(results) and results[-1]["state"] == "ended", results=results)
    assert [item["type"] for item in got if item["type"] != "typing"] == ["endOfConversation"]
    upgraded = len(upgrades(emulator))
    reconnects = len(requests(emulator, CONVERSATION_GET))
    time.sleep(0.5)
    assert len(upgrades(emulator)) == upgraded and len(requests(emulator, CONVERSATION_GET)) == reconnects
    assert not streams(emulator, conversation)["streams"]
    assert conversation.next(0)["state"] == "ended"


def test_end_reads_to_the_end_then_ended(conversation, emulator):
    conversation.listen(include_own=True)
    online(conversation, emulator)
    conversation.send_text("user1", "last words")
    conversation.end("user1")
    results: list[dict[str, Any]] = []
    got = collect(conversation, lambda _: bool(results) and results[-1]["state"] == "ended", results=results)
    assert [text for text in texts(got) if text] == ["last words", "echo: last words"]
    assert got[-1]["type"] == "endOfConversation"


def test_backpressure_closes_the_stream_until_next_makes_room_and_loses_nothing(conversation, emulator):
    conversation.listen(max_queued=2)
    online(conversation, emulator)
    for index in range(8):
        conversation.send_text("user1", f"b{index}")
    time.sleep(1.0)  # everything sent; the queue is full
    assert len(streams(emulator, conversation)["streams"]) == 0, "no stream is read while the queue is full"
    got = collect(conversation, replies(8))
    got += collect(conversation, lambda _: False, seconds=0.3)
    assert echoes(got) == [f"echo: b{index}" for index in range(8)]
    # Closed normally for want of room, connected again once next() made some.
    assert (1000, "") in [(stream["clientCloseCode"], stream["clientCloseReason"])
                          for stream in streams(emulator, conversation)["closed"]]
    assert len(streams(emulator, conversation)["streams"]) == 1
    conversation.send_text("user1", "roomy")
    assert echoes(collect(conversation, replies(1))) == ["echo: roomy"]


def test_the_descriptor_is_readable_exactly_while_next_0_has_something(conversation, emulator):
    assert not readable(conversation)
    conversation.listen()
    assert readable(conversation, 5)
    while readable(conversation):
        conversation.next(0)
    assert conversation.next(0)["timedOut"] is True
    conversation.send_text("user1", "ping")
    got: list[dict[str, Any]] = []
    while not echoes(got):
        assert readable(conversation, 5)
        result = conversation.next(0)
        assert result["timedOut"] is False
        got += result["activities"]
    assert not readable(conversation)
    assert conversation.next(0)["timedOut"] is True


@pytest.mark.parametrize("how", ["unlisten", "close"])
def test_a_blocked_next_ends_cancelled_from_another_thread(conversation, emulator, how):
    conversation.listen()
    online(conversation, emulator)
    assert_blocked_next_cancelled(conversation, how)


def test_a_saved_state_while_streaming_resumes_with_nothing_repeated_or_lost(client, emulator):
    with client.start_conversation() as first:
        first.listen()
        online(first, emulator)
        first.send_text("user1", "taken")
        assert echoes(collect(first, replies(1))) == ["echo: taken"]
        first.send_text("user1", "queued")
        first.send_text("user1", "queued too")
        time.sleep(0.5)  # both replies queued, not taken
        saved = first.state()
        assert first.unlisten()["dropped"] >= 2
    with client.resume(saved) as second:
        second.listen()
        got = collect(second, replies(2))
        got += collect(second, lambda _: False, seconds=0.3)
    assert echoes(got) == ["echo: queued", "echo: queued too"]


def test_unlisten_closes_the_stream_with_a_normal_close_frame(conversation, emulator):
    conversation.listen()
    online(conversation, emulator)
    stream_listed(emulator, conversation)
    conversation.unlisten()
    deadline = time.monotonic() + 5
    while streams(emulator, conversation)["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    closed = streams(emulator, conversation)["closed"]
    assert [(stream["clientCloseCode"], stream["clientCloseReason"]) for stream in closed] == [(1000, "")]


def test_a_stream_url_token_never_reaches_the_log(emulator):
    lines: list[str] = []
    directline.set_log_handler(lambda level, message: lines.append(message), directline.LogLevel.DEBUG)
    try:
        with directline.Client(emulator.url, secret=SECRET, protocol="3.0") as client, \
                client.start_conversation() as conversation:
            conversation.listen()
            online(conversation, emulator)
            command(emulator, conversation, "drop")
            conversation.send_text("user1", "logged")
            collect(conversation, replies(1))
            ticket = re.search(r"[?&]t=([^&]+)", conversation.state()["streamUrl"] or "")
    finally:
        directline.set_log_handler(None)
    assert any("stream" in line for line in lines)
    if ticket:
        assert not any(ticket.group(1) in line for line in lines)


def test_wait_while_streaming_returns_the_reply_without_typing(conversation, emulator):
    conversation.listen()
    online(conversation, emulator)
    conversation.send_text("user1", "waited")
    got = conversation.wait(timeout=10)
    assert [(item["type"], item.get("text")) for item in got] == [("message", "echo: waited")]


def test_keep_alives_keep_a_quiet_stream_alive(conversation, emulator):
    """Keep-alives are frames without payload, which libcurl never hands to
    the write callback: they count as heard all the same."""
    emulator.configure(streamKeepAliveSeconds=0.2)
    conversation.listen(stream_silence=1.5)
    online(conversation, emulator)
    results = collect(conversation, lambda _: False, seconds=5)
    assert results == []
    assert len(upgrades(emulator)) == 1, "taken for silent while keep-alives came"
    assert conversation.next(0)["state"] == "online"


@pytest.mark.parametrize("stream", ["silent", "open"])
def test_a_failing_catch_up_after_end_leaves_no_stream_open(conversation, emulator, stream):
    """end() has the listener read what is left with a GET beside the open
    stream; that GET fails once. The stream must still be closed once the
    listener has ended, and unlisten leaves nothing open."""
    emulator.configure(streamKeepAliveSeconds=0.5)
    conversation.listen()
    online(conversation, emulator)
    if stream == "silent":  # the endOfConversation echo never comes over it
        command(emulator, conversation, "silent")
    emulator.fault(method="GET", path="/activities$", count=1, action="status", status=503)
    conversation.end("user1")
    results: list[dict[str, Any]] = []
    collect(conversation, lambda _: bool(results) and results[-1]["state"] == "ended", results=results)
    assert results[-1]["state"] == "ended"
    conversation.unlisten()
    deadline = time.monotonic() + 5
    while streams(emulator, conversation)["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not streams(emulator, conversation)["streams"], "a stream is left open"


def listen_in_child(conversation: directline.Conversation, results: Any) -> None:
    try:
        conversation.next(5)
        results.put("no error")
    except directline.UnsupportedError as error:
        results.put(error.message)


def test_a_forked_child_does_not_take_over_the_stream(conversation, emulator):
    """A second stream of the conversation would collide with the parent's:
    the child's listener fails, saying to poll, and the parent streams on."""
    import multiprocessing

    conversation.listen()
    online(conversation, emulator)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=listen_in_child, args=(conversation, results))
    child.start()
    message = results.get(timeout=30)
    child.join(30)
    assert "forked child" in message and "polling" in message, message
    conversation.send_text("user1", "parent")
    assert echoes(collect(conversation, replies(1))) == ["echo: parent"]
    assert len(upgrades(emulator)) == 1, "no second stream"


def test_catching_up_stops_at_a_full_queue_and_loses_nothing(conversation, emulator):
    emulator.configure(pageSize=1)
    for index in range(6):
        conversation.send_text("user1", f"c{index}")
    conversation.listen(max_queued=2)
    time.sleep(1.0)
    gets = len(requests(emulator, ACTIVITIES_GET))
    time.sleep(0.5)
    assert len(requests(emulator, ACTIVITIES_GET)) == gets, "no paging past a full queue"
    assert gets <= 4
    got = collect(conversation, replies(6))
    assert echoes(got) == [f"echo: c{index}" for index in range(6)]
