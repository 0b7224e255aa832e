"""Delivery is never "not_sent" once the request may have reached the service,
and a request is sent again only when it provably was not processed.

These are the hostile audit's delivery cases: a gateway's bare 503 after it
forwarded a POST, 4xx refusals, an answer with a header over libcurl's
limit, and a connect that times out.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import directline
from directline import Status
from support import SECRET

SEND_PATH = r"/(activities|messages)$"


def posts(emulator) -> list[dict]:
    return [request for request in emulator.requests() if request["method"] == "POST"]


def stored_texts(emulator, conversation_id: str) -> list[str]:
    stored = emulator.conversation(conversation_id)
    return [item.get("text") for item in stored.get("activities", stored.get("messages", []))]


@pytest.fixture
def patient(emulator, protocol) -> Iterator[directline.Client]:
    """A client that retries what it may (4 attempts, no waiting)."""
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol,
                           retry={"max_attempts": 4, "base_delay_ms": 0, "max_delay_ms": 0}) as made:
        yield made


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateways_bare_5xx_after_forwarding_is_unknown_and_never_resent(patient, emulator, status):
    with patient.start_conversation() as conversation:
        emulator.fault(method="POST", path=SEND_PATH, action="deliver_then_fail", status=status, bare=True)
        with pytest.raises(directline.DirectLineError) as caught:
            conversation.send_text("user1", "once")
        assert stored_texts(emulator, conversation.id).count("once") == 1
    assert caught.value.delivery == "unknown"
    assert caught.value.attempts == 1
    assert len(posts(emulator)) == 2  # the start and the one send


def test_the_services_own_503_is_a_refusal_and_is_tried_again(patient, emulator):
    with patient.start_conversation() as conversation:
        emulator.fault(method="POST", path=SEND_PATH, action="status", status=503, count=2)
        conversation.send_text("user1", "after two refusals")
        assert stored_texts(emulator, conversation.id).count("after two refusals") == 1
    assert len(posts(emulator)) == 1 + 3


def test_a_bare_503_on_a_get_is_still_tried_again(patient, emulator):
    with patient.start_conversation() as conversation:
        emulator.fault(method="GET", action="status", status=503, bare=True)
        conversation.get_activities()


@pytest.mark.parametrize("status", [405, 406, 410, 411, 415, 422, 451])
def test_every_4xx_but_408_is_a_refusal(conversation, emulator, status):
    emulator.fault(method="POST", path=SEND_PATH, action="status", status=status)
    with pytest.raises(directline.HTTPError) as caught:
        conversation.send_text("user1", "refused")
    assert caught.value.status == Status.ERR_HTTP
    assert caught.value.http_status == status
    assert caught.value.delivery == "not_sent"


def test_a_408_may_have_been_seen(conversation, emulator):
    emulator.fault(method="POST", path=SEND_PATH, action="status", status=408)
    with pytest.raises(directline.HTTPError) as caught:
        conversation.send_text("user1", "maybe")
    assert caught.value.delivery == "unknown"


def test_a_delivered_send_answered_with_a_huge_header_is_unknown_not_a_bug(conversation, emulator):
    emulator.fault(method="POST", path=SEND_PATH, action="huge_header")
    with pytest.raises(directline.DirectLineError) as caught:
        conversation.send_text("user1", "delivered")
    assert caught.value.status == Status.ERR_PROTOCOL
    assert caught.value.delivery == "unknown"
    assert stored_texts(emulator, conversation.id).count("delivered") == 1


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, so
    a connect there times out (nothing is ever sent)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    queued = []
    try:
        for _ in range(8):
            waiting = socket.socket()
            waiting.setblocking(False)
            waiting.connect_ex(listener.getsockname())
            queued.append(waiting)
        yield listener.getsockname()[1]
    finally:
        for waiting in queued:
            waiting.close()
        listener.close()


def test_a_connect_timeout_is_tried_again_like_a_refused_connection(unanswered_port):
    with directline.Client(f"http://127.0.0.1:{unanswered_port}", secret=SECRET, connect_timeout_ms=200,
                           retry={"max_attempts": 3, "base_delay_ms": 0, "max_delay_ms": 0}) as client:
        with pytest.raises(directline.DirectLineTimeoutError) as caught:
            client.start_conversation()
    assert caught.value.delivery == "not_sent"
    assert caught.value.attempts == 3
