"""Every kind of request against every fault the emulator can inject.

For each operation (send, raw upload, multipart upload, get activities,
start conversation, token refresh, token generate) on both protocols, and
each fault (a refused connection, a connection closed before or in the middle
of the answer, a body shorter than its Content-Length, a hang, a slow drip,
garbage and wrong-type bodies, an error after processing, and every HTTP
status the service documents), the call returns the documented dl_status,
`delivery` and `attempts` within its timeout, and the emulator's request log
shows how often the request really went out: a POST whose body left is never
resent, 429 and 503 are retried, 4xx are not.

A few representative faults are repeated to prove they leak neither file
descriptors nor threads.

The raw C functions are called through ctypes; timeouts are short (300 ms
where a fault makes the client wait), so the matrix runs in seconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import socket
import time
from ctypes import POINTER, byref, c_char_p, c_int32, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from directline import _native  # only to load the library the way the binding finds it
from support import SECRET

pytestmark = pytest.mark.slow  # 332 fault cases, many waiting out short timeouts: about 25 s

LIB = ctypes.CDLL(_native.lib._name)
_H, _S, _OUT = c_void_p, c_char_p, POINTER(c_void_p)
for _name, _argtypes in {
    "dl_client_new": (_S, _OUT, _OUT), "dl_client_free": (_H,),
    "dl_conversation_start": (_H, _S, _OUT, _OUT), "dl_conversation_open": (_H, _S, _OUT, _OUT),
    "dl_conversation_free": (_H,), "dl_send_activity": (_H, _S, _OUT), "dl_get_activities": (_H, _OUT),
    "dl_upload_bytes": (_H, _S, c_void_p, c_size_t, _S, _S, _OUT), "dl_upload_multipart": (_H, _S, _S, _OUT),
    "dl_token_refresh": (_H, _S, _OUT), "dl_token_generate": (_H, _S, _OUT),
}.items():
    getattr(LIB, _name).argtypes, getattr(LIB, _name).restype = _argtypes, c_int32
LIB.dl_string_free.argtypes, LIB.dl_string_free.restype = [c_void_p], None
LIB.dl_status_name.argtypes, LIB.dl_status_name.restype = [c_int32], c_char_p

OK = "DL_OK"
MAX_ATTEMPTS = 2          # every client retries once where retrying is allowed
FAST_MS, SLOW_MS = 300, 5000  # the client timeout for faults that make it wait, and for the rest
MARGIN_S = 5.0            # "returns within its timeout": generous, this is not a benchmark


def status_name(status: int) -> str:
    return LIB.dl_status_name(status).decode()


def J(document: Any) -> bytes:
    return json.dumps(document).encode()


# Copies and frees a library-owned out string (the binding's own helper).
take = _native.take_string


def new_client(url: str, protocol: str, timeout_ms: int, **retry: int) -> int:
    handle, out = c_void_p(), c_void_p()
    config = {"endpoint": url, "secret": SECRET, "protocol": protocol, "timeoutMs": timeout_ms,
              "connectTimeoutMs": 2000,
              "retry": {"maxAttempts": MAX_ATTEMPTS, "baseDelayMs": 1, "maxDelayMs": 20, **retry}}
    status = LIB.dl_client_new(J(config), byref(handle), byref(out))
    assert status == 0, take(out)
    take(out)
    return handle.value


def closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return unused.getsockname()[1]


# ---- the operations -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Op:
    name: str
    method: dict            # protocol -> the HTTP method on the wire
    path: str               # the fault rule's path regex (also selects the op's requests in the log)
    kind: dict              # protocol -> "body" (a POST with a body), "bodiless" (a POST without) or "get"


OPS = [
    Op("send", {"3.0": "POST", "1.1": "POST"}, r"/(activities|messages)$", {"3.0": "body", "1.1": "body"}),
    Op("upload_raw", {"3.0": "POST", "1.1": "POST"}, r"/upload$", {"3.0": "body", "1.1": "body"}),
    Op("upload_multipart", {"3.0": "POST", "1.1": "POST"}, r"/upload$", {"3.0": "body", "1.1": "body"}),
    Op("get_activities", {"3.0": "GET", "1.1": "GET"}, r"/(activities|messages)$", {"3.0": "get", "1.1": "get"}),
    Op("start", {"3.0": "POST", "1.1": "POST"}, r"/conversations$", {"3.0": "bodiless", "1.1": "bodiless"}),
    Op("token_refresh", {"3.0": "POST", "1.1": "GET"}, r"/tokens/(refresh|[^/]+/renew)$",
       {"3.0": "bodiless", "1.1": "get"}),
    Op("token_generate", {"3.0": "POST", "1.1": "POST"}, r"/tokens/(generate|conversation)$",
       {"3.0": "bodiless", "1.1": "bodiless"}),
]
SENDS = {"send", "upload_raw", "upload_multipart"}  # a 1.1 500 on these is the bot's failure


@dataclass
class Outcome:
    status: str
    error: Optional[dict]
    text: Optional[str]
    elapsed: float


def perform(op: Op, protocol: str, client: int, conversation: int, token: str) -> Outcome:
    """Runs the operation once, frees whatever it returned, and times it."""
    out = c_void_p(0x1)
    made = c_void_p()
    began = time.monotonic()
    if op.name == "send":
        activity = ({"type": "message", "from": {"id": "user1"}, "text": "hi"} if protocol == "3.0"
                    else {"from": "user1", "text": "hi"})
        status = LIB.dl_send_activity(conversation, J(activity), byref(out))
    elif op.name == "upload_raw":
        status = LIB.dl_upload_bytes(conversation, b"user1", b"raw bytes", 9, b"text/plain", b"a.txt", byref(out))
    elif op.name == "upload_multipart":
        manifest = {"activity": {"text": "see attached"}, "files": [{"dataBase64": "aGVsbG8=", "filename": "b.txt"}]}
        status = LIB.dl_upload_multipart(conversation, b"user1", J(manifest), byref(out))
    elif op.name == "get_activities":
        status = LIB.dl_get_activities(conversation, byref(out))
    elif op.name == "start":
        status = LIB.dl_conversation_start(client, None, byref(made), byref(out))
    elif op.name == "token_refresh":
        status = LIB.dl_token_refresh(client, token.encode(), byref(out))
    else:
        status = LIB.dl_token_generate(client, None, byref(out))
    elapsed = time.monotonic() - began
    assert out.value != 0x1, "out_json was not written"
    text = take(out)
    if made.value:
        assert LIB.dl_conversation_free(made) == 0
    name = status_name(status)
    error = json.loads(text)["error"] if name != OK else None
    return Outcome(name, error, text, elapsed)


class Setup:
    """A client and a started conversation, then the fault: the operation runs
    on a kept-alive connection, as it does in an application."""

    def __init__(self, emulator, protocol: str, timeout_ms: int, refuse: bool = False, **retry: int) -> None:
        self.protocol = protocol
        if refuse:
            self.client = new_client(f"http://127.0.0.1:{closed_port()}", protocol, timeout_ms, **retry)
            self.token = "tok-unreachable-5c1e"
            handle, out = c_void_p(), c_void_p()
            state = {"conversationId": "unreachable", "token": self.token}
            assert LIB.dl_conversation_open(self.client, J(state), byref(handle), byref(out)) == 0
            take(out)
        else:
            self.client = new_client(emulator.url, protocol, timeout_ms, **retry)
            handle, out = c_void_p(), c_void_p()
            status = LIB.dl_conversation_start(self.client, None, byref(handle), byref(out))
            text = take(out)
            assert status == 0, text
            self.token = json.loads(text)["token"]
        self.conversation = handle.value

    def close(self) -> None:
        assert LIB.dl_conversation_free(self.conversation) == 0
        assert LIB.dl_client_free(self.client) == 0


# ---- the faults and what each must give ---------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    status: str
    delivery: Optional[str]  # None on DL_OK
    attempts: Optional[int]  # None on DL_OK
    wire: int                # requests of this operation the emulator received
    bug: Optional[str] = None


# name -> (emulator rule or None for a closed port, client timeout in ms)
FAULTS: dict[str, tuple[Optional[dict], int]] = {
    "refuse": (None, SLOW_MS),
    "close_before_response": ({"action": "close", "count": 1}, SLOW_MS),
    "close_mid_response": ({"action": "close_mid", "count": 1}, SLOW_MS),
    "short_body": ({"action": "short_body", "count": 1}, SLOW_MS),
    "hang": ({"action": "hang", "seconds": 5, "count": 1}, FAST_MS),
    "slow_drip_in_time": ({"action": "slow", "seconds": 0.15, "count": 1}, SLOW_MS),
    "slow_drip_past_timeout": ({"action": "slow", "seconds": 3, "count": 1}, FAST_MS),
    "garbage_json": ({"action": "garbage", "count": 1}, SLOW_MS),
    "wrong_content_type": ({"action": "wrong_type", "count": 1}, SLOW_MS),
    "processed_then_502": ({"action": "deliver_then_fail", "count": 1}, SLOW_MS),
}
HTTP_STATUS = {  # name -> (status, service code, dl_status, delivery, retried)
    "400": (400, None, "DL_ERR_BAD_REQUEST", "not_sent", False),
    "401": (401, None, "DL_ERR_UNAUTHORIZED", "not_sent", False),
    "403": (403, None, "DL_ERR_FORBIDDEN", "not_sent", False),
    "403_TokenExpired": (403, "TokenExpired", "DL_ERR_TOKEN_EXPIRED", "not_sent", False),
    "404": (404, None, "DL_ERR_NOT_FOUND", "not_sent", False),
    "409": (409, None, "DL_ERR_CONFLICT", "not_sent", False),
    "413": (413, None, "DL_ERR_TOO_LARGE", "not_sent", False),
    "429": (429, None, "DL_ERR_THROTTLED", "not_sent", True),
    "500": (500, None, "DL_ERR_SERVICE", "unknown", False),
    "502": (502, None, "DL_ERR_BOT", "unknown", False),
    "503": (503, None, "DL_ERR_SERVICE", "not_sent", True),
    "504": (504, None, "DL_ERR_SERVICE", "unknown", False),
}
for _name, (_status, _code, *_) in HTTP_STATUS.items():
    # count -1: every attempt gets it, so the retries allowed are used up.
    FAULTS["http_" + _name] = ({"action": "status", "status": _status, "count": -1,
                                **({"code": _code} if _code else {})}, SLOW_MS)


def expected(op: Op, protocol: str, fault: str) -> Expect:
    kind = op.kind[protocol]
    if fault == "refuse":  # provably not sent: retried, and nothing reaches the emulator
        return Expect("DL_ERR_NETWORK", "not_sent", MAX_ATTEMPTS, 0)
    if fault == "close_before_response":
        if kind == "get":
            # libcurl resends a GET on a fresh connection when a kept-alive one is closed
            # before any answer; a read is safe to repeat, so the call succeeds.
            return Expect(OK, None, None, 2)
        return Expect("DL_ERR_NETWORK", "unknown", 1, 1)
    if fault in ("close_mid_response", "short_body"):
        return Expect("DL_ERR_NETWORK", "unknown", 1, 1)
    if fault in ("hang", "slow_drip_past_timeout"):
        return Expect("DL_ERR_TIMEOUT", "unknown", 1, 1)
    if fault == "slow_drip_in_time":
        return Expect(OK, None, None, 1)
    if fault in ("garbage_json", "wrong_content_type"):
        return Expect("DL_ERR_PROTOCOL", "unknown", 1, 1)
    if fault == "processed_then_502":
        return Expect("DL_ERR_BOT", "unknown", 1, 1)
    http, _, status, delivery, retried = HTTP_STATUS[fault[len("http_"):]]
    if http == 500 and protocol == "1.1" and op.name in SENDS:
        status = "DL_ERR_BOT"
    attempts = MAX_ATTEMPTS if retried else 1
    return Expect(status, delivery, attempts, attempts)


CASES = [(op, protocol, fault) for op in OPS for protocol in ("3.0", "1.1") for fault in FAULTS]


def _param(op: Op, protocol: str, fault: str):
    bug = expected(op, protocol, fault).bug
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(op, protocol, fault, id=f"{protocol}-{op.name}-{fault}", marks=marks)


def run_case(emulator, op: Op, protocol: str, fault: str) -> tuple[Outcome, list[dict], Optional[dict], str]:
    """Sets up, injects the fault, runs the operation; returns the outcome, the
    operation's requests as the emulator logged them, the rule it applied and
    the conversation's token."""
    rule, timeout_ms = FAULTS[fault]
    setup = Setup(emulator, protocol, timeout_ms, refuse=rule is None)
    try:
        applied = None
        if rule is not None:
            applied = emulator._control("POST", "faults", {"method": op.method[protocol], "path": op.path, **rule})
        before = len(emulator.requests())
        outcome = perform(op, protocol, setup.client, setup.conversation, setup.token)
        pattern = re.compile(op.path)
        wire = [request for request in emulator.requests()[before:]
                if request["method"] == op.method[protocol] and pattern.search(request["path"])]
        return outcome, wire, applied, setup.token
    finally:
        setup.close()


