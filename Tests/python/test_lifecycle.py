"""A conversation's life through the Python binding, against the emulator, on
both protocols: waiting for replies, saving and resuming, tokens (generated,
refreshed by hand and automatically, expired), ending, and closing a wait.

Every expected error goes through `raises()`, which also checks that neither
the secret nor the tokens involved appear in the error's text or detail."""

from __future__ import annotations

import ctypes
import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable, Optional

import pytest

import directline
from directline import Status, _native
from support import SECRET, python_env, sender

pytestmark = pytest.mark.slow  # about 45 s of waiting for tokens to expire

REFRESH_PATH = {"3.0": re.compile(r"^/v3/directline/tokens/refresh$"),
                "1.1": re.compile(r"^/api/tokens/[^/]+/renew$")}


def texts(activities: list[dict]) -> list[str]:
    return [activity.get("text", "") for activity in activities]


def requests_matching(emulator, path: "re.Pattern[str]", method: Optional[str] = None) -> list[dict]:
    return [request for request in emulator.requests()
            if path.search(request["path"]) and (method is None or request["method"] == method)]


def raises(error_class: type[directline.DirectLineError], call: Callable[[], Any],
           *secrets: str) -> directline.DirectLineError:
    """Calls `call`, expecting `error_class`; checks that no secret leaks into the error."""
    with pytest.raises(error_class) as caught:
        call()
    assert_no_secrets(caught.value, SECRET, *secrets)
    return caught.value


def assert_no_secrets(error: BaseException, *secrets: str) -> None:
    shown = " ".join([str(error), repr(error), json.dumps(getattr(error, "detail", {}))])
    for secret in secrets:
        assert secret not in shown, "a secret or token leaked into an error"


def run_in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Starts `call` on a thread; the dict gets "result" or "error", and "seconds"."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = call()
        except BaseException as error:  # asserted by the test
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


# --- wait ---------------------------------------------------------------------

def test_wait_returns_the_echo_then_only_the_newer_reply(conversation):
    conversation.send_text("user1", "one")
    first = conversation.wait(timeout=5)
    assert texts(first) == ["echo: one"]
    assert sender(first[0]) == "echo-bot"
    assert conversation.watermark == "2"

    conversation.send_text("user1", "two")
    assert texts(conversation.wait(timeout=5)) == ["echo: two"]
    assert conversation.watermark == "4"


def test_wait_times_out_with_an_empty_list_and_does_not_raise(conversation, emulator):
    started = time.monotonic()
    assert conversation.wait(timeout=0.5, interval=0.1) == []
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 5
    polls = [request for request in emulator.requests() if request["method"] == "GET"]
    assert len(polls) >= 2, "it polled during the wait"


def test_wait_on_a_conversation_that_never_sent_polls_at_once(emulator):
    # after_send counts from this handle's last send: with none, nothing delays the first poll.
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as sending:
        sending.send_text("user1", "hi")
        with client.open_conversation(sending.id, token=sending.start_result["token"]) as reading:
            started = time.monotonic()
            assert texts(reading.wait(timeout=10, after_send=1.5)) == ["hi", "echo: hi"]
            assert time.monotonic() - started < 1, "the reply already there is returned at once"


def test_a_wait_beside_a_send_in_flight_does_not_take_that_send_for_a_reply(conversation):
    # The bot thinks for 1 s, so the user's own activity is readable while
    # the POST is still open: the handle must already count it as its own.
    sending = threading.Thread(target=lambda: conversation.send_text("user1", "slow:1"))
    sending.start()
    try:
        time.sleep(0.2)
        assert texts(conversation.wait(timeout=5, interval=0.1)) == ["echo: slow:1"]
    finally:
        sending.join()


def test_wait_with_include_own_returns_the_users_message_too(conversation):
    conversation.send_text("user1", "hi")
    assert texts(conversation.wait(timeout=5, include_own=True)) == ["hi", "echo: hi"]


def test_wait_by_default_ignores_every_user_the_conversation_sent_as(conversation):
    conversation.send_text("user1", "from one")
    conversation.send_text("user2", "from two")
    assert texts(conversation.wait(timeout=5)) == ["echo: from one", "echo: from two"]


