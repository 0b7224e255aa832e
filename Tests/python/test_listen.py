"""Receiving as it happens: listen, next, fileno, unlisten, stream (issue 15, the polling source).

The listener polls on the library's transfer thread and hands out what it
read through ``next``; these tests hold it to the contract of
../shared/design/API.md ("Receiving as it happens"): every reply once and
in order across failed pages, repeats and token refreshes; the caller's own
skipped unless asked for; backpressure that loses nothing; a descriptor
readable exactly while ``next(0)`` has something; blocked calls cancelled
by unlisten and close; a saved state that resumes where ``next`` left off;
and a failure that hands out what was queued, then itself on every call.
"""

from __future__ import annotations

import multiprocessing
import re
import select
import threading
import time
from typing import Any, Callable

import pytest

import directline
from support import SECRET, sender

LIST_PATH = {"3.0": "/activities$", "1.1": "/messages$"}
LIST_REQUEST = re.compile(r"^/(v3/directline|api)/conversations/[^/]+/(activities|messages)$")


def list_gets(emulator) -> int:
    return sum(1 for request in emulator.requests()
               if request["method"] == "GET" and LIST_REQUEST.match(request["path"]))


def texts(activities: list[dict[str, Any]]) -> list[str]:
    return [activity.get("text", "") for activity in activities]


def readable(conversation, timeout: float = 0.0) -> bool:
    ready, _, _ = select.select([conversation.fileno()], [], [], timeout)
    return bool(ready)