@pytest.mark.parametrize("op, protocol, fault", [_param(*case) for case in CASES])
def test_a_fault_gives_its_documented_status_in_time(emulator, op, protocol, fault):
    expect = expected(op, protocol, fault)
    outcome, wire, rule, token = run_case(emulator, op, protocol, fault)
    timeout_s = FAULTS[fault][1] / 1000
    assert outcome.elapsed < timeout_s * MAX_ATTEMPTS + MARGIN_S, "the call did not return within its timeout"
    observed = (outcome.status, outcome.error and outcome.error["delivery"],
                outcome.error and outcome.error["attempts"], len(wire))
    assert observed == (expect.status, expect.delivery, expect.attempts, expect.wire), outcome.text
    if outcome.error is not None:
        error = outcome.error
        assert error["name"] == status_name(error["status"]) == expect.status
        assert isinstance(error["message"], str) and error["message"]
        if rule is not None and rule["action"] == "status":
            assert error["httpStatus"] == rule["status"]
            assert error["serviceCode"] == rule["code"]
            assert error["retryAfterMs"] is None
        if protocol == "3.0" and op.name in ("send", "upload_multipart"):
            assert error["clientActivityID"].startswith("dlc-"), "a failed 3.0 send must carry its clientActivityID"
    if outcome.status != OK or op.name not in ("start", "token_refresh", "token_generate"):
        # Only a Conversation object answered on success carries a token, by design.
        assert SECRET not in (outcome.text or "") and token not in (outcome.text or "")
    # A POST went out at most once unless the service said it was not processed (429, 503).
    if op.method[protocol] == "POST" and not fault.startswith(("http_429", "http_503")):
        assert len(wire) <= 1, "a POST was sent again"


