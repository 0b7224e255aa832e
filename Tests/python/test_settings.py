"""The log callback (dl_set_log_callback) and per-thread timeouts
(dl_set_thread_timeouts), through the binding and through raw C calls."""

from __future__ import annotations

import ctypes
import re
import threading
import time
from typing import Any, Iterator

import pytest

from support import SECRET, Emulator, text_activity


@pytest.fixture
def captured() -> Iterator[list[tuple[int, str]]]:
    import directline

    lines: list[tuple[int, str]] = []
    lock = threading.Lock()

    def handler(level: Any, message: str) -> None:
        with lock:
            lines.append((int(level), message))

    directline.set_log_handler(handler, directline.LogLevel.DEBUG)
    try:
        yield lines
    finally:
        directline.set_log_handler(None)


def test_every_request_is_logged_and_no_credential_ever_is(
        emulator: Emulator, protocol: str, captured: list[tuple[int, str]], tmp_path: Any) -> None:
    import directline

    attachment = tmp_path / "note.txt"
    attachment.write_text("attached")
    tokens: list[str] = []
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol, retry={"max_attempts": 1}) as client:
        with client.start_conversation() as conversation:
            tokens.append(conversation.state()["token"])
            conversation.send_activity(text_activity(protocol, "hello"))
            conversation.upload_file("user1", attachment)
            conversation.get_activities()
            conversation.refresh()
            tokens.append(conversation.state()["token"])
        if protocol == "3.0":
            tokens.append(client.generate_token()["token"])
    text = "\n".join(message for _, message in captured)
    assert SECRET not in text
    for token in tokens:
        assert token and token not in text
    info = [message for level, message in captured if level == directline.LogLevel.INFO]
    root = "/v3/directline" if protocol == "3.0" else "/api"
    assert any(re.match(rf"POST {re.escape(emulator.url)}{root}/conversations -> 20[01] in ", line)
               for line in info), info
    assert any(re.search(r"/upload\?userId=user1 -> 20[014] ", line) for line in info), info
    assert any(line.startswith("GET ") and " -> 200 " in line for line in info), info
    debug = [message for level, message in captured if level == directline.LogLevel.DEBUG]
    assert any(line.startswith("> POST ") for line in debug), debug[:20]
    assert any(line.startswith("< HTTP/1.") for line in debug), debug[:20]
    authorization = [line for line in debug if line.lower().startswith("> authorization:")]
    assert authorization and all(line.endswith(": [redacted]") for line in authorization), authorization


def test_a_t_parameter_in_a_logged_header_is_redacted(
        emulator: Emulator, conversation: Any, protocol: str, captured: list[tuple[int, str]]) -> None:
    import directline

    emulator.fault(path="/(activities|messages)$", action="status", status=302,
                   location="https://elsewhere.example/stream?a=1&t=TOPSECRET-TOKEN&b=2")
    with pytest.raises(directline.HTTPError):
        conversation.send_text("user1", "redirected")
    text = "\n".join(message for _, message in captured)
    assert "TOPSECRET" not in text
    assert "t=[redacted]&b=2" in text


def test_retries_are_warnings_and_failures_errors(emulator: Emulator, protocol: str,
                                                  captured: list[tuple[int, str]]) -> None:
    import directline

    emulator.fault(path="/conversations$", action="status", status=503, retryAfter="0")
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol,
                           retry={"max_attempts": 2, "base_delay_ms": 1}) as client:
        client.start_conversation().close()
    warnings = [message for level, message in captured if level == directline.LogLevel.WARN]
    assert any("HTTP 503" in line and "attempt 2 of 2" in line for line in warnings), warnings

    captured.clear()
    with directline.Client("http://127.0.0.1:9", secret=SECRET, protocol=protocol,
                           retry={"max_attempts": 1}) as client:
        with pytest.raises(directline.NetworkError):
            client.start_conversation()
    errors = [message for level, message in captured if level == directline.LogLevel.ERROR]
    assert any("could not connect" in line for line in errors), captured


def test_the_level_filters_and_none_turns_logging_off(emulator: Emulator, conversation: Any,
                                                      protocol: str) -> None:
    import directline

    lines: list[tuple[int, str]] = []
    directline.set_log_handler(lambda level, message: lines.append((int(level), message)),
                               directline.LogLevel.ERROR)
    try:
        conversation.send_text("user1", "quiet")
        assert lines == []
        directline.set_log_handler(lambda level, message: lines.append((int(level), message)),
                                   directline.LogLevel.INFO)
        conversation.send_text("user1", "heard")
        assert [level for level, _ in lines] == [directline.LogLevel.INFO]
        directline.set_log_handler(None)
        conversation.send_text("user1", "quiet again")
        assert len(lines) == 1
    finally:
        directline.set_log_handler(None)


