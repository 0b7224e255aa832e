"""The automatic token refresh keeps up (the hostile audit's "refresh keeps
up", issue 14): refreshes run many at once on the library's transfer loop,
so a slow token service holds none of them up; a failure that may pass is
tried again until the token really expires; a refusal stops that
conversation's refreshing at once, and info says why.

Each test fails against a library that refreshes one token at a time on a
blocking thread (DIRECTLINE_LIBRARY=... of such a build).
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

import pytest

import directline
from support import SECRET

REFRESH_PATH = {"3.0": r"/tokens/refresh$", "1.1": r"/renew$"}
REFRESH_REQUEST = {"3.0": re.compile(r"^/v3/directline/tokens/refresh$"),
                   "1.1": re.compile(r"^/api/tokens/[^/]+/renew$")}


def expiry(info: dict[str, Any]) -> float:
    """info's tokenExpiresAt as seconds since the epoch (whole seconds, so
    up to a second before the token's real expiry)."""
    return calendar.timegm(time.strptime(info["tokenExpiresAt"], "%Y-%m-%dT%H:%M:%SZ"))


def refreshes(emulator) -> list[dict]:
    return [request for request in emulator.requests()
            if any(path.search(request["path"]) for path in REFRESH_REQUEST.values())]


def wait_for(condition, seconds: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["3.0", "1.1"])
def test_thirty_conversations_stay_valid_through_a_service_that_takes_a_second(emulator, protocol):
    """3-second tokens, and every refresh answered after 1 s: one refresh at
    a time could renew one token a second, and 30 tokens would lapse."""
    emulator.configure(tokenLifetime=3)
    emulator.fault(path=REFRESH_PATH[protocol], action="delay", seconds=1.0, count=-1)
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client:
        conversations = [client.start_conversation() for _ in range(30)]
        try:
            deadline = time.monotonic() + 10.0  # over three token lifetimes
            rounds = 0
            while time.monotonic() < deadline:
                now = time.time()
                for index, conversation in enumerate(conversations):
                    info = conversation.info()
                    assert info["tokenRefreshError"] is None, (index, info)
                    assert info["autoRefresh"] is True, (index, info)
                    # Whole seconds: the token lives until up to a second later.
                    assert expiry(info) > now - 1.0, f"conversation {index}'s token expired: {info}"
                rounds += 1
                time.sleep(0.25)
            assert rounds >= 20
            for index, conversation in enumerate(conversations):
                conversation.send_text("user1", f"still here {index}")
        finally:
            for conversation in conversations:
                conversation.close()
    # Those still in flight when the handles were freed have no status.
    statuses = [request["status"] for request in refreshes(emulator)]
    assert statuses.count(200) >= 30 * 3, "every token renewed several times"
    assert [status for status in statuses if status not in (200, None)] == []


@pytest.mark.parametrize("protocol,fault", [
    pytest.param("3.0", {"action": "status", "status": 503, "count": 6}, id="3.0-503-six-times"),
    pytest.param("1.1", {"action": "close", "count": 6}, id="1.1-connection-closed-six-times",
                 marks=pytest.mark.slow),
    # Retry-After past the token's expiry: the retry still comes before it.
    pytest.param("3.0", {"action": "status", "status": 429, "retryAfter": "10", "count": 1},
                 id="3.0-429-retry-after-beyond-expiry", marks=pytest.mark.slow),
])
def test_a_failure_that_may_pass_is_retried_until_the_refresh_succeeds(emulator, protocol, fault):
    """A 4-second token is refreshed from 2 s on; the service fails six times
    in a row (or asks to wait 10 s) and then answers: the token is renewed
    before it expires, with no error left in info. Halving the time left
    at each retry, and giving up 200 ms before expiry, allowed five tries."""
    emulator.configure(tokenLifetime=4)
    emulator.fault(path=REFRESH_PATH[protocol], **fault)
    # No retries inside one attempt: the refresher's own retrying is what
    # counts. The 429 keeps the default retries, which wait out Retry-After
    # (up to 10 s) inside a blocking attempt.
    retry = None if fault.get("status") == 429 else {"max_attempts": 1}
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol, retry=retry) as client:
        with client.start_conversation() as conversation:
            first = conversation.info()
            token = conversation.state()["token"]
            started = time.monotonic()
            renewed = wait_for(lambda: conversation.state()["token"] != token, 4.5)
            info = conversation.info()
            assert renewed, f"no new token after {time.monotonic() - started:.1f} s: {info}"
            assert time.monotonic() - started < 4.0, "renewed only after the token expired"
            assert info["tokenRefreshError"] is None
            assert info["autoRefresh"] is True
            assert expiry(info) > expiry(first)
            conversation.send_text("user1", "after the refresh")
    statuses = [request["status"] for request in refreshes(emulator)]
    assert statuses[-1] == 200 and len(statuses) >= fault["count"] + 1, statuses


