"""The C ABI called directly through ctypes: NULLs, freed, forged and wrong-kind
handles get exact statuses and never crash; the header and the library agree."""

from __future__ import annotations

import ctypes
import json
import re
from ctypes import byref, c_void_p
from typing import Any, Optional

import pytest

from directline import Status, _native
from directline._native import lib
from support import REPO_ROOT, SECRET

HEADER = (REPO_ROOT / "include" / "directline.h").read_text()
OK, INVALID_ARGUMENT, INVALID_HANDLE = Status.OK, Status.ERR_INVALID_ARGUMENT, Status.ERR_INVALID_HANDLE
SENTINEL = 0x1  # never a valid string: proves the library wrote the slot


def raw(function: Any, *args: Any) -> tuple[int, Optional[dict]]:
    """Calls an operation with a pre-filled out_json slot; returns (status, parsed JSON)."""
    out = c_void_p(SENTINEL)
    status = function(*args, byref(out))
    assert out.value != SENTINEL, "out_json was not written"
    text = _native.take_string(out)
    return status, json.loads(text) if text else None


def assert_error(result: tuple[int, Optional[dict]], status: Status) -> dict:
    code, document = result
    assert code == status
    assert document is not None
    error = document["error"]
    assert error["status"] == status
    assert error["name"] == status.c_name
    assert error["message"]
    return error


def new_client(url: str, protocol: str = "3.0") -> c_void_p:
    handle = c_void_p()
    config = json.dumps({"endpoint": url, "secret": SECRET, "protocol": protocol}).encode()
    assert lib.dl_client_new(config, byref(handle), None) == OK
    assert handle.value
    return handle


def open_conversation(client: c_void_p, conversation_id: str = "conv1") -> c_void_p:
    handle = c_void_p()
    state = json.dumps({"conversationId": conversation_id}).encode()
    assert lib.dl_conversation_open(client, state, byref(handle), None) == OK
    assert handle.value
    return handle


@pytest.fixture
def handles(emulator):
    """A client and a conversation opened on it (nothing sent), freed afterwards."""
    client = new_client(emulator.url)
    conversation = open_conversation(client)
    yield client, conversation
    lib.dl_conversation_free(conversation)
    lib.dl_client_free(client)
    assert emulator.requests() == [], "none of these calls may send anything"


def test_status_enum_matches_the_header_and_dl_status_name():
    declared = {name: int(value) for name, value in re.findall(r"\b(DL_(?:OK|ERR_\w+)) = (\d+),", HEADER)}
    assert declared == {status.c_name: int(status) for status in Status}
    for status in Status:
        assert lib.dl_status_name(status) == status.c_name.encode()


@pytest.mark.parametrize("unknown", [23, -1, 1000, 2**31 - 1, -(2**31)])
def test_dl_status_name_of_an_unknown_code_is_DL_ERR_UNKNOWN(unknown):
    assert lib.dl_status_name(unknown) == b"DL_ERR_UNKNOWN"


def test_version_function_number_and_header_agree():
    number = int(re.search(r"#define DL_VERSION_NUMBER (\d+)", HEADER).group(1))
    string = re.search(r'#define DL_VERSION_STRING "([^"]+)"', HEADER).group(1)
    assert lib.dl_version_number() == number
    assert lib.dl_version() == string.encode()
    major, minor, patch = (int(part) for part in string.split("."))
    assert number == major * 10000 + minor * 100 + patch


def test_dl_string_free_of_NULL_is_a_no_op():
    lib.dl_string_free(None)


def test_dl_client_new_refuses_NULL_config():
    handle = c_void_p(SENTINEL)
    error = assert_error(raw(lib.dl_client_new, None, byref(handle)), INVALID_ARGUMENT)
    assert handle.value is None
    assert error["delivery"] == "not_sent"


def test_dl_client_new_refuses_NULL_out_client():
    config = json.dumps({"secret": SECRET}).encode()
    assert_error(raw(lib.dl_client_new, config, None), INVALID_ARGUMENT)