def collect(conversation, enough: Callable[[list[dict[str, Any]]], bool], seconds: float = 10.0,
            results: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Calls next until what it handed out is `enough` or `seconds` pass."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while not enough(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        result = conversation.next(min(left, 1.0))
        if results is not None:
            results.append(result)
        got += result["activities"]
    return got


def replies(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda got: sum(1 for text in texts(got) if text.startswith("echo: ")) >= count


def faults_left(emulator) -> int:
    return sum(rule["count"] for rule in emulator._control("GET", "faults")["faults"])


def test_a_bot_reply_reaches_next_without_wait(conversation, emulator, protocol):
    started = conversation.listen(mode="polling", poll_interval=0.1)
    # "online" when the first poll was answered before listen() returned.
    assert started in ({"mode": "polling", "state": "connecting"}, {"mode": "polling", "state": "online"})
    conversation.send_text("user1", "hello")
    got = collect(conversation, replies(1))
    assert texts(got) == ["echo: hello"], "the reply, without the caller's own message"
    result = conversation.next(0)
    assert result["timedOut"] is True and result["activities"] == []
    assert result["state"] == "online" and result["mode"] == "polling"
    assert result["watermark"] == conversation.info()["watermark"]


def test_listening_twice_reports_the_running_listener(conversation, emulator):
    assert conversation.listen(mode="polling", poll_interval=0.1)["state"] == "connecting"
    collect(conversation, lambda got: False, seconds=0.3)
    again = conversation.listen(mode="polling", poll_interval=5, max_queued=1)
    assert again == {"mode": "polling", "state": "online"}
    # The first listener's options still hold: replies come at its interval.
    conversation.send_text("user1", "still")
    assert texts(collect(conversation, replies(1), seconds=3)) == ["echo: still"]


def test_next_when_not_listening_is_an_invalid_argument(conversation, emulator):
    with pytest.raises(directline.InvalidArgumentError, match="not listening"):
        conversation.next(0)
    conversation.listen(mode="polling")
    conversation.unlisten()
    with pytest.raises(directline.InvalidArgumentError, match="not listening"):
        conversation.next(0)


def test_websocket_mode_on_1_1_is_unsupported_and_starts_nothing(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client, \
            client.start_conversation() as conversation:
        websocket_refused(conversation, emulator)
        assert conversation.listen()["mode"] == "polling", "auto polls on 1.1"


def websocket_refused(conversation: directline.Conversation, emulator) -> None:
    before = len(emulator.requests())
    with pytest.raises(directline.UnsupportedError) as caught:
        conversation.listen(mode="websocket")
    assert caught.value.status == directline.Status.ERR_UNSUPPORTED == 22
    assert "1.1 has no WebSocket stream" in caught.value.message
    assert caught.value.delivery == "not_sent"
    time.sleep(0.2)
    assert len(emulator.requests()) == before
    with pytest.raises(directline.InvalidArgumentError):
        conversation.next(0)


@pytest.mark.parametrize("options", [{"mode": "stream"}, {"poll_interval": 0.01}, {"poll_interval": 3601},
                                     {"max_queued": 0}, {"max_queued": 1_000_001}, {"include_own": 1},
                                     {"max_queued": 2.0}, {"mode": None}])
def test_bad_options_are_refused_and_start_nothing(conversation, emulator, options):
    before = len(emulator.requests())
    with pytest.raises(directline.InvalidArgumentError):
        conversation.listen(**options)
    time.sleep(0.1)
    assert len(emulator.requests()) == before


def test_get_activities_is_refused_while_listening(conversation, emulator, protocol):
    conversation.listen(mode="polling", poll_interval=0.1)
    with pytest.raises(directline.InvalidArgumentError, match="listening"):
        conversation.get_activities()
    conversation.unlisten()
    assert "activities" in conversation.get_activities() or protocol == "1.1"


def test_wait_takes_from_the_listener(conversation, emulator, protocol):
    conversation.listen(mode="polling", poll_interval=0.1)
    conversation.send_text("user1", "via wait")
    started = time.monotonic()
    got = conversation.wait(timeout=5)
    assert texts(got) == ["echo: via wait"]
    assert time.monotonic() - started < 4
    # Taken by the wait: next does not hand it out again, and gets stays refused.
    assert conversation.next(0)["activities"] == []
    gets = list_gets(emulator)
    assert conversation.wait(timeout=0.3) == []
    time.sleep(0.2)
    assert list_gets(emulator) > gets, "the listener polls, not the wait"


def test_own_activities_are_skipped_unless_include_own(client, emulator, protocol):
    with client.start_conversation() as plain, client.start_conversation() as with_own:
        plain.listen(mode="polling", poll_interval=0.1)
        with_own.listen(mode="polling", poll_interval=0.1, include_own=True)
        for conversation in (plain, with_own):
            conversation.send_text("user1", "mine")
        assert texts(collect(plain, replies(1))) == ["echo: mine"]
        assert texts(collect(with_own, replies(1))) == ["mine", "echo: mine"]
        # Own activities still count for confirm (3.0).
        if protocol == "3.0":
            sent = plain.send_text("user1", "confirm me")
            assert plain.confirm(sent["clientActivityID"], timeout=5)["delivered"] is True
            assert texts(collect(plain, replies(1))) == ["echo: confirm me"]


def test_a_reply_the_service_repeats_reaches_next_once(conversation, emulator, protocol):
    # Without watermarks every poll returns the whole conversation again.
    emulator.configure(nullWatermark=True)
    conversation.listen(mode="polling", poll_interval=0.05)
    conversation.send_text("user1", "one")
    got = collect(conversation, replies(1))
    conversation.send_text("user1", "two")
    got += collect(conversation, replies(1))
    got += collect(conversation, lambda got: False, seconds=0.5)
    assert texts(got) == ["echo: one", "echo: two"]


@pytest.mark.parametrize("fault", [{"action": "status", "status": 500}, {"action": "close"},
                                   {"action": "status", "status": 429, "retryAfter": "1"}],
                         ids=["500", "reset", "429-retry-after"])
@pytest.mark.parametrize("failing_page", [1, 3])
def test_every_reply_once_and_in_order_across_a_failing_page(conversation, emulator, protocol, fault,
                                                              failing_page):
    emulator.configure(pageSize=2)
    for index in range(6):
        conversation.send_text("user1", f"m{index}")
    emulator.fault(method="GET", path=LIST_PATH[protocol], skip=failing_page - 1, **fault)
    conversation.listen(mode="polling", poll_interval=0.05)
    results: list[dict[str, Any]] = []
    got = collect(conversation, replies(6), results=results)
    got += collect(conversation, lambda got: False, seconds=0.3)
    assert faults_left(emulator) == 0, "the fault never fired"
    assert texts(got) == [f"echo: m{index}" for index in range(6)]
    assert all(result["state"] != "failed" for result in results)


def test_exactly_once_across_token_refreshes(client, emulator, protocol):
    """2-second tokens, refreshed every second: polls go on with each new
    token (the first has expired by the end) and miss or repeat nothing."""
    emulator.configure(tokenLifetime=2)
    with client.start_conversation() as conversation:
        conversation.listen(mode="polling", poll_interval=0.1)
        got: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for index in range(8):
            conversation.send_text("user1", f"r{index}")
            got += collect(conversation, replies(1), seconds=5, results=results)
            time.sleep(0.4)
        assert texts(got) == [f"echo: r{index}" for index in range(8)]
        assert all(result["state"] == "online" for result in results)
        refreshed = [request for request in emulator.requests() if "refresh" in request["path"]
                     or request["path"].endswith("/renew")]
        assert len(refreshed) >= 2


def test_backpressure_stops_polling_and_loses_nothing(conversation, emulator, protocol):
    emulator.configure(pageSize=1)
    for index in range(6):
        conversation.send_text("user1", f"b{index}")
    conversation.listen(mode="polling", poll_interval=0.05, max_queued=2)
    assert readable(conversation, 5)
    time.sleep(0.3)  # let it fill up and stop
    paused_at = list_gets(emulator)
    time.sleep(0.5)
    assert list_gets(emulator) == paused_at, "polling must stop while maxQueued activities wait"
    results: list[dict[str, Any]] = []
    got = collect(conversation, replies(6), results=results)
    assert texts(got) == [f"echo: b{index}" for index in range(6)]
    assert all(len(result["activities"]) <= 2 for result in results)
    assert list_gets(emulator) > paused_at


def test_the_descriptor_is_readable_exactly_while_next_0_has_something(conversation, emulator, protocol):
    fd = conversation.fileno()
    assert fd == conversation.fd >= 0
    assert not readable(conversation), "not listening: nothing to report"
    conversation.listen(mode="polling", poll_interval=0.1)
    # The first poll's answer changes the state to online: something to report.
    assert readable(conversation, 5)
    assert readable(conversation), "level-triggered: still readable until taken"
    first = conversation.next(0)
    assert first["timedOut"] is False and first["state"] == "online"
    assert not readable(conversation)
    assert conversation.next(0)["timedOut"] is True
    conversation.send_text("user1", "ping")
    assert readable(conversation, 5)
    assert texts(conversation.next(0)["activities"]) == ["echo: ping"]
    assert not readable(conversation)
    assert conversation.next(0)["timedOut"] is True
    conversation.send_text("user1", "dropped")
    assert readable(conversation, 5)
    assert conversation.unlisten()["dropped"] == 1
    assert not readable(conversation)
    assert conversation.fileno() == fd, "one descriptor for the handle's life"


@pytest.mark.parametrize("how", ["unlisten", "close"])
def test_a_blocked_next_is_cancelled_promptly_from_another_thread(conversation, emulator, how):
    conversation.listen(mode="polling", poll_interval=0.1)
    collect(conversation, lambda got: False, seconds=0.3)  # take the state change
    assert_blocked_next_cancelled(conversation, how)


def assert_blocked_next_cancelled(conversation, how: str) -> None:
    """A next(None) with nothing to hand out ends with CancelledError within
    0.5 s of `how` ("unlisten" or "close") on another thread."""
    outcome: list[Any] = []

    def blocked() -> None:
        try:
            outcome.append(conversation.next(None))
        except BaseException as error:  # noqa: BLE001 - recorded for the assertion
            outcome.append(error)
        outcome.append(time.monotonic())

    thread = threading.Thread(target=blocked, daemon=True)  # a broken cancel must not hang the run
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "next(None) returned with nothing to hand out"
    stopped_at = time.monotonic()
    getattr(conversation, how)()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], directline.CancelledError), outcome
    assert outcome[1] - stopped_at < 0.5


def test_a_saved_state_while_listening_resumes_with_nothing_repeated_or_lost(client, emulator, protocol):
    with client.start_conversation() as first:
        first.listen(mode="polling", poll_interval=0.05)
        first.send_text("user1", "taken")
        assert texts(collect(first, replies(1))) == ["echo: taken"]
        first.send_text("user1", "queued")
        first.send_text("user1", "queued too")
        assert readable(first, 5)
        time.sleep(0.3)  # both replies queued, not taken
        saved = first.state()
        assert saved["watermark"] == first.info()["watermark"]
    with client.resume(saved) as second:
        second.listen(mode="polling", poll_interval=0.05, include_own=True)
        got = collect(second, lambda got: len(got) >= 4)
        got += collect(second, lambda got: False, seconds=0.3)
    # The bot's replies come once each and the one taken does not come back.
    # The user's own messages were skipped by the first listener: one whose
    # page it read before the reply came counts as handed out (there was
    # nothing in it to take), so it may or may not come again.
    assert [text for text in texts(got) if text.startswith("echo: ")] == ["echo: queued", "echo: queued too"]
    assert set(texts(got)) <= {"queued", "echo: queued", "queued too", "echo: queued too"}


def test_unlisten_drops_what_was_queued_and_the_watermark_stays_before_it(conversation, emulator, protocol):
    conversation.listen(mode="polling", poll_interval=0.05)
    conversation.send_text("user1", "kept for later")
    assert readable(conversation, 5)
    time.sleep(0.2)
    mark = conversation.info()["watermark"]
    stopped = conversation.unlisten()
    assert stopped["watermark"] == mark and stopped["dropped"] == 1
    assert conversation.unlisten() == {"dropped": 0, "watermark": mark}
    assert texts(conversation.wait(timeout=5)) == ["echo: kept for later"]


def test_failed_after_a_403_hands_out_what_was_queued_then_the_error_every_call(conversation, emulator,
                                                                                protocol):
    conversation.send_text("user1", "a")
    conversation.send_text("user1", "b")
    conversation.listen(mode="polling", poll_interval=0.05)
    assert readable(conversation, 5)  # the first page is queued
    emulator.fault(method="GET", path=LIST_PATH[protocol], count=-1, action="status", status=403)
    deadline = time.monotonic() + 5
    while not any(request["status"] == 403 for request in emulator.requests()):
        assert time.monotonic() < deadline, "no poll met the 403"
        time.sleep(0.05)
    result = conversation.next(0)
    assert result["state"] == "failed"
    assert texts(result["activities"]) == ["echo: a", "echo: b"]
    for _ in range(3):
        assert readable(conversation), "a failure to report keeps the descriptor readable"
        with pytest.raises(directline.ForbiddenError) as caught:
            conversation.next(0)
        assert caught.value.http_status == 403
        with pytest.raises(directline.ForbiddenError):
            conversation.next(1.0)
    gets = list_gets(emulator)
    time.sleep(0.3)
    assert list_gets(emulator) == gets, "a failed listener polls no more"


def test_end_reads_to_the_end_then_ended_and_polling_stops(conversation, emulator, protocol):
    conversation.listen(mode="polling", poll_interval=0.05, include_own=True)
    conversation.send_text("user1", "last words")
    conversation.end("user1")
    results: list[dict[str, Any]] = []
    got = collect(conversation, lambda got: bool(results) and results[-1]["state"] == "ended", results=results)
    assert texts(got)[:2] == ["last words", "echo: last words"]
    if protocol == "3.0":
        assert got[-1]["type"] == "endOfConversation"
    gets = list_gets(emulator)
    time.sleep(0.3)
    assert list_gets(emulator) == gets
    assert conversation.next(0)["state"] == "ended"


def test_the_bots_endOfConversation_ends_the_stream(conversation, emulator):
    """3.0's echo bot answers "end" with endOfConversation; stream() yields
    up to it and stops."""
    if conversation.info()["protocol"] != "3.0":
        pytest.skip("1.1 has no endOfConversation")
    conversation.send_text("user1", "before")
    conversation.send_text("user1", "end")
    seen = list(conversation.stream(timeout=10))
    assert [(item.get("type"), item.get("text")) for item in seen] == [
        ("message", "echo: before"), ("endOfConversation", None)]
    assert sender(seen[-1]) == "echo-bot"


def test_stream_yields_as_replies_arrive_and_ends_after_idle_time(conversation, emulator):
    conversation.listen(mode="polling", poll_interval=0.1)  # stream() keeps the running listener
    conversation.send_text("user1", "s1")
    stream = conversation.stream(timeout=1.0)
    assert next(stream).get("text") == "echo: s1"
    conversation.send_text("user1", "s2")
    assert next(stream).get("text") == "echo: s2"
    started = time.monotonic()
    assert list(stream) == []
    assert 0.8 < time.monotonic() - started < 3


def test_a_stream_is_cancelled_by_close_from_another_thread(client, emulator):
    conversation = client.start_conversation()
    stream = conversation.stream()
    threading.Timer(0.5, conversation.close).start()
    started = time.monotonic()
    with pytest.raises(directline.CancelledError):
        list(stream)
    assert time.monotonic() - started < 3


def listen_in_child(conversation: directline.Conversation, results: Any) -> None:
    conversation.send_text("user1", "from the child")
    got = collect(conversation, replies(1), seconds=10)
    results.put(texts(got))


def test_a_forked_child_polls_again_when_the_parents_poll_was_in_flight(conversation, emulator, protocol):
    """Every poll answered after 1.5 s: the fork comes while one is in
    flight, which the child never gets an answer to; its fork handler
    starts the poll again."""
    conversation.listen(mode="polling", poll_interval=0.05)
    collect(conversation, lambda got: False, seconds=0.3)
    emulator.fault(method="GET", path=LIST_PATH[protocol], count=-1, action="delay", seconds=1.5)
    time.sleep(0.3)  # the next poll is in flight now
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=listen_in_child, args=(conversation, results))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert results.get(timeout=5) == ["echo: from the child"]
