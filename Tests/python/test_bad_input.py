"""Bad input raises a clear error and puts nothing on the wire."""

from __future__ import annotations

import pytest

import directline
from support import SECRET, text_activity

LIMIT = 262_144


@pytest.fixture
def quiet(emulator):
    """Asserts that the test body sends no request at all."""
    before = len(emulator.requests())
    yield
    assert len(emulator.requests()) == before, "bad input must send nothing"


def test_an_unknown_keyword_is_a_TypeError_naming_it(emulator, quiet):
    with pytest.raises(TypeError, match="'timout_ms'"):
        directline.Client(emulator.url, secret=SECRET, timout_ms=5)


@pytest.mark.parametrize("config", [
    {"secret": SECRET, "timeoutMS": 5},
    {"secret": SECRET, "retry": {"attempts": 2}},
    {"secret": SECRET, "protocol": 3},
    {},
    {"secret": SECRET, "token": "t"},
])
def test_from_config_refuses_bad_configs(emulator, quiet, config):
    with pytest.raises(directline.InvalidArgumentError) as caught:
        directline.Client.from_config({"endpoint": emulator.url, **config})
    assert caught.value.status == directline.Status.ERR_INVALID_ARGUMENT
    assert caught.value.delivery == "not_sent"


def test_from_config_passes_the_dict_verbatim(emulator):
    with directline.Client.from_config({"endpoint": emulator.url, "secret": SECRET, "protocol": "1.1",
                                        "retry": {"maxAttempts": 1}, "timeoutMs": 5000}) as client:
        with client.start_conversation() as conversation:
            assert conversation.info()["protocol"] == "1.1"


def test_options_are_converted_to_the_C_spelling(emulator):
    options = dict(timeout_ms=5000, connect_timeout_ms=2000, retry={"max_attempts": 2, "baseDelayMs": 1},
                   user_agent="binding-test/1", ca_file=None, proxy=None, insecure_skip_tls_verify=False,
                   allow_insecure_http=False, max_upload_bytes=1024)
    with directline.Client(emulator.url, secret=SECRET, **options) as client:
        client.start_conversation().close()
    assert emulator.requests()[0]["headers"]["user-agent"] == "binding-test/1"


def test_a_plain_http_endpoint_that_is_not_loopback_is_refused(quiet):
    with pytest.raises(directline.InvalidArgumentError, match="allowInsecureHttp"):
        directline.Client("http://example.com", secret=SECRET)


@pytest.mark.parametrize("activity", [
    [{"type": "message", "from": {"id": "user1"}, "text": "a list"}],
    "a string",
    None,
    42,
])
def test_an_activity_that_is_not_an_object_is_refused(conversation, quiet, activity):
    with pytest.raises(directline.InvalidArgumentError):
        conversation.send_activity(activity)


@pytest.mark.parametrize("activity", [
    {"from": {"id": "user1"}, "text": "no type"},
    {"type": 7, "from": {"id": "user1"}},
    {"type": "message", "text": "no from"},
    {"type": "message", "from": "user1"},
])
def test_a_3_0_activity_of_the_wrong_shape_is_refused(emulator, quiet, activity):
    with directline.Client(emulator.url, secret=SECRET) as client:
        conversation = client.open_conversation("c")
        with pytest.raises(directline.InvalidArgumentError):
            conversation.send_activity(activity)


@pytest.mark.parametrize("correlation", ["", ".", "..", "a\nb", "tab\there", "\u0085", "x" * 1025])
@pytest.mark.parametrize("carrier", ["send", "multipart"])
def test_a_callers_own_client_activity_id_must_follow_the_id_rules(emulator, quiet, correlation, carrier):
    # An id confirm() refuses to look up must not leave: the caller could
    # never reconcile the send.
    activity = {"type": "message", "from": {"id": "user1"}, "text": "hi",
                "channelData": {"clientActivityID": correlation}}
    with directline.Client(emulator.url, secret=SECRET) as client:
        conversation = client.open_conversation("c")
        with pytest.raises(directline.InvalidArgumentError, match="clientActivityID"):
            if carrier == "send":
                conversation.send_activity(activity)
            else:
                conversation.upload("user1", [{"data": b"x", "filename": "a.txt"}], activity=activity)
    assert emulator.requests() == []


@pytest.mark.parametrize("message", [
    {"from": {"id": "user1"}, "text": "from must be a string"},
    {"from": 7, "text": "hi"},
])
def test_a_1_1_message_whose_from_is_not_a_string_is_refused(emulator, quiet, message):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        conversation = client.open_conversation("c")
        with pytest.raises(directline.InvalidArgumentError):
            conversation.send_activity(message)


def test_an_activity_that_is_not_JSON_serializable_is_refused(conversation, quiet):
    with pytest.raises(directline.InvalidArgumentError, match="JSON"):
        conversation.send_activity({"type": "message", "from": {"id": "u"}, "value": {1, 2}})
    with pytest.raises(directline.InvalidArgumentError, match="JSON"):
        conversation.send_activity({"type": "message", "from": {"id": "u"}, "value": float("nan")})


@pytest.mark.parametrize("user_id, text", [
    (None, "hi"), ("user1", None), ("", "hi"), ("..", "hi"), ("user\0x", "hi"), ("user1", "a\0b"),
    ("user1", "\ud800"), (b"user1", "hi"),
])
def test_send_text_refuses_missing_and_unrepresentable_strings(conversation, quiet, user_id, text):
    with pytest.raises(directline.InvalidArgumentError) as caught:
        conversation.send_text(user_id, text)
    assert isinstance(caught.value, ValueError)
    assert caught.value.status == directline.Status.ERR_INVALID_ARGUMENT


def test_a_NUL_in_a_secret_is_refused_without_echoing_it(emulator, quiet):
    with pytest.raises(directline.InvalidArgumentError) as caught:
        directline.Client(emulator.url, secret="abc\0def")
    assert "abc" not in str(caught.value) and "def" not in str(caught.value)


@pytest.mark.parametrize("conversation_id", [None, "", ".", "..", "a\nb", "x" * 1025])
def test_open_conversation_refuses_unsafe_ids(client, quiet, conversation_id):
    with pytest.raises(directline.InvalidArgumentError):
        client.open_conversation(conversation_id)


def test_a_user_on_a_1_1_start_is_refused(emulator, quiet):
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client:
        with pytest.raises(directline.InvalidArgumentError):
            client.start_conversation(user_id="user1")


def test_an_unsafe_user_id_on_start_is_refused(emulator, quiet):
    with directline.Client(emulator.url, secret=SECRET) as client:
        with pytest.raises(directline.InvalidArgumentError):
            client.start_conversation(user_id="a\r\nb")


def test_an_activity_over_262144_bytes_is_refused_before_sending(conversation, protocol, quiet):
    activity = text_activity(protocol, "x" * LIMIT)
    with pytest.raises(directline.TooLargeError) as caught:
        conversation.send_activity(activity)
    assert caught.value.status == directline.Status.ERR_TOO_LARGE
    assert caught.value.delivery == "not_sent"
    with pytest.raises(directline.TooLargeError):
        conversation.send_text("user1", "x" * LIMIT)


def test_an_activity_just_under_the_limit_is_sent(conversation, protocol, emulator):
    conversation.send_activity(text_activity(protocol, "x" * (LIMIT - 1024)))
    assert emulator.requests()[-1]["bodyLength"] <= LIMIT