@pytest.mark.parametrize("config", [b"", b"not json", b"[]", b'"secret"', b"{", b'{"secret": 1}',
                                    b'{"secret": "s", "token": "t"}', b"{}",
                                    b'{"secret": "s", "protocol": "2.0"}',
                                    b'{"secret": "s", "endpoint": "http://example.com"}',
                                    b'{"secret": "s", "retry": {"maxAttempts": 0}}',
                                    b'{"secret": "bad\\r\\nX-Injected: 1"}',
                                    b'{"secret": "s", "timeoutMS": 5}',
                                    b'{"secret": "\xff\xfe"}'])
def test_dl_client_new_refuses_bad_config(config):
    handle = c_void_p(SENTINEL)
    assert_error(raw(lib.dl_client_new, config, byref(handle)), INVALID_ARGUMENT)
    assert handle.value is None


def test_dl_client_new_with_NULL_out_json_drops_the_result():
    handle = c_void_p()
    assert lib.dl_client_new(json.dumps({"secret": SECRET}).encode(), byref(handle), None) == OK
    assert lib.dl_client_free(handle) == OK


def test_successful_calls_write_their_result_to_out_json(handles):
    client, conversation = handles
    made = c_void_p()
    assert raw(lib.dl_client_new, json.dumps({"secret": SECRET}).encode(), byref(made)) == (OK, {})
    assert lib.dl_client_free(made) == OK
    status, info = raw(lib.dl_conversation_info, conversation)
    assert status == OK
    assert info["conversationId"] == "conv1"
    assert lib.dl_conversation_info(conversation, None) == OK


def test_free_of_NULL_is_a_no_op_returning_OK():
    assert lib.dl_client_free(None) == OK
    assert lib.dl_conversation_free(None) == OK


@pytest.mark.parametrize("forged", [0x1, 0x1234, 0xDEADBEEF, 2**63 - 1, 2**64 - 8])
def test_forged_handles_are_refused(forged):
    handle = c_void_p(forged)
    assert lib.dl_client_free(handle) == INVALID_HANDLE
    assert lib.dl_conversation_free(handle) == INVALID_HANDLE
    assert_error(raw(lib.dl_conversation_info, handle), INVALID_HANDLE)
    assert_error(raw(lib.dl_get_activities, handle), INVALID_HANDLE)
    assert_error(raw(lib.dl_send_text, handle, b"user1", b"hi"), INVALID_HANDLE)
    assert_error(raw(lib.dl_conversation_start, handle, None, byref(c_void_p())), INVALID_HANDLE)


def test_NULL_handles_are_refused_with_INVALID_HANDLE():
    assert_error(raw(lib.dl_conversation_start, None, None, byref(c_void_p())), INVALID_HANDLE)
    assert_error(raw(lib.dl_conversation_open, None, b'{"conversationId": "c"}', byref(c_void_p())),
                 INVALID_HANDLE)
    assert_error(raw(lib.dl_conversation_info, None), INVALID_HANDLE)
    assert_error(raw(lib.dl_send_activity, None, b'{"type": "message", "from": {"id": "u"}}'),
                 INVALID_HANDLE)
    assert_error(raw(lib.dl_send_text, None, b"user1", b"hi"), INVALID_HANDLE)
    assert_error(raw(lib.dl_get_activities, None), INVALID_HANDLE)


def test_NULL_arguments_are_refused_with_INVALID_ARGUMENT(handles):
    client, conversation = handles
    out_conversation = c_void_p(SENTINEL)
    assert_error(raw(lib.dl_conversation_start, client, None, None), INVALID_ARGUMENT)
    assert_error(raw(lib.dl_conversation_open, client, None, byref(out_conversation)), INVALID_ARGUMENT)
    assert out_conversation.value is None
    assert_error(raw(lib.dl_conversation_open, client, b'{"conversationId": "c"}', None),
                 INVALID_ARGUMENT)
    assert_error(raw(lib.dl_send_activity, conversation, None), INVALID_ARGUMENT)
    assert_error(raw(lib.dl_send_text, conversation, None, b"hi"), INVALID_ARGUMENT)
    assert_error(raw(lib.dl_send_text, conversation, b"user1", None), INVALID_ARGUMENT)