# ---- retry rules --------------------------------------------------------------------------------

SEND = OPS[0]


@pytest.mark.parametrize("http", [429, 503])
def test_429_and_503_are_retried_after_Retry_After_with_the_same_body(emulator, http):
    setup = Setup(emulator, "3.0", SLOW_MS, maxAttempts=3, maxDelayMs=5000)
    try:
        emulator.fault(method="POST", path=SEND.path, action="status", status=http, retryAfter="1", count=1)
        before = len(emulator.requests())
        outcome = perform(SEND, "3.0", setup.client, setup.conversation, setup.token)
    finally:
        setup.close()
    assert outcome.status == OK, outcome.text
    assert 0.9 <= outcome.elapsed < 1 + MARGIN_S, "Retry-After: 1 was not honoured"
    first, second = emulator.requests()[before:]
    assert (first["status"], second["status"]) == (http, 200)
    assert first["body"] == second["body"], "a retry must send the same activity (same clientActivityID)"


def test_a_Retry_After_longer_than_maxDelayMs_is_capped(emulator):
    setup = Setup(emulator, "3.0", SLOW_MS, maxAttempts=2, maxDelayMs=200)
    try:
        emulator.fault(method="POST", path=SEND.path, action="status", status=429, retryAfter="3600", count=1)
        outcome = perform(SEND, "3.0", setup.client, setup.conversation, setup.token)
    finally:
        setup.close()
    assert outcome.status == OK, outcome.text
    assert outcome.elapsed < 3