def test_log_to_logging_forwards_with_matching_levels(emulator: Emulator, conversation: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import directline

    directline.log_to_logging(level=directline.LogLevel.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="directline"):
            conversation.send_text("user1", "to logging")
    finally:
        directline.set_log_handler(None)
    records = [record for record in caplog.records if record.name == "directline"]
    assert records and all(record.levelno == logging.INFO for record in records)
    assert " -> 20" in records[-1].getMessage()


def test_a_handler_cannot_reenter_and_its_exceptions_stay_out_of_c(emulator: Emulator, conversation: Any) -> None:
    import directline
    from directline import _native

    statuses: list[int] = []

    def handler(level: Any, message: str) -> None:
        out = ctypes.c_void_p()
        statuses.append(_native.lib.dl_set_thread_timeouts(None, ctypes.byref(out)))
        _native.take_string(out)
        raise RuntimeError("a handler bug")

    directline.set_log_handler(handler, directline.LogLevel.INFO)
    try:
        result = conversation.send_text("user1", "reentrant")
    finally:
        directline.set_log_handler(None)
    assert statuses and set(statuses) == {directline.Status.ERR_REENTRANT}
    assert isinstance(result, dict)


def test_bad_levels_and_handlers_are_refused_and_the_previous_stays(emulator: Emulator) -> None:
    import directline
    from directline import _native

    with pytest.raises(directline.InvalidArgumentError):
        directline.set_log_handler(lambda level, message: None, 9)  # type: ignore[arg-type]
    with pytest.raises(directline.InvalidArgumentError):
        directline.set_log_handler("not callable")  # type: ignore[arg-type]
    for level in (-1, 5, 1 << 30):
        out = ctypes.c_void_p()
        status = _native.lib.dl_set_log_callback(_native.LOG_FN(), None, level, ctypes.byref(out))
        message = _native.take_string(out)
        assert status == directline.Status.ERR_INVALID_ARGUMENT
        assert "level" in message


# --- per-thread timeouts ----------------------------------------------------


def raw_timeouts(options: bytes | None) -> tuple[int, str]:
    from directline import _native

    out = ctypes.c_void_p()
    status = _native.lib.dl_set_thread_timeouts(options, ctypes.byref(out))
    return status, _native.take_string(out)


def test_a_block_bounds_a_call_that_the_client_would_wait_for(emulator: Emulator, conversation: Any,
                                                               protocol: str) -> None:
    import directline

    emulator.fault(path="/(activities|messages)$", action="hang", seconds=30)
    started = time.monotonic()
    with directline.timeouts(total=0.4):
        with pytest.raises(directline.DirectLineTimeoutError) as raised:
            conversation.send_text("user1", "bounded")
    assert time.monotonic() - started < 5
    assert raised.value.delivery == "unknown"
    # Outside the block the client's 10 s applies again: a 1 s delay is fine.
    emulator.fault(path="/(activities|messages)$", action="delay", seconds=1)
    conversation.send_text("user1", "unbounded")


def test_other_threads_keep_the_clients_timeouts(emulator: Emulator, conversation: Any) -> None:
    import directline

    emulator.fault(path="/(activities|messages)$", action="delay", seconds=1, count=2)
    outcome: dict[str, Any] = {}
    entered = threading.Event()

    def bounded() -> None:
        with directline.timeouts(total=0.3):
            entered.set()
            try:
                conversation.send_text("user1", "bounded")
                outcome["bounded"] = "sent"
            except directline.DirectLineTimeoutError:
                outcome["bounded"] = "timed out"

    def free() -> None:
        entered.wait(5)
        conversation.send_text("user1", "free")
        outcome["free"] = "sent"

    threads = [threading.Thread(target=bounded), threading.Thread(target=free)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome == {"bounded": "timed out", "free": "sent"}


def test_nested_blocks_inherit_and_restore(emulator: Emulator, conversation: Any) -> None:
    import directline

    def outcome() -> str:
        emulator.fault(path="/(activities|messages)$", action="delay", seconds=0.8)
        try:
            conversation.send_text("user1", "nested")
            return "sent"
        except directline.DirectLineTimeoutError:
            return "timed out"

    with directline.timeouts(total=0.3):
        with directline.timeouts(connect=5):
            inner = outcome()  # inherits the outer total
        after_inner = outcome()
        with directline.timeouts(total=5):
            widened = outcome()
        after_widened = outcome()
    after_all = outcome()
    assert (inner, after_inner, widened, after_widened, after_all) == (
        "timed out", "timed out", "sent", "timed out", "sent")
    status, text = raw_timeouts(b"{}")
    assert (status, text) == (0, '{"timeoutMs":null,"connectTimeoutMs":null}')


@pytest.mark.parametrize("options", [
    b'{"timeoutMs":0}', b'{"timeoutMs":86400001}', b'{"timeoutMs":"1000"}', b'{"timeoutMs":1.5}',
    b'{"connectTimeoutMs":-1}', b'{"timeout":1000}', b"[]", b'{"timeoutMs":1000', b"\xff",
])
def test_bad_timeout_options_are_refused_and_the_override_stays(options: bytes) -> None:
    assert raw_timeouts(b'{"timeoutMs":1234}')[0] == 0
    status, text = raw_timeouts(options)
    assert status == 1, text
    assert "options_json" in text
    try:
        assert raw_timeouts(b'{"connectTimeoutMs":7}') == (0, '{"timeoutMs":null,"connectTimeoutMs":7}')
    finally:
        raw_timeouts(None)


@pytest.mark.parametrize("total", [0, -1, 1e9, "2", True])
def test_bad_python_timeouts_are_refused(total: Any) -> None:
    import directline

    with pytest.raises(directline.InvalidArgumentError):
        with directline.timeouts(total=total):
            pass
