"""Conversations through the Python binding, against the emulator, on both protocols."""

from __future__ import annotations

import gc
import threading
import time

import pytest

import directline
from directline import _native
from support import SECRET, items, sender, text_activity


def test_send_text_then_get_activities_returns_the_message_and_the_echo(conversation, protocol):
    assert conversation.watermark is None
    conversation.send_text("user1", "hello")

    first = conversation.get_activities()
    assert [(sender(item), item["text"]) for item in items(first)] == [
        ("user1", "hello"), ("echo-bot", "echo: hello")]
    assert first["watermark"] == "2"
    assert conversation.watermark == "2"

    assert items(conversation.get_activities()) == []
    assert conversation.watermark == "2"

    conversation.send_text("user1", "again")
    second = conversation.get_activities()
    assert [item["text"] for item in items(second)] == ["again", "echo: again"]
    assert conversation.watermark == "4"


def test_send_activity_on_3_0_returns_the_id_and_the_clientActivityID_it_stored(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        result = conversation.send_activity(text_activity("3.0", "hi"))
        assert set(result) == {"id", "clientActivityID"}
        assert result["clientActivityID"]

        stored = emulator.conversation(conversation.id)["activities"]
        mine = [activity for activity in stored if activity["id"] == result["id"]]
        assert len(mine) == 1
        assert mine[0]["channelData"]["clientActivityID"] == result["clientActivityID"]


def test_send_activity_on_3_0_keeps_the_callers_own_clientActivityID(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        activity = {**text_activity("3.0", "hi"), "channelData": {"clientActivityID": "mine-1", "k": 1}}
        result = conversation.send_activity(activity)
        assert result["clientActivityID"] == "mine-1"
        stored = emulator.conversation(conversation.id)["activities"][0]
        assert stored["channelData"] == {"clientActivityID": "mine-1", "k": 1}


def test_send_text_on_3_0_also_returns_a_clientActivityID(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        result = conversation.send_text("user1", "hi")
        assert set(result) == {"id", "clientActivityID"}


def test_send_activity_on_1_1_returns_an_empty_object(emulator):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with client.start_conversation() as conversation:
            assert conversation.send_activity(text_activity("1.1", "hi")) == {}
            assert conversation.send_text("user1", "hi") == {}
            assert [m["text"] for m in emulator.conversation(conversation.id)["messages"]] == [
                "hi", "echo: hi", "hi", "echo: hi"]


def test_start_result_and_info(conversation, protocol, emulator):
    started = conversation.start_result
    assert started["conversationId"] == conversation.id
    assert started["token"]
    info = conversation.info()
    assert info["conversationId"] == conversation.id
    assert info["protocol"] == protocol
    assert info["watermark"] is None
    assert started["token"] not in repr(info)
    assert started["token"] not in repr(conversation)
    assert [request["path"] for request in emulator.requests()] == [
        "/v3/directline/conversations" if protocol == "3.0" else "/api/conversations"]


def test_open_conversation_with_the_id_and_token_of_a_started_one(client, protocol, emulator):
    with client.start_conversation() as started:
        started.send_text("user1", "from the first handle")
        conversation_id, token = started.id, started.start_result["token"]
        with client.open_conversation(started.id, token=token) as opened:
            assert opened.start_result is None
            assert opened.id == started.id
            opened.send_text("user1", "from the second handle")
            assert [item["text"] for item in items(opened.get_activities())] == [
                "from the first handle", "echo: from the first handle",
                "from the second handle", "echo: from the second handle"]
    sends = [r for r in emulator.requests() if r["method"] == "POST" and conversation_id in r["path"]]
    assert [r["headers"]["authorization"] for r in sends] == [f"Bearer {token}"] * 2


def test_open_conversation_resumes_from_a_watermark(client):
    with client.start_conversation() as started:
        started.send_text("user1", "old")
        started.get_activities()
        started.send_text("user1", "new")
        with client.open_conversation(started.id, token=started.start_result["token"],
                                      watermark=started.watermark) as resumed:
            assert [item["text"] for item in items(resumed.get_activities())] == ["new", "echo: new"]


def test_open_conversation_sends_nothing(client, emulator):
    with client.open_conversation("someConversation", token="someToken", watermark="7",
                                  stream_url="wss://example.invalid/stream") as opened:
        assert opened.info()["watermark"] == "7"
        assert opened.id == "someConversation"
    assert emulator.requests() == []


def test_start_conversation_with_a_user_on_3_0(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client:
        with client.start_conversation(user_id="dl_ann", user_name="Ann") as conversation:
            conversation.send_text("someone-else", "hi")
            activities = conversation.get_activities()["activities"]
    assert emulator.requests()[0]["body"] == '{"user":{"id":"dl_ann","name":"Ann"}}'
    assert activities[0]["from"]["id"] == "dl_ann", "the token's user overrides from.id"


def test_a_null_watermark_never_overwrites_the_stored_one(conversation, emulator):
    conversation.send_text("user1", "one")
    conversation.get_activities()
    assert conversation.watermark == "2"
    emulator.configure(nullWatermark=True)
    result = conversation.get_activities()
    assert result["watermark"] is None
    assert conversation.watermark == "2"


def test_every_request_of_a_client_reuses_one_connection(conversation, emulator):
    for number in range(5):
        conversation.send_text("user1", f"message {number}")
    conversation.get_activities()
    requests = emulator.requests()
    assert len(requests) == 7
    assert len({request["connection"] for request in requests}) == 1


def test_a_conversation_works_from_many_threads_at_once(conversation):
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            for number in range(5):
                conversation.send_text(f"user{worker}", f"{worker}-{number}")
                conversation.info()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    texts = read_all(conversation)
    assert len(texts) == 80
    assert sorted(t for t in texts if not t.startswith("echo: ")) == sorted(
        f"{worker}-{number}" for worker in range(8) for number in range(5))


def read_all(conversation) -> list[str]:
    """Every text after the watermark, paging until an empty page."""
    texts: list[str] = []
    while page := items(conversation.get_activities()):
        texts += [item["text"] for item in page]
    return texts


def test_get_activities_pages_until_empty(conversation, emulator):
    for number in range(30):
        conversation.send_text("user1", str(number))
    sizes = []
    while page := items(conversation.get_activities()):
        sizes.append(len(page))
    assert sizes == [50, 10]
    assert conversation.watermark == "60"


def test_closing_while_other_threads_call_never_passes_a_freed_handle(client):
    conversation = client.start_conversation()
    outcomes: list[str] = []
    started = threading.Barrier(5)

    def read() -> None:
        started.wait()
        while True:
            try:
                conversation.info()
            except ValueError:
                outcomes.append("closed")
                return
            except BaseException as error:  # anything else is a bug
                outcomes.append(repr(error))
                return

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    conversation.close()
    for thread in threads:
        thread.join()
    assert outcomes == ["closed"] * 4


def test_close_during_a_call_frees_the_handle_when_the_call_returns(client):
    conversation = client.start_conversation()
    handle = conversation._handle
    outcome: list[object] = []
    sender_thread = threading.Thread(target=lambda: outcome.append(conversation.send_text("user1", "slow:0.5")))
    sender_thread.start()
    time.sleep(0.2)
    conversation.close()
    assert conversation.closed
    assert directline._native.lib.dl_conversation_info(handle, None) == directline.Status.OK
    sender_thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], dict), "the call in flight completes normally"
    assert directline._native.lib.dl_conversation_info(handle, None) == directline.Status.ERR_INVALID_HANDLE


class TestClosing:
    def test_close_is_idempotent_and_closed_objects_raise_ValueError(self, client):
        conversation = client.start_conversation()
        assert not conversation.closed
        conversation.close()
        conversation.close()
        assert conversation.closed
        assert "closed" in repr(conversation)
        for use in (lambda: conversation.send_text("user1", "hi"),
                    lambda: conversation.send_activity({"type": "message"}),
                    conversation.get_activities, conversation.info,
                    lambda: conversation.id, lambda: conversation.watermark):
            with pytest.raises(ValueError, match="closed Conversation"):
                use()

        client.close()
        client.close()
        assert client.closed
        with pytest.raises(ValueError, match="closed Client"):
            client.start_conversation()
        with pytest.raises(ValueError, match="closed Client"):
            client.open_conversation("c")

    def test_context_managers_close(self, emulator, protocol):
        with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client:
            with client.start_conversation() as conversation:
                pass
            assert conversation.closed
        assert client.closed

    def test_a_conversation_outlives_its_closed_client(self, emulator, protocol):
        client = directline.Client(emulator.url, secret=SECRET, protocol=protocol)
        with client.start_conversation() as conversation:
            client.close()
            assert conversation.client is client
            conversation.send_text("user1", "after close")
            assert [item["text"] for item in items(conversation.get_activities())] == [
                "after close", "echo: after close"]

    def test_an_unclosed_object_is_freed_when_collected(self, emulator):
        import gc

        client = directline.Client(emulator.url, secret=SECRET)
        conversation = client.open_conversation("c")
        handle = conversation._handle
        del conversation, client
        gc.collect()
        assert directline._native.lib.dl_conversation_info(handle, None) == directline.Status.ERR_INVALID_HANDLE


def test_a_conversation_finalised_inside_a_library_callback_is_still_freed(client):
    doomed = client.start_conversation()
    handle = doomed._handle
    holder = [doomed]
    holder.append(holder)  # a cycle: only the garbage collector frees it
    del doomed, holder

    def progress(done: int, total: int) -> None:
        gc.collect()  # finalises the conversation on this thread, inside the library's call

    with client.start_conversation() as conversation:
        conversation.upload_bytes("user1", b"x" * 100_000, filename="a.bin", progress=progress)
    assert _native.lib.dl_conversation_info(handle, None) == directline.Status.ERR_INVALID_HANDLE