@pytest.mark.parametrize("retry_after, reported", [
    ("-1", None), ("1.0", None), ("soon", None), ("1e3", None), ("", None),
    ("Sun, 06 Nov 1994 08:49:37 GMT", 0),   # a date in the past: retry at once
])
def test_a_nonsense_Retry_After_is_ignored(emulator, retry_after, reported):
    setup = Setup(emulator, "3.0", SLOW_MS)
    try:
        rule = {"method": "POST", "path": SEND.path, "action": "status", "status": 429, "count": -1}
        if retry_after:
            rule["retryAfter"] = retry_after
        emulator.fault(**rule)
        outcome = perform(SEND, "3.0", setup.client, setup.conversation, setup.token)
    finally:
        setup.close()
    assert outcome.status == "DL_ERR_THROTTLED"
    assert outcome.error["retryAfterMs"] == reported
    assert outcome.error["attempts"] == MAX_ATTEMPTS
    assert outcome.elapsed < 2, "a nonsense Retry-After must not make the client wait"


@pytest.mark.parametrize("http", [400, 401, 403, 404])
def test_a_4xx_is_never_retried_however_many_attempts_are_allowed(emulator, http):
    setup = Setup(emulator, "3.0", SLOW_MS, maxAttempts=5)
    try:
        emulator.fault(method="POST", path=SEND.path, action="status", status=http, count=-1)
        before = len(emulator.requests())
        outcome = perform(SEND, "3.0", setup.client, setup.conversation, setup.token)
    finally:
        setup.close()
    assert outcome.error["attempts"] == 1
    assert len(emulator.requests()) - before == 1