@pytest.mark.parametrize("user_id, text", [(b"\xff", b"hi"), (b"user1", b"\xc3\x28"),
                                           (b"user1", b"\xed\xa0\x80"), (b"", b"hi"),
                                           (b"..", b"hi"), (b"a\x01b", b"hi")])
def test_dl_send_text_refuses_invalid_UTF8_and_unsafe_ids(handles, user_id, text):
    _, conversation = handles
    assert_error(raw(lib.dl_send_text, conversation, user_id, text), INVALID_ARGUMENT)


def test_a_freed_conversation_handle_is_refused_and_a_second_free_too(emulator):
    client = new_client(emulator.url)
    conversation = open_conversation(client)
    assert lib.dl_conversation_free(conversation) == OK
    assert lib.dl_conversation_free(conversation) == INVALID_HANDLE
    assert_error(raw(lib.dl_conversation_info, conversation), INVALID_HANDLE)
    assert_error(raw(lib.dl_get_activities, conversation), INVALID_HANDLE)
    assert_error(raw(lib.dl_send_text, conversation, b"user1", b"hi"), INVALID_HANDLE)
    assert_error(raw(lib.dl_send_activity, conversation, b'{"type": "message", "from": {"id": "u"}}'),
                 INVALID_HANDLE)
    assert lib.dl_client_free(client) == OK
    assert emulator.requests() == []


def test_a_freed_client_handle_is_refused_and_a_second_free_too(emulator):
    client = new_client(emulator.url)
    assert lib.dl_client_free(client) == OK
    assert lib.dl_client_free(client) == INVALID_HANDLE
    assert_error(raw(lib.dl_conversation_start, client, None, byref(c_void_p())), INVALID_HANDLE)
    assert_error(raw(lib.dl_conversation_open, client, b'{"conversationId": "c"}', byref(c_void_p())),
                 INVALID_HANDLE)
    assert emulator.requests() == []


def test_a_new_handle_never_revives_a_freed_one(emulator):
    first = new_client(emulator.url)
    assert lib.dl_client_free(first) == OK
    second = new_client(emulator.url)
    assert lib.dl_client_free(first) == INVALID_HANDLE
    assert lib.dl_client_free(second) == OK


def test_wrong_kind_handles_are_refused(handles):
    client, conversation = handles
    assert_error(raw(lib.dl_conversation_info, client), INVALID_HANDLE)
    assert_error(raw(lib.dl_get_activities, client), INVALID_HANDLE)
    assert_error(raw(lib.dl_send_text, client, b"user1", b"hi"), INVALID_HANDLE)
    assert_error(raw(lib.dl_conversation_start, conversation, None, byref(c_void_p())), INVALID_HANDLE)
    assert lib.dl_conversation_free(client) == INVALID_HANDLE
    assert lib.dl_client_free(conversation) == INVALID_HANDLE
    assert raw(lib.dl_conversation_info, conversation)[0] == OK, "a refused free must not free"
    assert raw(lib.dl_conversation_info, client)[0] == INVALID_HANDLE


def test_a_conversation_outlives_its_freed_client(emulator):
    client = new_client(emulator.url)
    started = c_void_p()
    assert raw(lib.dl_conversation_start, client, None, byref(started))[0] == OK
    assert lib.dl_client_free(client) == OK
    status, _ = raw(lib.dl_send_text, started, b"user1", b"still here")
    assert status == OK
    status, result = raw(lib.dl_get_activities, started)
    assert status == OK
    assert [activity["text"] for activity in result["activities"]] == ["still here", "echo: still here"]
    assert lib.dl_conversation_free(started) == OK


def test_ctypes_releases_the_GIL_around_calls():
    # lib is the lazy proxy; what it loads is the CDLL that ctypes calls through.
    assert isinstance(lib.loaded(), ctypes.CDLL) and not isinstance(lib.loaded(), ctypes.PyDLL)