def test_a_token_that_expires_while_the_service_fails_stops_and_says_so(emulator):
    """The service answers 503 to every refresh: the library keeps trying
    while the 3-second token lives (more often near its end), then stops
    for good, and info says the token expired."""
    emulator.configure(tokenLifetime=3)
    emulator.fault(path=REFRESH_PATH["3.0"], action="status", status=503, count=-1)
    with directline.Client(emulator.url, secret=SECRET, retry={"max_attempts": 1}) as client:
        with client.start_conversation() as conversation:
            stopped = wait_for(lambda: conversation.info()["autoRefresh"] is False, 4.5)
            info = conversation.info()
            assert stopped, info
            assert "expired" in info["tokenRefreshError"], info
            assert "503" in info["tokenRefreshError"], info
            tries = len(refreshes(emulator))
            time.sleep(0.5)
            assert len(refreshes(emulator)) == tries, "tried again after it stopped"
    assert tries >= 6, f"only {tries} tries before the token expired"


def test_a_refusal_stops_at_once_while_other_refreshes_wait_on_a_slow_service(emulator):
    """30 conversations with 4-second tokens; the service takes a second to
    answer the first 29 refreshes and refuses the 30th (403). The refused
    conversation stops refreshing at once, and info says why; the others
    are renewed a second later. One refresh at a time would have answered
    the refusal 29 seconds late, long after every token had expired."""
    emulator.configure(tokenLifetime=4)
    emulator.fault(path=REFRESH_PATH["3.0"], action="delay", seconds=1.0, count=29)
    emulator.fault(path=REFRESH_PATH["3.0"], action="status", status=403, count=1)
    with directline.Client(emulator.url, secret=SECRET, retry={"max_attempts": 1}) as client:
        conversations = [client.start_conversation() for _ in range(30)]
        try:
            tokens = [conversation.state()["token"] for conversation in conversations]
            started = time.monotonic()

            def refused() -> list[int]:
                return [index for index, conversation in enumerate(conversations)
                        if conversation.info()["tokenRefreshError"] is not None]

            assert wait_for(lambda: len(refused()) >= 1, 3.0, interval=0.1), "no refusal reported in time"
            assert time.monotonic() - started < 3.0
            (index,) = refused()
            info = conversations[index].info()
            assert info["autoRefresh"] is False, info
            assert "403" in info["tokenRefreshError"], info
            assert tokens[index] not in info["tokenRefreshError"]

            others = [conversation for position, conversation in enumerate(conversations) if position != index]
            assert wait_for(lambda: all(conversation.state()["token"] != tokens[position]
                                        for position, conversation in enumerate(conversations)
                                        if position != index), 2.0, interval=0.1), \
                "the other conversations were not renewed a second later"
            for conversation in others:
                assert conversation.info()["tokenRefreshError"] is None
        finally:
            for conversation in conversations:
                conversation.close()
    # The refused conversation's token went to the service once.
    sent_with_refused = [request for request in refreshes(emulator)
                         if request["headers"].get("authorization") == f"Bearer {tokens[index]}"]
    assert len(sent_with_refused) == 1