def test_wait_with_a_user_id_counts_other_users_as_replies(conversation):
    conversation.send_text("user1", "hi")
    replies = conversation.wait(timeout=5, user_id="someone-else")
    assert [(sender(item), item["text"]) for item in replies] == [("user1", "hi"), ("echo-bot", "echo: hi")]


@pytest.mark.parametrize("arguments", [
    {"timeout": -1}, {"timeout": float("nan")}, {"timeout": float("inf")}, {"timeout": "1"},
    {"interval": 0.01}, {"after_send": -0.5}, {"user_id": "bad\nuser"}, {"user_id": "a\0b"},
    {"include_own": "yes"},
])
def test_wait_refuses_bad_arguments_with_nothing_sent(conversation, emulator, arguments):
    before = len(emulator.requests())
    with pytest.raises(directline.InvalidArgumentError):
        conversation.wait(**arguments)
    assert len(emulator.requests()) == before


# --- replies ------------------------------------------------------------------

def test_replies_yields_the_replies_to_several_sends_then_stops_when_idle(conversation):
    conversation.send_text("user1", "a")
    received: list[str] = []
    last_reply = time.monotonic()
    for reply in conversation.replies(timeout=0.6, interval=0.1):
        received.append(reply["text"])
        last_reply = time.monotonic()
        if len(received) < 3:
            conversation.send_text("user1", "abc"[len(received)])
    idle = time.monotonic() - last_reply
    assert received == ["echo: a", "echo: b", "echo: c"]
    assert 0.5 <= idle < 5, "it ends once its timeout passes with nothing new"


def test_replies_with_nothing_new_ends_after_its_timeout(conversation):
    started = time.monotonic()
    assert list(conversation.replies(timeout=0.5, interval=0.1)) == []
    assert 0.45 <= time.monotonic() - started < 5


def test_replies_polls_no_more_often_than_its_interval(emulator):
    # Polling is the same on both protocols: 3.0 only, to keep the suite fast.
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        assert list(conversation.replies(timeout=2.5, interval=1.0)) == []
    polls = [request for request in emulator.requests() if request["method"] == "GET"]
    # About one poll a second; the ~1 s slices of the C wait must not add a
    # second poll at every slice boundary (that would be 6 or more).
    assert 2 <= len(polls) <= 5


