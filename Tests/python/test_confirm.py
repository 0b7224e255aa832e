"""Reconciling an unknown outcome: Conversation.confirm (dl_conversation_confirm)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import directline
from directline import _native
from support import SECRET


@pytest.fixture
def v3(emulator: Any) -> Any:
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        yield conversation


def failed_send(conversation: Any, text: str) -> directline.DirectLineError:
    with pytest.raises(directline.DirectLineError) as caught:
        conversation.send_text("user1", text)
    return caught.value


def test_a_502_after_the_bot_got_it_is_unknown_and_confirm_finds_it(v3: Any, emulator: Any) -> None:
    emulator.fault(method="POST", path="/activities$", count=1, action="deliver_then_fail", status=502)
    error = failed_send(v3, "did it arrive?")
    assert error.delivery == "unknown"
    correlation = error.detail["clientActivityID"]
    assert correlation.startswith("dlc-")
    confirmed = v3.confirm(correlation)
    assert confirmed["delivered"] is True and confirmed["clientActivityID"] == correlation
    stored = [item for item in emulator.conversation(v3.id)["activities"] if item["id"] == confirmed["id"]]
    assert stored and stored[0]["text"] == "did it arrive?"


def test_a_failure_before_the_service_stored_it_is_confirmed_missing(v3: Any, emulator: Any) -> None:
    emulator.fault(method="POST", path="/activities$", count=1, action="status", status=500)
    error = failed_send(v3, "lost")
    assert error.delivery == "unknown"
    assert v3.confirm(error.detail["clientActivityID"]) == {
        "delivered": False, "clientActivityID": error.detail["clientActivityID"]}
    # Safe to send again with the same id; now it is there, once.
    sent = v3.send_activity({"type": "message", "from": {"id": "user1"}, "text": "lost",
                             "channelData": {"clientActivityID": error.detail["clientActivityID"]}})
    assert v3.confirm(error.detail["clientActivityID"])["id"] == sent["id"]


def test_confirm_does_not_move_the_watermark_and_finds_old_activities(v3: Any) -> None:
    first = v3.send_text("user1", "early")
    v3.wait(timeout=5)
    before = v3.watermark
    assert v3.confirm(first["clientActivityID"])["delivered"] is True
    assert v3.watermark == before


def test_confirm_keeps_looking_until_its_timeout(v3: Any, emulator: Any) -> None:
    started = time.monotonic()
    assert v3.confirm("dlc-never-sent", timeout=1.2)["delivered"] is False
    assert time.monotonic() - started >= 1.0
    assert len([r for r in emulator.requests() if r["method"] == "GET"]) >= 2


def test_confirm_on_1_1_is_refused_with_nothing_sent(emulator: Any) -> None:
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation() as conversation:
            before = len(emulator.requests())
            with pytest.raises(directline.InvalidArgumentError):
                conversation.confirm("dlc-x")
            assert len(emulator.requests()) == before


@pytest.mark.parametrize("bad", ["", "a\nb", ".."])
def test_bad_ids_are_refused_with_nothing_sent(v3: Any, emulator: Any, bad: str) -> None:
    before = len(emulator.requests())
    with pytest.raises(directline.InvalidArgumentError):
        v3.confirm(bad)
    assert len(emulator.requests()) == before


def test_an_upload_failure_carries_its_activity_id_too(v3: Any, emulator: Any) -> None:
    emulator.fault(method="POST", path="/upload$", count=1, action="deliver_then_fail", status=502)
    with pytest.raises(directline.BotError) as caught:
        v3.upload("user1", [{"data": b"x", "filename": "x.txt", "content_type": "text/plain"}],
                  activity={"text": "with a file"})
    assert v3.confirm(caught.value.detail["clientActivityID"])["delivered"] is True


@pytest.mark.parametrize("options", [b'{"timeout": 1}', b'{"timeoutMs": -1}', b'{"timeoutMs": 3600001}',
                                     b'{"timeoutMs": "5"}', b'[]', b'{'])
def test_bad_options_are_refused_with_nothing_sent(v3: Any, emulator: Any, options: bytes) -> None:
    before = len(emulator.requests())
    with v3._borrow() as handle:
        with pytest.raises(directline.InvalidArgumentError):
            _native.call(_native.lib.dl_conversation_confirm, handle, b"dlc-x", options)
    assert len(emulator.requests()) == before


def test_a_null_or_freed_handle_is_an_invalid_handle(emulator: Any) -> None:
    with pytest.raises(directline.InvalidHandleError):
        _native.call(_native.lib.dl_conversation_confirm, None, b"dlc-x", None)
    with directline.Client(emulator.url, secret=SECRET) as client:
        conversation = client.start_conversation()
        with conversation._borrow() as handle:
            stale = handle
        conversation.close()
    with pytest.raises(directline.InvalidHandleError):
        _native.call(_native.lib.dl_conversation_confirm, stale, b"dlc-x", None)


@pytest.mark.slow
def test_a_look_that_outlives_the_token_goes_on_with_the_refreshed_one(emulator: Any) -> None:
    """Each page of a long look carries the handle's token of the moment: a
    look that pages past its first token's expiry, while the refresher has
    replaced it, still reads to the end (it carried the first token to the
    end, and failed with TokenExpired)."""
    emulator.configure(tokenLifetime=3, pageSize=1)
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        sent = [conversation.send_text("user1", f"message {number}") for number in range(4)]
        # Eight items, a page each, 0.6 s a page: the look takes about 5 s,
        # and the token it starts with expires after 3.
        emulator.fault(method="GET", path=r"/activities$", action="delay", seconds=0.6, count=-1)
        started = time.monotonic()
        confirmed = conversation.confirm(sent[-1]["clientActivityID"])
        assert time.monotonic() - started > 3
    assert confirmed["delivered"] is True