def test_a_connect_failure_uses_every_attempt_allowed(emulator):
    setup = Setup(emulator, "3.0", SLOW_MS, refuse=True, maxAttempts=4)
    try:
        outcome = perform(SEND, "3.0", setup.client, setup.conversation, setup.token)
    finally:
        setup.close()
    assert (outcome.status, outcome.error["delivery"], outcome.error["attempts"]) == ("DL_ERR_NETWORK", "not_sent", 4)


def test_attempts_counts_every_request_that_went_out(emulator):
    setup = Setup(emulator, "3.0", SLOW_MS)
    op = OPS[3]  # get_activities
    try:
        emulator.fault(method="GET", path=op.path, action="close", count=-1)
        before = len(emulator.requests())
        outcome = perform(op, "3.0", setup.client, setup.conversation, setup.token)
    finally:
        setup.close()
    sent = len(emulator.requests()) - before
    assert outcome.status == "DL_ERR_NETWORK"
    assert outcome.error["attempts"] == sent


def test_a_close_before_the_answer_on_a_fresh_connection_is_unknown_and_not_resent(emulator):
    """The same fault without a kept-alive connection: nothing for libcurl to retry."""
    client = new_client(emulator.url, "3.0", SLOW_MS)
    try:
        emulator.fault(method="POST", path=r"/conversations$", action="close", count=1)
        outcome = perform(OPS[4], "3.0", client, 0, "")
    finally:
        assert LIB.dl_client_free(client) == 0
    assert (outcome.status, outcome.error["delivery"], outcome.error["attempts"]) == ("DL_ERR_NETWORK", "unknown", 1)
    assert len(emulator.requests()) == 1


# ---- no leak --------------------------------------------------------------------------------------

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settled(measure, ceiling: int, seconds: float = 3.0) -> int:
    """The measure once it is at or under `ceiling`, or after `seconds` (threads end asynchronously)."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > ceiling and time.monotonic() < deadline:
        time.sleep(0.02)
        value = measure()
    return value


LEAK_CASES = [("send", "refuse"), ("send", "close_before_response"), ("upload_multipart", "close_mid_response"),
              ("send", "hang"), ("upload_raw", "http_503"), ("get_activities", "garbage_json"),
              ("start", "short_body"), ("get_activities", "slow_drip_past_timeout")]


@pytest.mark.parametrize("op_name, fault", LEAK_CASES, ids=[f"{op}-{fault}" for op, fault in LEAK_CASES])
def test_a_fault_leaks_no_descriptor_and_no_thread(emulator, op_name, fault):
    op = next(op for op in OPS if op.name == op_name)
    for _ in range(2):  # warm-up: libcurl's and the refresher's one-time allocations
        run_case(emulator, op, "3.0", fault)
    fds, threads = _fds(), _threads()
    for _ in range(5):
        outcome = run_case(emulator, op, "3.0", fault)[0]
        assert outcome.status == expected(op, "3.0", fault).status
    assert _settled(_fds, fds) <= fds, "file descriptors leaked"
    assert _settled(_threads, threads) <= threads, "threads leaked"
