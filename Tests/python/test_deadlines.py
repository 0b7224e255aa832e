"""Time limits are limits: a call ends by the time it was given, whatever the
service does (the hostile audit's deadline cases).

The bounds asserted here are generous (a second or more of slack): they
tell a call that honours its limit from one that runs to the client's
request timeout, not how fast the machine is.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import directline
from support import SECRET

LIST_PATH = r"/(activities|messages)$"


def close_during_wait(conversation: directline.Conversation) -> dict[str, Any]:
    """Closes the conversation half a second into a 20 s wait on another
    thread (its request hanging by then): the wait's error, when it ended
    and when the close came."""
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            conversation.wait(timeout=20, after_send=0)
        except directline.DirectLineError as error:
            outcome["error"] = error
        outcome["ended"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)  # the request is now hanging
    outcome["freed"] = time.monotonic()
    conversation.close()
    waiter.join(15)
    assert not waiter.is_alive()
    return outcome


@pytest.fixture
def slow_client(emulator, protocol):
    """A client whose own request timeout (20 s) is far past the limits tested."""
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol, timeout_ms=20_000,
                           retry={"max_attempts": 1}) as made:
        yield made


def test_a_wait_against_a_hanging_service_ends_at_its_timeout_as_a_timeout(slow_client, emulator):
    with slow_client.start_conversation() as conversation:
        emulator.fault(method="GET", path=LIST_PATH, action="hang", seconds=30, count=-1)
        started = time.monotonic()
        replies = conversation.wait(timeout=1.0, after_send=0)
        elapsed = time.monotonic() - started
    assert replies == []  # timedOut, not an error
    assert elapsed < 3.0, f"the wait took {elapsed:.1f} s for a 1 s timeout"


def test_a_zero_timeout_wait_still_reads_once(slow_client, emulator):
    with slow_client.start_conversation() as conversation:
        conversation.send_text("user1", "hello")
        time.sleep(0.2)
        replies = conversation.wait(timeout=0, after_send=0)
    assert [reply.get("text") for reply in replies][-1:] == ["echo: hello"]


def test_freeing_the_handle_aborts_a_poll_in_flight(slow_client, emulator):
    conversation = slow_client.start_conversation()
    emulator.fault(method="GET", path=LIST_PATH, action="hang", seconds=30, count=-1)
    outcome = close_during_wait(conversation)
    assert isinstance(outcome.get("error"), directline.CancelledError), outcome
    assert outcome["ended"] - outcome["freed"] < 2.5, "freeing did not abort the request in flight"


@pytest.mark.slow
def test_freeing_the_handle_wakes_the_poll_at_once(slow_client, emulator):
    """A free wakes the transfer's poll instead of waiting for libcurl's
    next progress call, which comes about once a second while a read hangs.
    One free could land just before such a call, so eight are summed: an
    abort at the next progress call would add up to about 4 s (under 1.5 s
    with a chance of 1 in 1,500), a wakeup to a few milliseconds each."""
    emulator.fault(method="GET", path=LIST_PATH, action="hang", seconds=30, count=-1)
    delays = []
    for _ in range(8):
        conversation = slow_client.start_conversation()
        ended: list[float] = []

        def wait(conversation: directline.Conversation = conversation, ended: list[float] = ended) -> None:
            with pytest.raises(directline.CancelledError):
                conversation.wait(timeout=20, after_send=0)
            ended.append(time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)  # the poll is now hanging
        freed = time.monotonic()
        conversation.close()
        waiter.join(15)
        assert ended, "the wait did not end with a cancellation"
        delays.append(ended[0] - freed)
    assert sum(delays) < 1.5, f"frees took {[round(delay, 3) for delay in delays]} s to abort the reads"


def test_confirm_with_no_time_to_wait_ends_within_one_request_timeout_against_endless_paging(emulator):
    with directline.Client(emulator.url, secret=SECRET, timeout_ms=1500) as client:
        with client.start_conversation() as conversation:
            emulator.configure(endlessPages=True)
            started = time.monotonic()
            with pytest.raises(directline.DirectLineTimeoutError):
                conversation.confirm("dlc-never-sent", timeout=0)
            elapsed = time.monotonic() - started
    assert elapsed < 4.0, f"confirm took {elapsed:.1f} s"


REGIONAL_PATH = r"/powervirtualagents/regionalchannelsettings$"


@pytest.fixture
def resumed_on_regional_host(emulator):
    """A conversation started through a Copilot Studio token URL, then
    resumed by a new client that has not read the regional settings yet,
    whose regional settings endpoint now hangs."""
    token_endpoint = f"{emulator.url}/powervirtualagents/botsbyschema/cr1_d/directline/token?api-version=1"
    with directline.Client(token_endpoint=token_endpoint) as first, first.start_conversation() as started:
        state = started.state()
    emulator.fault(method="GET", path=REGIONAL_PATH, action="hang", seconds=30, count=-1)
    with directline.Client(token_endpoint=token_endpoint, timeout_ms=20_000, retry={"max_attempts": 1}) as client:
        yield client.resume(state)


def test_reading_the_regional_host_keeps_to_the_calls_time(resumed_on_regional_host):
    """The regional settings are read within the call that needs them: a
    1 s wait ends as a timeout, not at the client's 20 s request timeout."""
    started = time.monotonic()
    replies = resumed_on_regional_host.wait(timeout=1.0, after_send=0)
    elapsed = time.monotonic() - started
    assert replies == []
    assert elapsed < 3.0, f"the wait took {elapsed:.1f} s for a 1 s timeout"


def test_freeing_the_handle_aborts_reading_the_regional_host(resumed_on_regional_host):
    outcome = close_during_wait(resumed_on_regional_host)
    assert isinstance(outcome.get("error"), directline.CancelledError), outcome


def test_a_send_whose_regional_host_cannot_be_read_was_not_sent(resumed_on_regional_host, emulator):
    """A failure to read the regional settings is no send that may have
    reached the bot: delivery says not_sent, so the caller may simply retry."""
    with directline.timeouts(total=1.0), pytest.raises(directline.DirectLineError) as raised:
        resumed_on_regional_host.send_text("user1", "hello")
    assert raised.value.delivery == "not_sent", raised.value.detail
    assert "regionalSettingsEndpoint" in raised.value.message
    assert not [entry for entry in emulator.requests() if entry["path"].endswith("/activities")]