def test_replies_stays_responsive_to_ctrl_c(emulator):
    script = textwrap.dedent("""
        import sys
        import directline
        with directline.Client(sys.argv[1], secret=sys.argv[2]) as client:
            with client.start_conversation() as conversation:
                print("ready", flush=True)
                for _ in conversation.replies(timeout=None):
                    pass
    """)
    child = subprocess.Popen([sys.executable, "-c", script, emulator.url, SECRET], env=python_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        interrupted = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert time.monotonic() - interrupted < 5, "replies() calls the library in short slices"
    assert "KeyboardInterrupt" in stderr
    assert SECRET not in stderr


def test_replies_raises_what_the_service_answers(client):
    with client.open_conversation("no-such-conversation") as conversation:
        with pytest.raises(directline.NotFoundError):
            next(conversation.replies(timeout=2))


def test_replies_checks_its_arguments_at_once(conversation):
    with pytest.raises(directline.InvalidArgumentError):
        conversation.replies(timeout=-1)
    with pytest.raises(directline.InvalidArgumentError):
        conversation.replies(interval=float("nan"))


# --- saved state and resume ---------------------------------------------------

def test_state_holds_the_token_and_info_never_does(conversation):
    token = conversation.start_result["token"]
    state = conversation.state()
    assert set(state) == {"conversationId", "token", "watermark", "streamUrl", "tokenExpiresAt", "tokenLifetime"}
    assert state["conversationId"] == conversation.id
    assert state["token"] == token
    info = conversation.info()
    assert set(info) == {"conversationId", "protocol", "watermark", "streamUrl", "tokenExpiresAt",
                         "autoRefresh", "tokenRefreshError", "ended"}
    assert token not in json.dumps(info)
    assert info["tokenExpiresAt"] == state["tokenExpiresAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["tokenExpiresAt"])
    assert info["autoRefresh"] is True
    assert info["ended"] is False


def test_resume_continues_from_the_saved_watermark_without_losing_or_repeating(client, emulator):
    with client.start_conversation() as first:
        first.send_text("user1", "one")
        assert texts(first.wait(timeout=5)) == ["echo: one"]
        saved = json.loads(json.dumps(first.state()))  # as if stored and read back
        conversation_id, token = first.id, first.start_result["token"]

    with client.open_conversation(conversation_id, token=token) as other:
        other.send_text("user2", "two")
        other.send_text("user2", "three")

    before = len(emulator.requests())
    with client.resume(saved) as resumed:
        assert len(emulator.requests()) == before, "resume sends nothing"
        assert resumed.id == conversation_id
        assert resumed.watermark == "2"
        assert texts(resumed.wait(timeout=5)) == ["two", "echo: two", "three", "echo: three"]
        assert texts(resumed.wait(timeout=0.2, interval=0.1)) == []
    reads = [request for request in emulator.requests()[before:] if request["method"] == "GET"]
    assert reads[0]["query"] == "watermark=2"
    assert reads[0]["headers"]["authorization"] == f"Bearer {token}"


def test_resume_with_reconnect_on_3_0_asks_the_service_then_reads_from_the_watermark(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        with client.start_conversation() as first:
            first.send_text("user1", "one")
            first.wait(timeout=5)
            saved = first.state()
            first.send_text("user1", "two")

        before = len(emulator.requests())
        with client.resume(saved, reconnect=True) as resumed:
            reconnect = emulator.requests()[before]
            assert (reconnect["method"], reconnect["path"]) == (
                "GET", f"/v3/directline/conversations/{saved['conversationId']}")
            assert reconnect["query"] == "watermark=2"
            assert reconnect["status"] == 200
            assert resumed.info()["streamUrl"], "the stream URL the service answered is kept"
            assert texts(resumed.wait(timeout=5, include_own=True)) == ["two", "echo: two"]


def test_open_conversation_with_reconnect_on_3_0_sends_the_get(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        with client.start_conversation() as started:
            conversation_id, token = started.id, started.start_result["token"]
        before = len(emulator.requests())
        with client.open_conversation(conversation_id, token=token, reconnect=True) as opened:
            assert opened.info()["autoRefresh"] is True, "the expiry the service answered is known"
    (reconnect,) = emulator.requests()[before:]
    assert (reconnect["method"], reconnect["path"]) == ("GET", f"/v3/directline/conversations/{conversation_id}")


def test_reconnect_on_1_1_is_refused_with_nothing_sent(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation() as started:
            saved = started.state()
        before = len(emulator.requests())
        raises(directline.InvalidArgumentError, lambda: client.resume(saved, reconnect=True), saved["token"])
        raises(directline.InvalidArgumentError,
               lambda: client.open_conversation(saved["conversationId"], token=saved["token"], reconnect=True),
               saved["token"])
        assert len(emulator.requests()) == before


def test_resume_refuses_what_is_not_a_saved_state_with_nothing_sent(client, emulator):
    for bad in ({}, {"conversationId": "c", "nonsense": 1}, ["c"], "c"):
        with pytest.raises(directline.InvalidArgumentError):
            client.resume(bad)
    with pytest.raises(directline.InvalidArgumentError):
        client.resume({"conversationId": "c"}, reconnect="yes")
    assert emulator.requests() == []


def test_open_conversation_with_a_token_expiry_schedules_its_refresh(client, emulator):
    with client.open_conversation("c1", token="someToken", token_expires_at="2099-01-01T00:00:00Z") as opened:
        info = opened.info()
        assert info["tokenExpiresAt"] == "2099-01-01T00:00:00Z"
        assert info["autoRefresh"] is True
    with client.open_conversation("c2", token="someToken") as unknown:
        assert unknown.info()["tokenExpiresAt"] is None
        assert unknown.info()["autoRefresh"] is False
    with pytest.raises(directline.InvalidArgumentError):
        client.open_conversation("c3", token="someToken", token_expires_at="tomorrow")
    assert emulator.requests() == []


# --- automatic refresh --------------------------------------------------------

def converse_for(conversation, seconds: float) -> int:
    """Sends and waits for the echo about once a second for `seconds`; returns the rounds."""
    rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conversation.send_text("user1", f"round {rounds}")
        assert texts(conversation.wait(timeout=3, interval=0.2)) == [f"echo: round {rounds}"]
        rounds += 1
        time.sleep(0.7)
    return rounds


def test_a_two_second_token_is_refreshed_in_time_through_a_longer_conversation(emulator, protocol):
    emulator.configure(tokenLifetime=2)
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol,
                           retry={"max_attempts": 1}) as client:
        with client.start_conversation() as conversation:
            first_expiry = conversation.info()["tokenExpiresAt"]
            first_token = conversation.start_result["token"]
            assert converse_for(conversation, 5.0) >= 4
            info = conversation.info()
            assert info["tokenExpiresAt"] > first_expiry
            assert info["autoRefresh"] is True
            assert info["tokenRefreshError"] is None
            assert conversation.state()["token"] != first_token
    refreshes = requests_matching(emulator, REFRESH_PATH[protocol])
    assert len(refreshes) >= 3, "a 2 s token over 5 s needs several refreshes"
    assert all(request["status"] == 200 for request in refreshes)


def test_a_resumed_conversation_keeps_refreshing_its_short_lived_token(emulator, protocol):
    # 1.1 renewals do not say how long the new token lives: the handle must
    # know the lifetime from the saved state, not assume the default 1800 s.
    emulator.configure(tokenLifetime=2)
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol,
                           retry={"max_attempts": 1}) as client:
        with client.start_conversation() as started:
            saved = started.state()
        # Closed: only the resumed handle refreshes the token from now on.
        with client.resume(saved) as resumed:
            assert resumed.info()["autoRefresh"] is True
            converse_for(resumed, 3.5)
            assert resumed.info()["tokenRefreshError"] is None


# --- expired tokens -----------------------------------------------------------

def test_expired_tokens_raise_TokenExpiredError(emulator, protocol):
    emulator.configure(tokenLifetime=1)
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol,
                           retry={"max_attempts": 1}) as client:
        generated = client.generate_token()["token"]
        with client.start_conversation() as started:
            started.end("user1")  # stops the refresh, so the token lapses
            saved = started.state()
        time.sleep(1.3)
        # A client configured with a generated token that expired since.
        with directline.Client(emulator.url, token=generated, protocol=protocol,
                               retry={"max_attempts": 1}) as late:
            raises(directline.TokenExpiredError, late.start_conversation, generated)
            if protocol == "3.0":
                raises(directline.TokenExpiredError, lambda: late.refresh_token(generated), generated)
        # A saved state whose token expired, the conversation having ended.
        token = saved["token"]
        with client.resume(saved) as resumed:
            assert resumed.info()["autoRefresh"] is False, "an expired token is not scheduled"
            for call in (resumed.get_activities, lambda: resumed.wait(timeout=1),
                         lambda: resumed.send_text("user1", "too late")):
                error = raises(directline.TokenExpiredError, call, token)
                assert (error.http_status, error.service_code) == (403, "TokenExpired")
            raises(directline.TokenExpiredError, resumed.refresh, token)
        if protocol == "3.0":
            raises(directline.TokenExpiredError, lambda: client.resume(saved, reconnect=True), token)
            raises(directline.TokenExpiredError, lambda: client.refresh_token(token), token)


# --- generated tokens ---------------------------------------------------------

def test_a_generated_token_starts_the_conversation_and_talks_to_the_bot(emulator, protocol):
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client:
        generated = client.generate_token()
    token = generated["token"]
    if protocol == "3.0":
        assert set(generated) >= {"conversationId", "token", "expires_in"}
    else:
        assert generated == {"token": token}

    with directline.Client(emulator.url, token=token, protocol=protocol) as token_client:
        with token_client.start_conversation() as conversation:
            if protocol == "3.0":
                assert conversation.id == generated["conversationId"]
            assert conversation.start_result["token"] == token
            conversation.send_text("user1", "hello")
            assert texts(conversation.wait(timeout=5)) == ["echo: hello"]
            # Starting again with that token gives that token's conversation.
            with token_client.start_conversation() as again:
                assert again.id == conversation.id

    requests = emulator.requests()
    assert requests[0]["path"] == {"3.0": "/v3/directline/tokens/generate",
                                   "1.1": "/api/tokens/conversation"}[protocol]
    assert requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"
    assert all(request["headers"]["authorization"] == f"Bearer {token}" for request in requests[1:])


def test_generate_token_on_3_0_sends_the_user_and_trusted_origins(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        generated = client.generate_token(user_id="dl_ann", user_name="Ann",
                                          trusted_origins=("https://a.example", "https://b.example"))
    (request,) = emulator.requests()
    assert json.loads(request["body"]) == {"user": {"id": "dl_ann", "name": "Ann"},
                                           "trustedOrigins": ["https://a.example", "https://b.example"]}
    with directline.Client(emulator.url, token=generated["token"]) as token_client:
        with token_client.start_conversation() as conversation:
            conversation.send_text("dl_ann", "hi")
            assert texts(conversation.wait(timeout=5)) == ["echo: hi"]
            stored = emulator.conversation(conversation.id)["activities"][0]
            assert stored["from"] == {"id": "dl_ann", "name": "Ann"}, "the token carries the user"


def test_generate_token_refuses_a_single_string_of_origins(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        with pytest.raises(directline.InvalidArgumentError, match="trusted_origins"):
            client.generate_token(trusted_origins="https://a.example")
        with pytest.raises(directline.InvalidArgumentError):
            client.generate_token(trusted_origins=["https://a.example", 7])
        with pytest.raises(directline.InvalidArgumentError):
            client.generate_token(user_id="bad\nuser")
    assert emulator.requests() == []


def test_generate_token_on_1_1_with_a_user_or_origins_is_refused_with_nothing_sent(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        for arguments in ({"user_id": "dl_ann"}, {"user_name": "Ann"}, {"trusted_origins": ["https://a.example"]}):
            raises(directline.InvalidArgumentError, lambda arguments=arguments: client.generate_token(**arguments))
    assert emulator.requests() == []


def test_generate_token_with_a_token_instead_of_the_secret_is_ForbiddenError(emulator, protocol):
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client:
        token = client.generate_token()["token"]
    with directline.Client(emulator.url, token=token, protocol=protocol) as token_client:
        error = raises(directline.ForbiddenError, token_client.generate_token, token)
        assert error.http_status == 403


# --- refreshing by hand -------------------------------------------------------

def test_refresh_token_on_3_0_returns_a_new_token_that_works(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        generated = client.generate_token()
        refreshed = client.refresh_token(generated["token"])
    assert refreshed["token"] and refreshed["token"] != generated["token"]
    assert refreshed["conversationId"] == generated["conversationId"]
    assert refreshed["expires_in"] > 0
    refresh = emulator.requests()[-1]
    assert (refresh["method"], refresh["path"]) == ("POST", "/v3/directline/tokens/refresh")
    assert refresh["headers"]["authorization"] == f"Bearer {generated['token']}"

    with directline.Client(emulator.url, token=refreshed["token"]) as token_client:
        with token_client.start_conversation() as conversation:
            conversation.send_text("user1", "fresh")
            assert texts(conversation.wait(timeout=5)) == ["echo: fresh"]


def test_refresh_token_on_3_0_with_an_unknown_token_is_refused_by_the_service(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        raises(directline.ForbiddenError, lambda: client.refresh_token("no-such-token"), "no-such-token")
        raises(directline.ForbiddenError, lambda: client.refresh_token(SECRET))


def test_refresh_token_on_1_1_renews_a_conversations_token_and_the_conversation_uses_it(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation() as conversation:
            old = conversation.start_result["token"]
            refreshed = client.refresh_token(old)
            assert set(refreshed) == {"token"} and refreshed["token"] != old
            assert conversation.state()["token"] == refreshed["token"]
            conversation.send_text("user1", "after renewal")
            assert texts(conversation.wait(timeout=5)) == ["echo: after renewal"]
            # The handle now holds the new token: the old one is no longer one of its tokens.
            raises(directline.InvalidArgumentError, lambda: client.refresh_token(old), old)
            conversation_id = conversation.id
    (renew,) = requests_matching(emulator, REFRESH_PATH["1.1"])
    assert (renew["method"], renew["path"]) == ("GET", f"/api/tokens/{conversation_id}/renew")
    assert renew["headers"]["authorization"] == f"Bearer {old}"
    (send,) = [request for request in emulator.requests() if request["path"].endswith("/messages")
               and request["method"] == "POST"]
    assert send["headers"]["authorization"] == f"Bearer {refreshed['token']}"


def test_refresh_token_on_1_1_refuses_an_unknown_token_with_nothing_sent(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation():
            before = len(emulator.requests())
            raises(directline.InvalidArgumentError, lambda: client.refresh_token("no-such-token"), "no-such-token")
            raises(directline.InvalidArgumentError, lambda: client.refresh_token(""))
            raises(directline.InvalidArgumentError, lambda: client.refresh_token(SECRET))
            assert len(emulator.requests()) == before


def test_refresh_renews_the_conversations_token(conversation, protocol, emulator):
    old = conversation.start_result["token"]
    info = conversation.refresh()
    assert info["conversationId"] == conversation.id and info["autoRefresh"] is True
    new = conversation.state()["token"]
    assert new != old
    conversation.send_text("user1", "renewed")
    assert texts(conversation.wait(timeout=5)) == ["echo: renewed"]
    (refresh,) = requests_matching(emulator, REFRESH_PATH[protocol])
    assert refresh["headers"]["authorization"] == f"Bearer {old}"
    send = [request for request in emulator.requests() if request["method"] == "POST"][-1]
    assert send["headers"]["authorization"] == f"Bearer {new}"


def test_refresh_of_a_conversation_using_the_secret_is_refused_with_nothing_sent(client, emulator):
    with client.start_conversation() as started:
        conversation_id = started.id
    before = len(emulator.requests())
    with client.open_conversation(conversation_id) as opened:
        raises(directline.InvalidArgumentError, opened.refresh)
        assert opened.state()["token"] is None, "the secret is never handed out"
        assert opened.info()["autoRefresh"] is False
    assert len(emulator.requests()) == before


def test_1_1_renewal_falls_back_to_POST_when_GET_is_refused_with_405(emulator):
    emulator.fault(method="GET", path=r"/api/tokens/.*/renew", action="status", status=405)
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation() as conversation:
            old = conversation.start_result["token"]
            conversation.refresh()
            assert conversation.state()["token"] != old
    renewals = [(request["method"], request["status"])
                for request in requests_matching(emulator, REFRESH_PATH["1.1"])]
    assert renewals == [("GET", 405), ("POST", 200)]


# --- end ----------------------------------------------------------------------

def test_end_on_3_0_sends_endOfConversation_and_stops_the_refresh(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        with client.start_conversation() as conversation:
            assert conversation.info()["autoRefresh"] is True
            result = conversation.end("user1")
            assert set(result) == {"id", "clientActivityID"} and result["id"]
            info = conversation.info()
            assert info["ended"] is True
            assert info["autoRefresh"] is False
            stored = emulator.conversation(conversation.id)
    assert stored["ended"] is True
    (last,) = stored["activities"]
    assert last["type"] == "endOfConversation"
    assert last["from"]["id"] == "user1"
    assert last["id"] == result["id"]
    assert last["channelData"]["clientActivityID"] == result["clientActivityID"]


def test_end_on_1_1_sends_nothing_and_stops_the_refresh(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation() as conversation:
            before = len(emulator.requests())
            assert conversation.end("user1") == {}
            assert len(emulator.requests()) == before
            info = conversation.info()
            assert info["ended"] is True
            assert info["autoRefresh"] is False


def test_end_refuses_a_bad_user_id_with_nothing_sent(conversation, emulator):
    before = len(emulator.requests())
    for bad in ("", "a\0b", "bad\nuser"):
        with pytest.raises(directline.InvalidArgumentError):
            conversation.end(bad)
    assert len(emulator.requests()) == before
    assert conversation.info()["ended"] is False


# --- closing during a wait ----------------------------------------------------

def test_closing_a_conversation_cancels_a_wait_on_another_thread(client):
    conversation = client.start_conversation()
    thread, outcome = run_in_thread(lambda: conversation.wait(timeout=30))
    time.sleep(0.3)
    conversation.close()
    thread.join(15)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), directline.CancelledError), outcome
    assert outcome["error"].status == Status.ERR_CANCELLED
    assert outcome["seconds"] < 10, "the wait ended when the conversation was closed, not at its timeout"
    with pytest.raises(ValueError, match="closed Conversation"):
        conversation.wait(timeout=1)


def test_closing_a_conversation_ends_replies_on_another_thread(client):
    conversation = client.start_conversation()
    thread, outcome = run_in_thread(lambda: list(conversation.replies(timeout=None, interval=0.2)))
    time.sleep(0.5)
    conversation.close()
    thread.join(15)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), directline.CancelledError), outcome


def test_closing_lets_another_call_in_flight_finish_then_cancels_the_wait(client, emulator, protocol):
    emulator.fault(path=REFRESH_PATH[protocol].pattern, action="delay", seconds=1.0)
    conversation = client.start_conversation()
    handle = conversation._handle
    refreshing, refreshed = run_in_thread(conversation.refresh)
    waiting, waited = run_in_thread(lambda: conversation.wait(timeout=30, interval=0.1))
    time.sleep(0.3)
    conversation.close()
    # The handle stays alive for the refresh in flight, which completes normally...
    assert _native.lib.dl_conversation_info(handle, None) == Status.OK
    refreshing.join(15)
    assert isinstance(refreshed.get("result"), dict), refreshed
    # ...and once it has returned, the handle is freed, which ends the wait.
    waiting.join(15)
    assert not waiting.is_alive()
    assert isinstance(waited.get("error"), directline.CancelledError), waited
    assert waited["seconds"] < 10
    assert _native.lib.dl_conversation_info(handle, None) == Status.ERR_INVALID_HANDLE


def test_freeing_the_handle_makes_dl_conversation_wait_return_DL_ERR_CANCELLED(client):
    """The C contract underneath, without the binding's bookkeeping."""
    conversation = client.start_conversation()
    handle = conversation._handle
    outcome: dict[str, Any] = {}

    def wait() -> None:
        out = ctypes.c_void_p()
        started = time.monotonic()
        outcome["status"] = _native.lib.dl_conversation_wait(handle, b'{"timeoutMs": 30000}', ctypes.byref(out))
        outcome["seconds"] = time.monotonic() - started
        outcome["json"] = json.loads(_native.take_string(out) or "null")

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    # Take the handle from the binding so that it does not free it twice.
    conversation._handle = None
    conversation._closed = True
    assert _native.lib.dl_conversation_free(handle) == Status.OK
    thread.join(15)
    assert outcome["status"] == Status.ERR_CANCELLED
    assert outcome["json"]["error"]["name"] == "DL_ERR_CANCELLED"
    assert outcome["seconds"] < 10


@pytest.mark.parametrize("state", [
    {"conversationId": "abc", "token": "tok", "expires_in": 0},
    {"conversationId": "abc", "token": "tok", "tokenExpiresAt": "9999-12-31T23:59:59Z"},
    {"conversationId": "abc", "token": "tok", "tokenExpiresAt": "2001-01-01T00:00:00Z"},
])
def test_saved_state_always_reopens(emulator: Any, protocol: str, state: dict) -> None:
    """Found by the fuzzer: a state saved from an odd expiry must be accepted back."""
    import directline

    with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client:
        with client.resume(state) as first:
            saved = first.state()
        lifetime = saved["tokenLifetime"]
        assert lifetime is None or 1 <= lifetime <= 1 << 31
        with client.resume(saved) as second:
            assert second.state() == saved
