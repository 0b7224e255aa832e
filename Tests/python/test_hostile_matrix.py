"""Hostile input to every exported function, as one systematic table.

For every function of abi/symbols.txt and every one of its arguments, the
hostile variants (NULL, empty, invalid UTF-8, an embedded NUL, over 8 MiB,
ill-formed JSON, JSON of every wrong type, unsafe ids and header values,
stale, forged and wrong-kind handles) each get the status that
include/directline.h documents, and the emulator's request log proves that
nothing reached the wire. Each case is one row of a data table, so
`pytest --collect-only -q` shows how many there are.

A second, smaller table holds the hostile inputs that are *meant* to reach
the wire (ids with / ? # %, file names with quotes, CR and LF) and checks
exactly what went out. Last, progress callbacks that re-enter the library or
try to free their own handle get DL_ERR_REENTRANT.

Everything goes through ctypes with explicit argtypes (c_char_p, c_void_p),
so NULLs, invalid UTF-8, forged handle values and 9 MB strings reach the
C ABI unchanged, without the binding's own checks in between.
"""

from __future__ import annotations

import copy
import ctypes
import http.client
import json
import os
import re
import threading
import time
from ctypes import CFUNCTYPE, POINTER, byref, c_char_p, c_int32, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping, Optional
from urllib.parse import quote

import pytest

from directline import _native  # only to load the library the way the binding finds it
from support import REPO_ROOT, SECRET

# ---- the C ABI, declared here ----------------------------------------------------------------

LIB = ctypes.CDLL(_native.lib._name)
HEADER = (REPO_ROOT / "include" / "directline.h").read_text()
STATUS = {name: int(value) for name, value in re.findall(r"\b(DL_(?:OK|ERR_\w+)) = (\d+),", HEADER)}
NAME = {value: name for name, value in STATUS.items()}
SYMBOLS = [line.split()[0] for line in (REPO_ROOT / "abi" / "symbols.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")]

PROGRESS = CFUNCTYPE(c_int32, c_void_p, c_uint64, c_uint64)
NO_PROGRESS = PROGRESS()  # the NULL dl_progress_fn
_H, _S, _OUT = c_void_p, c_char_p, POINTER(c_void_p)

# name -> ((parameter, ctypes type), ...), in C order. Every status-returning function.
SIGNATURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "dl_client_new": (("config_json", _S), ("out_client", _OUT), ("out_json", _OUT)),
    "dl_client_free": (("client", _H),),
    "dl_token_generate": (("client", _H), ("request_json", _S), ("out_json", _OUT)),
    "dl_token_refresh": (("client", _H), ("token", _S), ("out_json", _OUT)),
    "dl_conversation_start": (("client", _H), ("request_json", _S), ("out_conversation", _OUT),
                              ("out_json", _OUT)),
    "dl_conversation_open": (("client", _H), ("state_json", _S), ("out_conversation", _OUT),
                             ("out_json", _OUT)),
    "dl_conversation_info": (("conversation", _H), ("out_json", _OUT)),
    "dl_conversation_state": (("conversation", _H), ("out_json", _OUT)),
    "dl_conversation_refresh": (("conversation", _H), ("out_json", _OUT)),
    "dl_conversation_free": (("conversation", _H),),
    "dl_send_activity": (("conversation", _H), ("activity_json", _S), ("out_json", _OUT)),
    "dl_send_text": (("conversation", _H), ("user_id", _S), ("text", _S), ("out_json", _OUT)),
    "dl_get_activities": (("conversation", _H), ("out_json", _OUT)),
    "dl_conversation_wait": (("conversation", _H), ("options_json", _S), ("out_json", _OUT)),
    "dl_conversation_confirm": (("conversation", _H), ("client_activity_id", _S), ("options_json", _S),
                                ("out_json", _OUT)),
    "dl_conversation_end": (("conversation", _H), ("user_id", _S), ("out_json", _OUT)),
    "dl_upload_file": (("conversation", _H), ("user_id", _S), ("path", _S), ("content_type", _S),
                       ("filename", _S), ("out_json", _OUT)),
    "dl_upload_bytes": (("conversation", _H), ("user_id", _S), ("data", c_void_p), ("length", c_size_t),
                        ("content_type", _S), ("filename", _S), ("out_json", _OUT)),
    "dl_upload_multipart": (("conversation", _H), ("user_id", _S), ("upload_json", _S), ("out_json", _OUT)),
    "dl_conversation_set_progress": (("conversation", _H), ("progress", PROGRESS), ("userdata", c_void_p)),
}
LOG = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)
NO_LOG = LOG()  # the NULL dl_log_fn
# Functions added later: in the table when the library under test exports them.
for _name, _params in {
    "dl_set_log_callback": (("log", LOG), ("userdata", c_void_p), ("level", c_int32), ("out_json", _OUT)),
    "dl_set_thread_timeouts": (("options_json", _S), ("out_json", _OUT)),
    "dl_conversation_listen": (("conversation", _H), ("options_json", _S), ("out_json", _OUT)),
    "dl_conversation_next": (("conversation", _H), ("timeout_ms", c_int32), ("out_json", _OUT)),
    # int32_t *out_fd, passed here as a pointer to a pre-filled slot like the other out slots.
    "dl_conversation_fd": (("conversation", _H), ("out_fd", _OUT), ("out_json", _OUT)),
    "dl_conversation_unlisten": (("conversation", _H), ("out_json", _OUT)),
}.items():
    if hasattr(LIB, _name):
        SIGNATURES[_name] = _params
for _name, _params in SIGNATURES.items():
    _function = getattr(LIB, _name)
    _function.argtypes = [kind for _, kind in _params]
    _function.restype = c_int32
LIB.dl_string_free.argtypes, LIB.dl_string_free.restype = [c_void_p], None
LIB.dl_status_name.argtypes, LIB.dl_status_name.restype = [c_int32], c_char_p
LIB.dl_version.argtypes, LIB.dl_version.restype = [], c_char_p
LIB.dl_version_number.argtypes, LIB.dl_version_number.restype = [], ctypes.c_uint32

SENTINEL = 0x1   # never a valid string or handle: proves the library wrote the slot
SLOT = object()  # in an argument table: "pass a fresh out slot pre-filled with SENTINEL"
TOKEN = "tok-hostile-3f9a2c7e"      # the token of the 3.0 test conversations
TOKEN11 = "tok-hostile11-81bd44e0"  # the token of the 1.1 test conversation
MARKER = "hunter2"                  # put in every hostile secret, token and header value
NEVER_OUT = (SECRET, TOKEN, TOKEN11, MARKER)
MiB = 1 << 20


def J(document: Any) -> bytes:
    return json.dumps(document).encode()


@lru_cache(maxsize=None)
def huge(size: int = 8 * MiB + 1, fill: bytes = b"a") -> bytes:
    """A string over the 8 MiB input limit (built once, shared)."""
    return fill * size


# Copies and frees a library-owned out string (the binding's own helper).
take = _native.take_string


def status_name(status: int) -> str:
    return NAME.get(status, f"unknown status {status}")


# ---- the handles and files every case may use ---------------------------------------------------

class World:
    """Clients and conversations made without sending anything, plus handles
    that are freed, stale or forged, and files for the upload cases."""

    def __init__(self, url: str, files: dict[str, str]) -> None:
        self.url = url
        self.files = files
        self._clients: list[int] = []
        self._conversations: list[int] = []
        self.client = self.new_client("3.0")
        self.client11 = self.new_client("1.1")
        self.small = self.new_client("3.0", maxUploadBytes=64)
        self.conv = self.open(self.client, {"conversationId": "hostile-conv", "token": TOKEN})
        self.conv11 = self.open(self.client11, {"conversationId": "hostile-conv11", "token": TOKEN11})
        self.conv_secret = self.open(self.client, {"conversationId": "hostile-secret"})
        self.conv_small = self.open(self.small, {"conversationId": "hostile-small", "token": TOKEN})
        # Freed handles, and freed handles whose table slot was handed out again.
        self.freed_client = self._freed_client()
        self.stale_client = self._freed_client()
        self.new_client("3.0")  # takes the slot stale_client had
        self.freed_conv = self._freed_conv()
        self.stale_conv = self._freed_conv()
        self.open(self.client, {"conversationId": "slot-reuser"})
        self.memory = ctypes.create_string_buffer(64)  # a real pointer that is not a handle
        self.log_lines: list = []
        self.log_sink = LOG(lambda _userdata, level, message: self.log_lines.append((level, message)))

    def new_client(self, protocol: str, **extra: Any) -> int:
        handle = c_void_p()
        config = {"endpoint": self.url, "secret": SECRET, "protocol": protocol,
                  "retry": {"maxAttempts": 1}, "timeoutMs": 5000, **extra}
        assert LIB.dl_client_new(J(config), byref(handle), None) == STATUS["DL_OK"]
        self._clients.append(handle.value)
        return handle.value

    def open(self, client: int, state: dict) -> int:
        handle = c_void_p()
        assert LIB.dl_conversation_open(client, J(state), byref(handle), None) == STATUS["DL_OK"]
        self._conversations.append(handle.value)
        return handle.value

    def _freed_client(self) -> int:
        handle = c_void_p()
        assert LIB.dl_client_new(J({"endpoint": self.url, "secret": SECRET}), byref(handle), None) == 0
        assert LIB.dl_client_free(handle) == STATUS["DL_OK"]
        return handle.value

    def _freed_conv(self) -> int:
        handle = c_void_p()
        assert LIB.dl_conversation_open(self.client, J({"conversationId": "doomed"}), byref(handle), None) == 0
        assert LIB.dl_conversation_free(handle) == STATUS["DL_OK"]
        return handle.value

    def close(self) -> None:
        """Frees everything; each free must still succeed, which proves no hostile
        call (a wrong-kind free, say) destroyed a handle it was not given."""
        statuses = [LIB.dl_conversation_free(handle) for handle in self._conversations]
        statuses += [LIB.dl_client_free(handle) for handle in self._clients]
        assert statuses == [STATUS["DL_OK"]] * len(statuses)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "tiny.txt").write_bytes(b"tiny")
    (root / "big.bin").write_bytes(b"b" * 100)  # over the small client's 64-byte limit
    (root / "folder").mkdir()
    os.mkfifo(root / "fifo")
    os.symlink(root / "loop", root / "loop")
    return {"tiny": str(root / "tiny.txt"), "big": str(root / "big.bin"), "dir": str(root / "folder"),
            "fifo": str(root / "fifo"), "loop": str(root / "loop"), "root": str(root),
            "missing": str(root / "no-such-file.txt")}


@pytest.fixture
def world(emulator_process, files):
    made = World(emulator_process.url, files)
    yield made
    made.close()


class WireLog:
    """Counts the emulator's logged requests over one kept-alive connection
    (the table has over a thousand rows: a reset per row would dominate)."""

    def __init__(self, url: str) -> None:
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        self._connection = http.client.HTTPConnection(host, int(port), timeout=10)

    def count(self) -> int:
        self._connection.request("GET", "/_emulator/requests")
        return len(json.loads(self._connection.getresponse().read())["requests"])

    def close(self) -> None:
        self._connection.close()


@pytest.fixture(scope="module")
def wire(emulator_process):
    log = WireLog(emulator_process.url)
    yield log
    log.close()


# ---- the table ---------------------------------------------------------------------------------

Value = Any  # a literal argument, or a callable(World) -> argument


@dataclass(frozen=True)
class Case:
    function: str
    argument: str
    label: str
    overrides: Mapping[str, Value]
    expect: str                      # "DL_OK", "DL_ERR_INVALID_ARGUMENT", ...
    marks: tuple = field(default=())

    @property
    def id(self) -> str:
        return f"{self.function}-{self.argument}-{self.label}"


def C(function: str, argument: str, label: str, value: Value, expect: str, **more: Value) -> Case:
    return Case(function, argument, label, {argument: value, **more}, expect)


# The valid arguments of each function; a case replaces one (or a few) of them.
BASE: dict[str, Callable[[World], dict[str, Any]]] = {
    "dl_client_new": lambda w: {"config_json": J({"endpoint": w.url, "secret": SECRET}),
                                "out_client": SLOT, "out_json": SLOT},
    "dl_client_free": lambda w: {"client": w.client},
    "dl_token_generate": lambda w: {"client": w.client, "request_json": None, "out_json": SLOT},
    "dl_token_refresh": lambda w: {"client": w.client, "token": TOKEN.encode(), "out_json": SLOT},
    "dl_conversation_start": lambda w: {"client": w.client, "request_json": None,
                                        "out_conversation": SLOT, "out_json": SLOT},
    "dl_conversation_open": lambda w: {"client": w.client, "state_json": J({"conversationId": "c1"}),
                                       "out_conversation": SLOT, "out_json": SLOT},
    "dl_conversation_info": lambda w: {"conversation": w.conv, "out_json": SLOT},
    "dl_conversation_state": lambda w: {"conversation": w.conv, "out_json": SLOT},
    "dl_conversation_refresh": lambda w: {"conversation": w.conv, "out_json": SLOT},
    "dl_conversation_free": lambda w: {"conversation": w.conv},
    "dl_send_activity": lambda w: {"conversation": w.conv, "out_json": SLOT, "activity_json": J(
        {"type": "message", "from": {"id": "user1"}, "text": "hi"})},
    "dl_send_text": lambda w: {"conversation": w.conv, "user_id": b"user1", "text": b"hi", "out_json": SLOT},
    "dl_get_activities": lambda w: {"conversation": w.conv, "out_json": SLOT},
    "dl_conversation_wait": lambda w: {"conversation": w.conv, "options_json": J({"timeoutMs": 0}),
                                       "out_json": SLOT},
    "dl_conversation_confirm": lambda w: {"conversation": w.conv, "client_activity_id": b"dlc-0",
                                          "options_json": None, "out_json": SLOT},
    "dl_conversation_end": lambda w: {"conversation": w.conv, "user_id": b"user1", "out_json": SLOT},
    "dl_upload_file": lambda w: {"conversation": w.conv, "user_id": b"user1", "path": w.files["tiny"].encode(),
                                 "content_type": None, "filename": None, "out_json": SLOT},
    "dl_upload_bytes": lambda w: {"conversation": w.conv, "user_id": b"user1", "data": b"abc", "length": 3,
                                  "content_type": None, "filename": None, "out_json": SLOT},
    "dl_upload_multipart": lambda w: {"conversation": w.conv, "user_id": b"user1", "out_json": SLOT,
                                      "upload_json": J({"files": [{"dataBase64": "aGVsbG8="}]})},
    "dl_conversation_set_progress": lambda w: {"conversation": w.conv, "progress": NO_PROGRESS,
                                               "userdata": None},
    "dl_set_log_callback": lambda w: {"log": NO_LOG, "userdata": None, "level": 0, "out_json": SLOT},
    "dl_set_thread_timeouts": lambda w: {"options_json": None, "out_json": SLOT},
    # Only refused arguments reach these: a listen that started would poll.
    "dl_conversation_listen": lambda w: {"conversation": w.conv, "options_json": None, "out_json": SLOT},
    "dl_conversation_next": lambda w: {"conversation": w.conv, "timeout_ms": 0, "out_json": SLOT},
    "dl_conversation_fd": lambda w: {"conversation": w.conv, "out_fd": SLOT, "out_json": SLOT},
    "dl_conversation_unlisten": lambda w: {"conversation": w.conv, "out_json": SLOT},
}
# Process-wide and per-thread settings that a case must not leave behind.
RESTORE = {
    "dl_set_log_callback": lambda: LIB.dl_set_log_callback(NO_LOG, None, 0, None),
    "dl_set_thread_timeouts": lambda: LIB.dl_set_thread_timeouts(None, None),
}

OK, IA, IH = "DL_OK", "DL_ERR_INVALID_ARGUMENT", "DL_ERR_INVALID_HANDLE"
TOO_LARGE, IO = "DL_ERR_TOO_LARGE", "DL_ERR_IO"

# -- handles


def handle_cases(function: str, argument: str, kind: str, destructor: bool = False) -> list[Case]:
    """NULL, freed, stale, forged and wrong-kind values for a handle argument."""
    own = (lambda w: w.client) if kind == "client" else (lambda w: w.conv)
    other = (lambda w: w.conv) if kind == "client" else (lambda w: w.client)
    freed = (lambda w: w.freed_client) if kind == "client" else (lambda w: w.freed_conv)
    stale = (lambda w: w.stale_client) if kind == "client" else (lambda w: w.stale_conv)
    rows = [
        ("null", None, OK if destructor else IH),
        ("freed", freed, IH),
        ("stale_slot_reused", stale, IH),
        ("forged_1", 1, IH),
        ("forged_deadbeef", 0xDEADBEEF, IH),
        ("forged_all_ones", 0xFFFF_FFFF_FFFF_FFFF, IH),
        ("forged_real_pointer", lambda w: ctypes.addressof(w.memory), IH),
        ("forged_other_generation", lambda w: own(w) ^ (1 << 32), IH),
        ("forged_high_bit", lambda w: own(w) ^ (1 << 62), IH),
        ("wrong_kind", other, IH),
    ]
    return [C(function, argument, label, value, expect) for label, value, expect in rows]


# -- plain C strings

INVALID_UTF8 = [
    ("utf8_invalid_byte", b"ab\xff"),
    ("utf8_overlong", b"\xc0\xaf"),
    ("utf8_surrogate", b"\xed\xa0\x80"),
    ("utf8_truncated", b"ab\xe2\x82"),
    ("utf8_beyond_10FFFF", b"\xf4\x90\x80\x80"),
]
# An embedded NUL: C stops at it, so the library sees only what precedes it. A NUL
# after a valid prefix is that prefix ("user1\0x" is "user1", correctly accepted);
# the table uses a leading NUL (C sees "") and, inside JSON, the escape \u0000
# (a real NUL in the value), and for JSON a NUL that cuts the document short.
IDS = [  # refused as ids (conversation, user, clientActivityID)
    ("empty", b""),
    ("nul_first", b"\x00user1"),  # C sees ""
    ("dot", b"."),
    ("dotdot", b".."),
    ("control_01", b"a\x01b"),
    ("crlf", b"a\r\nb"),
    ("lf", b"a\nb"),
    ("tab", b"a\tb"),
    ("del_7f", b"a\x7fb"),
    ("c1_0085", b"a\xc2\x85b"),
    ("over_1024_bytes", b"u" * 1025),
]
HEADER_VALUES = [  # refused wherever a value goes into a header
    ("empty", b""),
    ("nul_first", b"\x00" + MARKER.encode()),
    ("crlf_injection", MARKER.encode() + b"\r\nX-Evil: 1"),
    ("lf", MARKER.encode() + b"\nx"),
    ("cr", MARKER.encode() + b"\rx"),
    ("control_01", MARKER.encode() + b"\x01"),
    ("del_7f", MARKER.encode() + b"\x7f"),
    ("tab", MARKER.encode() + b"\tx"),
]


def string_cases(function: str, argument: str, required: bool = True, tag: str = "",
                 **more: Value) -> list[Case]:
    """NULL (when required), invalid UTF-8 and over 8 MiB."""
    rows = [("null", None)] if required else []
    rows += INVALID_UTF8 + [("over_8_MiB", lambda w: huge())]
    return [C(function, argument, tag + label, value, IA, **more) for label, value in rows]


def id_cases(function: str, argument: str, tag: str = "", **more: Value) -> list[Case]:
    return string_cases(function, argument, tag=tag, **more) + [
        C(function, argument, tag + label, value, IA, **more) for label, value in IDS]


def header_cases(function: str, argument: str, **more: Value) -> list[Case]:
    return string_cases(function, argument, **more) + [
        C(function, argument, label, value, IA, **more) for label, value in HEADER_VALUES]


# -- JSON arguments

WRONG = {"bool": True, "int": 7, "float": 1.5, "string": "x", "array": [], "object": {}}
TOP_LEVEL = [("json_null", b"null"), ("json_true", b"true"), ("json_int", b"7"), ("json_float", b"1.5"),
             ("json_string", b'"s"'), ("json_array", b"[]"), ("json_array_of_object", b"[{}]")]


@dataclass(frozen=True)
class JSONArg:
    """A JSON argument: a valid document in which the string `@@` can take any
    text and `"@N"` any number token (so each syntax case has exactly one defect),
    and the keys whose type the library checks."""
    function: str
    argument: str
    doc: Callable[[World], dict]
    number: Optional[bytes]          # the valid value of "@N", None when the doc has none
    fields: dict[tuple, str]         # key path -> expected kind
    required: bool = True
    more: Mapping[str, Value] = field(default_factory=dict)
    tag: str = ""  # prefixes the labels, e.g. "1.1_" for the same argument on a 1.1 handle

    def render(self, world: World, text: bytes = b"", number: Optional[bytes] = None) -> bytes:
        raw = J(self.doc(world))
        if self.number is not None:
            raw = raw.replace(b'"@N"', number if number is not None else self.number)
        return raw.replace(b"@@", text)


def _duplicate_first_key(text: bytes) -> bytes:
    """The same object with its first member written twice."""
    key, value = next(iter(json.loads(text).items()))
    return b"{" + J(key) + b":" + J(value) + b"," + text[1:]


def _set(document: Any, path: tuple, value: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else target[key]
    target[path[-1]] = value
    return document


def json_cases(arg: JSONArg) -> list[Case]:
    f, a, more, tag = arg.function, arg.argument, dict(arg.more), arg.tag

    def syntax(label: str, make: Callable[[World], bytes]) -> Case:
        return C(f, a, tag + label, make, IA, **more)

    def spliced(transform: Callable[[bytes], bytes]) -> Callable[[World], bytes]:
        return lambda w: transform(arg.render(w))

    cases = [C(f, a, tag + "null", None, IA, **more)] if arg.required else []
    cases += [
        syntax("empty", lambda w: b""),
        syntax("whitespace_only", lambda w: b" \t\r\n"),
        syntax("truncated", spliced(lambda t: t[:-1])),
        syntax("mismatched_bracket", spliced(lambda t: t[:-1] + b"]")),
        syntax("trailing_comma", spliced(lambda t: t[:-1] + b",}")),
        syntax("duplicate_key", spliced(_duplicate_first_key)),
        syntax("single_quotes", spliced(lambda t: t.replace(b'"', b"'"))),
        syntax("two_values", spliced(lambda t: t + b" " + t)),
        syntax("trailing_garbage", spliced(lambda t: t + b" x")),
        syntax("bom", spliced(lambda t: b"\xef\xbb\xbf" + t)),
        syntax("comment", spliced(lambda t: t[:-1] + b"/* c */}")),
        syntax("nul_truncates", spliced(lambda t: t[:-1] + b"\x00}")),  # C sees no closing brace
        syntax("nested_129_deep", lambda w: b"[" * 129 + b"]" * 129),
        # Valid JSON but for its size: 8 MiB of whitespace inside the object.
        syntax("over_8_MiB", spliced(lambda t: b"{" + huge(8 * MiB, b" ") + t[1:])),
    ]
    if b"@@" in J(arg.doc(_DocWorld)):
        for label, raw in [("string_invalid_utf8", b"\xff"), ("string_overlong_utf8", b"\xc0\xaf"),
                           ("string_utf8_surrogate", b"\xed\xa0\x80"), ("string_raw_control", b"\x01"),
                           ("string_raw_newline", b"\n"), ("string_lone_surrogate", b"\\ud800"),
                           ("string_lone_low_surrogate", b"\\udc00"), ("string_bad_escape", b"\\x41"),
                           ("string_short_unicode_escape", b"\\u12")]:
            cases.append(syntax(label, lambda w, raw=raw: arg.render(w, text=raw)))
    if arg.number is not None:
        for label, raw in [("number_nan", b"NaN"), ("number_infinity", b"Infinity"),
                           ("number_minus_infinity", b"-Infinity"), ("number_leading_zero", b"01"),
                           ("number_plus", b"+1"), ("number_hex", b"0x10"), ("number_trailing_dot", b"1."),
                           ("number_leading_dot", b".5"), ("number_bare_minus", b"-")]:
            cases.append(syntax(label, lambda w, raw=raw: arg.render(w, number=raw)))
    cases += [C(f, a, tag + label, raw, IA, **more) for label, raw in TOP_LEVEL]
    for path, kind in arg.fields.items():
        for wrong, value in WRONG.items():
            if wrong == kind:
                continue
            label = tag + "type_" + ".".join(map(str, path)) + "_" + wrong
            cases.append(C(f, a, label, lambda w, path=path, value=value: J(_set(
                json.loads(arg.render(w)), path, value)), IA, **more))
    return cases


class _DocWorld:  # enough of a World to render documents at collection time
    url = "http://127.0.0.1:9"


def doc_case(function: str, argument: str, label: str, make: Callable[[World], Any], expect: str = IA,
             **more: Value) -> Case:
    """A semantic case: a well-formed document of the right type that is still refused."""
    return C(function, argument, label, lambda w: J(make(w)), expect, **more)


CONFIG = JSONArg("dl_client_new", "config_json",
                 lambda w: {"endpoint": w.url, "secret": SECRET, "userAgent": "ua-@@", "timeoutMs": "@N",
                            "retry": {"maxAttempts": 1, "baseDelayMs": 1, "maxDelayMs": 1}},
                 b"5000",
                 {("endpoint",): "string", ("protocol",): "string", ("secret",): "string",
                  ("token",): "string", ("timeoutMs",): "int", ("connectTimeoutMs",): "int",
                  ("retry",): "object", ("retry", "maxAttempts"): "int", ("retry", "baseDelayMs"): "int",
                  ("retry", "maxDelayMs"): "int", ("userAgent",): "string", ("caFile",): "string",
                  ("proxy",): "string", ("insecureSkipTlsVerify",): "bool", ("allowInsecureHttp",): "bool",
                  ("maxUploadBytes",): "int"})
START_REQUEST = {"user": {"id": "dl_user", "name": "name-@@"}, "trustedOrigins": ["https://example.com"]}
START_FIELDS = {("user",): "object", ("user", "id"): "string", ("user", "name"): "string",
                ("trustedOrigins",): "array", ("trustedOrigins", 0): "string"}
TOKEN_REQUEST = JSONArg("dl_token_generate", "request_json", lambda w: START_REQUEST, None, START_FIELDS,
                        required=False)
START = JSONArg("dl_conversation_start", "request_json", lambda w: START_REQUEST, None, START_FIELDS,
                required=False)
STATE = JSONArg("dl_conversation_open", "state_json",
                lambda w: {"conversationId": "c1", "streamUrl": "wss://example.com/s@@", "expires_in": "@N"},
                b"1800",
                {("conversationId",): "string", ("token",): "string", ("watermark",): "string",
                 ("streamUrl",): "string", ("expires_in",): "int", ("tokenExpiresAt",): "string",
                 ("tokenLifetime",): "int", ("reconnect",): "bool"})
ACTIVITY = JSONArg("dl_send_activity", "activity_json",
                   lambda w: {"type": "message", "from": {"id": "user1"}, "text": "hi@@", "value": "@N",
                              "channelData": {"clientActivityID": "dlc-1"}},
                   b"1",
                   {("type",): "string", ("from",): "object", ("from", "id"): "string",
                    ("channelData",): "object", ("channelData", "clientActivityID"): "string"})
MESSAGE = JSONArg("dl_send_activity", "activity_json",
                  lambda w: {"from": "user1", "text": "hi@@", "value": "@N", "channelData": {}},
                  b"1", {("from",): "string", ("channelData",): "object"},
                  more={"conversation": lambda w: w.conv11}, tag="1.1_")
WAIT = JSONArg("dl_conversation_wait", "options_json",
               lambda w: {"timeoutMs": "@N", "intervalMs": 50, "afterSendMs": 0, "userId": "user@@",
                          "includeOwn": False},
               b"0",
               {("timeoutMs",): "int", ("intervalMs",): "int", ("afterSendMs",): "int", ("userId",): "string",
                ("includeOwn",): "bool"}, required=False)
CONFIRM = JSONArg("dl_conversation_confirm", "options_json", lambda w: {"timeoutMs": "@N"}, b"0",
                  {("timeoutMs",): "int"}, required=False)
MANIFEST = JSONArg("dl_upload_multipart", "upload_json",
                   lambda w: {"activity": {"type": "message", "text": "t@@", "value": "@N"},
                              "files": [{"dataBase64": "aGVsbG8=", "contentType": "text/plain",
                                         "filename": "a.txt"}]},
                   b"1",
                   {("activity",): "object", ("files",): "array", ("files", 0): "object",
                    ("files", 0, "path"): "string", ("files", 0, "dataBase64"): "string",
                    ("files", 0, "contentType"): "string", ("files", 0, "filename"): "string"})
LISTEN = JSONArg("dl_conversation_listen", "options_json",
                 lambda w: {"mode": "polling@@", "pollIntervalMs": "@N", "includeOwn": False, "maxQueued": 10},
                 b"1000",
                 {("mode",): "string", ("pollIntervalMs",): "int", ("includeOwn",): "bool", ("maxQueued",): "int"},
                 required=False)
THREAD_TIMEOUTS = JSONArg("dl_set_thread_timeouts", "options_json",
                          lambda w: {"timeoutMs": "@N", "connectTimeoutMs": 1000}, b"2000",
                          {("timeoutMs",): "int", ("connectTimeoutMs",): "int"}, required=False)


# The "@@" of a JSON argument, in the position of an id or a header value.
def in_doc(arg: JSONArg, label: str, value: str, path: tuple, expect: str = IA) -> Case:
    return C(arg.function, arg.argument, arg.tag + label,
             lambda w: J(_set(json.loads(arg.render(w)), path, value)), expect, **dict(arg.more))


JSON_IDS = [(label, raw.decode("utf-8")) for label, raw in IDS if label != "nul_first"] + [
    ("nul_escape", "a\u0000b")]
JSON_HEADERS = [(label, raw.decode("utf-8")) for label, raw in HEADER_VALUES if label != "nul_first"] + [
    ("nul_escape", MARKER + "\u0000x")]
CT_BAD = [  # content types refused as not `type/subtype` or unsafe
    ("empty", b""), ("no_slash", b"text"), ("no_subtype", b"text/"), ("no_type", b"/plain"),
    ("two_slashes", b"a/b/c"), ("space_in_token", b"te xt/plain"), ("separator_in_token", b"te(xt/plain"),
    ("crlf_injection", b"text/plain\r\nX-Evil: 1"), ("lf", b"text/plain\nx"), ("control_01", b"text/pl\x01ain"),
    ("del_7f", b"text/plain\x7f"),
]


def build_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.extend

    # dl_client_new
    add(json_cases(CONFIG))
    cfg = lambda w, **kv: {"endpoint": w.url, "secret": SECRET, **kv}  # noqa: E731
    no_secret = lambda w, **kv: {"endpoint": w.url, **kv}  # noqa: E731
    for label, make in [
        ("unknown_key", lambda w: cfg(w, timeout=5)),
        ("no_credential", lambda w: no_secret(w)),
        ("secret_and_token", lambda w: cfg(w, token=TOKEN)),
        ("protocol_3", lambda w: cfg(w, protocol="3")),
        ("protocol_2.0", lambda w: cfg(w, protocol="2.0")),
        ("protocol_empty", lambda w: cfg(w, protocol="")),
        ("endpoint_ftp", lambda w: cfg(w, endpoint="ftp://127.0.0.1/")),
        ("endpoint_no_scheme", lambda w: cfg(w, endpoint="127.0.0.1:3978")),
        ("endpoint_empty", lambda w: cfg(w, endpoint="")),
        ("endpoint_no_host", lambda w: cfg(w, endpoint="https://")),
        ("endpoint_http_not_loopback", lambda w: cfg(w, endpoint="http://example.com")),
        ("endpoint_user_credentials", lambda w: cfg(w, endpoint="https://user:" + MARKER + "@example.com")),
        ("endpoint_query", lambda w: cfg(w, endpoint=w.url + "/?x=1")),
        ("endpoint_fragment", lambda w: cfg(w, endpoint=w.url + "/#x")),
        ("endpoint_space", lambda w: cfg(w, endpoint=w.url + "/a b")),
        ("endpoint_crlf", lambda w: cfg(w, endpoint=w.url + "\r\nX-Evil: 1")),
        ("endpoint_nul_escape", lambda w: cfg(w, endpoint=w.url + "\u0000.evil")),
        ("timeoutMs_0", lambda w: cfg(w, timeoutMs=0)),
        ("timeoutMs_negative", lambda w: cfg(w, timeoutMs=-1)),
        ("timeoutMs_over_a_day", lambda w: cfg(w, timeoutMs=86_400_001)),
        ("timeoutMs_2^63", lambda w: cfg(w, timeoutMs=2**63)),
        ("connectTimeoutMs_0", lambda w: cfg(w, connectTimeoutMs=0)),
        ("retry_maxAttempts_0", lambda w: cfg(w, retry={"maxAttempts": 0})),
        ("retry_maxAttempts_101", lambda w: cfg(w, retry={"maxAttempts": 101})),
        ("retry_baseDelayMs_negative", lambda w: cfg(w, retry={"baseDelayMs": -1})),
        ("retry_unknown_key", lambda w: cfg(w, retry={"attempts": 2})),
        ("maxUploadBytes_0", lambda w: cfg(w, maxUploadBytes=0)),
        ("maxUploadBytes_over_2^40", lambda w: cfg(w, maxUploadBytes=2**40 + 1)),
    ]:
        add([doc_case("dl_client_new", "config_json", label, make)])
    add([C("dl_client_new", "config_json", "timeoutMs_1e400",  # json.dumps would write Infinity
           lambda w: J(cfg(w))[:-1] + b', "timeoutMs": 1e400}', IA)])
    for key in ("secret", "token"):
        add([C("dl_client_new", "config_json", f"{key}_{label}",
               lambda w, key=key, value=value: J({"endpoint": w.url, key: value}), IA)
             for label, value in JSON_HEADERS])
    for key in ("userAgent", "proxy", "caFile"):
        add([C("dl_client_new", "config_json", f"{key}_{label}",
               lambda w, key=key, value=value: J({"endpoint": w.url, "secret": SECRET, key: value}), IA)
             for label, value in JSON_HEADERS if label != "empty" or key == "userAgent"])
    add([C("dl_client_new", "out_client", "null", None, IA)])

    # dl_client_free
    add(handle_cases("dl_client_free", "client", "client", destructor=True))

    # dl_token_generate, dl_conversation_start: the same request document
    for function, arg in (("dl_token_generate", TOKEN_REQUEST), ("dl_conversation_start", START)):
        add(handle_cases(function, "client", "client"))
        add(json_cases(arg))
        add([in_doc(arg, "user_id_" + label, value, ("user", "id")) for label, value in JSON_IDS])
        add([doc_case(function, "request_json", label, make) for label, make in [
            ("unknown_key", lambda w: {"users": []}),
            ("user_unknown_key", lambda w: {"user": {"id": "dl_u", "role": "admin"}}),
            ("trustedOrigins_of_numbers", lambda w: {"trustedOrigins": [1]}),
        ]])
        add([doc_case(function, "request_json", "on_1.1_" + label, make, client=lambda w: w.client11)
             for label, make in [("user", lambda w: {"user": {"id": "dl_u"}}),
                                 ("trustedOrigins", lambda w: {"trustedOrigins": []})]])
    add([C("dl_conversation_start", "out_conversation", "null", None, IA)])

    # dl_token_refresh
    add(handle_cases("dl_token_refresh", "client", "client"))
    add(header_cases("dl_token_refresh", "token"))
    add([C("dl_token_refresh", "token", "on_1.1_not_a_conversation_token", b"tok-of-nobody", IA,
           client=lambda w: w.client11)])

    # dl_conversation_open
    add(handle_cases("dl_conversation_open", "client", "client"))
    add(json_cases(STATE))
    add([in_doc(STATE, "conversationId_" + label, value, ("conversationId",)) for label, value in JSON_IDS])
    add([in_doc(STATE, "token_" + label, value, ("token",)) for label, value in JSON_HEADERS])
    add([doc_case("dl_conversation_open", "state_json", label, make) for label, make in [
        ("no_conversationId", lambda w: {"token": TOKEN}),
        ("conversationId_null", lambda w: {"conversationId": None}),
        ("unknown_key", lambda w: {"conversationId": "c1", "conversation": "c1"}),
        ("tokenExpiresAt_31_February", lambda w: {"conversationId": "c1", "tokenExpiresAt": "2026-02-31T00:00:00Z"}),
        ("tokenExpiresAt_no_T", lambda w: {"conversationId": "c1", "tokenExpiresAt": "2026-11-21 02:30:00Z"}),
        ("tokenExpiresAt_offset", lambda w: {"conversationId": "c1", "tokenExpiresAt": "2026-11-21T02:30:00+01:00"}),
        ("tokenExpiresAt_before_1970", lambda w: {"conversationId": "c1", "tokenExpiresAt": "1969-12-31T23:59:59Z"}),
        ("tokenExpiresAt_words", lambda w: {"conversationId": "c1", "tokenExpiresAt": "tomorrow"}),
        ("expires_in_negative", lambda w: {"conversationId": "c1", "expires_in": -1}),
        ("expires_in_over_2^31", lambda w: {"conversationId": "c1", "expires_in": 2**31 + 1}),
        ("tokenLifetime_0", lambda w: {"conversationId": "c1", "tokenLifetime": 0}),
        ("expires_in_and_tokenExpiresAt", lambda w: {"conversationId": "c1", "expires_in": 60,
                                                     "tokenExpiresAt": "2030-01-01T00:00:00Z"}),
    ]])
    add([doc_case("dl_conversation_open", "state_json", "reconnect_on_1.1",
                  lambda w: {"conversationId": "c1", "reconnect": True}, client=lambda w: w.client11)])
    add([C("dl_conversation_open", "out_conversation", "null", None, IA)])

    # handle-only functions
    for function in ("dl_conversation_info", "dl_conversation_state", "dl_conversation_refresh",
                     "dl_get_activities"):
        add(handle_cases(function, "conversation", "conversation"))
    add([C("dl_conversation_refresh", "conversation", "uses_the_client_secret", lambda w: w.conv_secret, IA)])
    add(handle_cases("dl_conversation_free", "conversation", "conversation", destructor=True))

    # dl_send_activity
    add(handle_cases("dl_send_activity", "conversation", "conversation"))
    add(json_cases(ACTIVITY))
    add([in_doc(ACTIVITY, "from.id_" + label, value, ("from", "id")) for label, value in JSON_IDS])
    add([doc_case("dl_send_activity", "activity_json", label, make, expect) for label, make, expect in [
        ("no_type", lambda w: {"from": {"id": "user1"}}, IA),
        ("no_from", lambda w: {"type": "message"}, IA),
        ("from_without_id", lambda w: {"type": "message", "from": {"name": "n"}}, IA),
        ("over_262144_bytes", lambda w: {"type": "message", "from": {"id": "u"}, "text": "x" * 262_144}, TOO_LARGE),
    ]])
    add(json_cases(MESSAGE))
    add([in_doc(MESSAGE, "from_" + label, value, ("from",)) for label, value in JSON_IDS])
    add([doc_case("dl_send_activity", "activity_json", "1.1_over_262144_bytes",
                  lambda w: {"from": "u", "text": "x" * 262_144}, TOO_LARGE, conversation=lambda w: w.conv11)])

    # dl_send_text
    add(handle_cases("dl_send_text", "conversation", "conversation"))
    add(id_cases("dl_send_text", "user_id"))
    add(string_cases("dl_send_text", "text"))
    add([C("dl_send_text", "text", "over_262144_bytes", b"x" * 262_144, TOO_LARGE),
         C("dl_send_text", "text", "exactly_8_MiB", lambda w: huge(8 * MiB, b"x"), TOO_LARGE),
         C("dl_send_text", "text", "over_262144_bytes_1.1", b"x" * 262_144, TOO_LARGE,
           conversation=lambda w: w.conv11)])

    # dl_conversation_wait
    add(handle_cases("dl_conversation_wait", "conversation", "conversation"))
    add(json_cases(WAIT))
    add([in_doc(WAIT, "userId_" + label, value, ("userId",)) for label, value in JSON_IDS])
    add([doc_case("dl_conversation_wait", "options_json", label, make) for label, make in [
        ("timeoutMs_negative", lambda w: {"timeoutMs": -1}),
        ("timeoutMs_over_a_day", lambda w: {"timeoutMs": 86_400_001}),
        ("intervalMs_49", lambda w: {"timeoutMs": 0, "intervalMs": 49}),
        ("intervalMs_over_an_hour", lambda w: {"timeoutMs": 0, "intervalMs": 3_600_001}),
        ("afterSendMs_negative", lambda w: {"timeoutMs": 0, "afterSendMs": -1}),
        ("afterSendMs_over_a_minute", lambda w: {"timeoutMs": 0, "afterSendMs": 60_001}),
        ("unknown_key", lambda w: {"timeout": 0}),
    ]])

    # dl_conversation_confirm
    add(handle_cases("dl_conversation_confirm", "conversation", "conversation"))
    add(id_cases("dl_conversation_confirm", "client_activity_id"))
    add(json_cases(CONFIRM))
    add([doc_case("dl_conversation_confirm", "options_json", label, make) for label, make in [
        ("timeoutMs_negative", lambda w: {"timeoutMs": -1}),
        ("timeoutMs_over_an_hour", lambda w: {"timeoutMs": 3_600_001}),
        ("unknown_key", lambda w: {"timeoutMs": 0, "intervalMs": 500}),
    ]])
    add([C("dl_conversation_confirm", "conversation", "on_1.1", lambda w: w.conv11, IA)])

    # dl_conversation_end
    add(handle_cases("dl_conversation_end", "conversation", "conversation"))
    add(id_cases("dl_conversation_end", "user_id"))
    add(id_cases("dl_conversation_end", "user_id", tag="1.1_", conversation=lambda w: w.conv11))

    # dl_upload_file
    add(handle_cases("dl_upload_file", "conversation", "conversation"))
    add(id_cases("dl_upload_file", "user_id"))
    add(string_cases("dl_upload_file", "path"))
    add([C("dl_upload_file", "path", label, value, expect) for label, value, expect in [
        ("empty", b"", IA),
        ("nul_first", b"\x00/etc/passwd", IA),
        ("missing", lambda w: w.files["missing"].encode(), IO),
        ("directory", lambda w: w.files["dir"].encode(), IO),
        ("dev_null", b"/dev/null", IO),
        ("symlink_loop", lambda w: w.files["loop"].encode(), IO),
        ("file_as_directory", lambda w: (w.files["tiny"] + "/x").encode(), IO),
        ("name_too_long", lambda w: (w.files["root"] + "/" + "n" * 300).encode(), IO),
    ]])
    add([C("dl_upload_file", "path", "over_maxUploadBytes", lambda w: w.files["big"].encode(), TOO_LARGE,
           conversation=lambda w: w.conv_small)])
    add(string_cases("dl_upload_file", "content_type", required=False))
    add([C("dl_upload_file", "content_type", label, value, IA) for label, value in CT_BAD])
    add(string_cases("dl_upload_file", "filename", required=False))
    add([C("dl_upload_file", "filename", "empty", b"", IA),
         C("dl_upload_file", "filename", "nul_first", b"\x00a.txt", IA)])

    # dl_upload_bytes
    add(handle_cases("dl_upload_bytes", "conversation", "conversation"))
    add(id_cases("dl_upload_bytes", "user_id"))
    add([C("dl_upload_bytes", "data", "null_with_length_3", None, IA),
         C("dl_upload_bytes", "length", "SIZE_MAX_on_3_bytes", 2**64 - 1, TOO_LARGE),
         C("dl_upload_bytes", "length", "2^63_on_3_bytes", 2**63, TOO_LARGE),
         C("dl_upload_bytes", "length", "over_default_4_MiB_on_3_bytes", 4 * MiB + 1, TOO_LARGE),
         C("dl_upload_bytes", "length", "over_maxUploadBytes", 65, TOO_LARGE, data=b"x" * 65,
           conversation=lambda w: w.conv_small)])
    add(string_cases("dl_upload_bytes", "content_type", required=False))
    add([C("dl_upload_bytes", "content_type", label, value, IA) for label, value in CT_BAD])
    add(string_cases("dl_upload_bytes", "filename", required=False))
    add([C("dl_upload_bytes", "filename", "empty", b"", IA),
         C("dl_upload_bytes", "filename", "nul_first", b"\x00a.txt", IA)])

    # dl_upload_multipart
    add(handle_cases("dl_upload_multipart", "conversation", "conversation"))
    add(id_cases("dl_upload_multipart", "user_id"))
    add(json_cases(MANIFEST))
    add([in_doc(MANIFEST, "activity.from.id_" + label, value, ("activity", "from", "id"))
         for label, value in JSON_IDS])
    add([in_doc(MANIFEST, "contentType_" + label, value.decode("utf-8"), ("files", 0, "contentType"))
         for label, value in CT_BAD])
    file0 = lambda **kv: {"files": [kv]}  # noqa: E731
    add([doc_case("dl_upload_multipart", "upload_json", label, make, expect) for label, make, expect in [
        ("no_files", lambda w: {"activity": {"text": "x"}}, IA),
        ("files_empty", lambda w: {"files": []}, IA),
        ("files_null", lambda w: {"files": None}, IA),
        ("file_empty_object", lambda w: {"files": [{}]}, IA),
        ("file_path_and_data", lambda w: file0(path=w.files["tiny"], dataBase64="aGVsbG8="), IA),
        ("file_unknown_key", lambda w: file0(dataBase64="aGVsbG8=", name="a.txt"), IA),
        ("unknown_key", lambda w: {"files": [{"dataBase64": "aGVsbG8="}], "text": "x"}, IA),
        ("base64_short", lambda w: file0(dataBase64="a"), IA),
        ("base64_unpadded", lambda w: file0(dataBase64="aGVsbG8"), IA),
        ("base64_space", lambda w: file0(dataBase64="aGVs bG8="), IA),
        ("base64_newline", lambda w: file0(dataBase64="aGVsbG8=\n"), IA),
        ("base64_nonzero_pad_bits", lambda w: file0(dataBase64="aGVsbG9="), IA),
        ("base64_all_padding", lambda w: file0(dataBase64="===="), IA),
        ("base64_url_alphabet", lambda w: file0(dataBase64="aGV-bG8_"), IA),
        ("path_empty", lambda w: file0(path=""), IA),
        ("path_missing", lambda w: file0(path=w.files["missing"]), IO),
        ("path_directory", lambda w: file0(path=w.files["dir"]), IO),
        ("path_dev_null", lambda w: file0(path="/dev/null"), IO),
        ("filename_empty", lambda w: file0(dataBase64="aGVsbG8=", filename=""), IA),
        ("filename_nul_escape", lambda w: file0(dataBase64="aGVsbG8=", filename="a\u0000b"), IA),
        ("activity_type_number", lambda w: {"activity": {"type": 7}, "files": [{"dataBase64": "aGVsbG8="}]}, IA),
        ("activity_from_string_on_3.0", lambda w: {"activity": {"from": "u"},
                                                   "files": [{"dataBase64": "aGVsbG8="}]}, IA),
        ("activity_over_262144_bytes", lambda w: {"activity": {"text": "x" * 262_144},
                                                  "files": [{"dataBase64": "aGVsbG8="}]}, TOO_LARGE),
    ]])
    add([doc_case("dl_upload_multipart", "upload_json", "over_maxUploadBytes",
                  lambda w: file0(dataBase64="eHh4" * 40), TOO_LARGE, conversation=lambda w: w.conv_small),
         doc_case("dl_upload_multipart", "upload_json", "path_over_maxUploadBytes",
                  lambda w: file0(path=w.files["big"]), TOO_LARGE, conversation=lambda w: w.conv_small),
         doc_case("dl_upload_multipart", "upload_json", "activity_from_object_on_1.1",
                  lambda w: {"activity": {"from": {"id": "u"}}, "files": [{"dataBase64": "aGVsbG8="}]}, IA,
                  conversation=lambda w: w.conv11)])

    # dl_conversation_set_progress: the progress function and userdata are never checked
    # (NULL removes the callback; userdata is only handed back), so only the handle is hostile.
    add(handle_cases("dl_conversation_set_progress", "conversation", "conversation"))
    add([C("dl_conversation_set_progress", "userdata", "forged_pointer_is_never_dereferenced", 0xDEADBEEF, OK)])

    if "dl_set_log_callback" in SIGNATURES:
        # The level is checked; the function pointer and userdata cannot be.
        add([C("dl_set_log_callback", "level", label, value, IA, log=lambda w: w.log_sink)
             for label, value in [("minus_1", -1), ("5", 5), ("99", 99), ("INT32_MAX", 2**31 - 1),
                                  ("INT32_MIN", -(2**31))]])
        add([C("dl_set_log_callback", "level", "5_with_NULL_log", 5, IA),
             C("dl_set_log_callback", "userdata", "forged_pointer_with_logging_off", 0xDEADBEEF, OK)])
    if "dl_set_thread_timeouts" in SIGNATURES:
        add(json_cases(THREAD_TIMEOUTS))
        add([doc_case("dl_set_thread_timeouts", "options_json", label, make) for label, make in [
            ("timeoutMs_0", lambda w: {"timeoutMs": 0}),
            ("timeoutMs_negative", lambda w: {"timeoutMs": -1}),
            ("timeoutMs_over_a_day", lambda w: {"timeoutMs": 86_400_001}),
            ("connectTimeoutMs_0", lambda w: {"connectTimeoutMs": 0}),
            ("unknown_key", lambda w: {"timeout": 100}),
        ]])

    if "dl_conversation_listen" in SIGNATURES:
        add(handle_cases("dl_conversation_listen", "conversation", "conversation"))
        add(json_cases(LISTEN))
        add([doc_case("dl_conversation_listen", "options_json", label, make) for label, make in [
            ("unknown_key", lambda w: {"interval": 100}),
            ("mode_unknown", lambda w: {"mode": "stream"}),
            ("mode_capitalised", lambda w: {"mode": "Auto"}),
            ("mode_empty", lambda w: {"mode": ""}),
            ("pollIntervalMs_0", lambda w: {"pollIntervalMs": 0}),
            ("pollIntervalMs_49", lambda w: {"pollIntervalMs": 49}),
            ("pollIntervalMs_over_an_hour", lambda w: {"pollIntervalMs": 3_600_001}),
            ("pollIntervalMs_float", lambda w: {"pollIntervalMs": 1000.5}),
            ("maxQueued_0", lambda w: {"maxQueued": 0}),
            ("maxQueued_negative", lambda w: {"maxQueued": -1}),
            ("maxQueued_over_a_million", lambda w: {"maxQueued": 1_000_001}),
        ]])
        # 1.1 has no WebSocket stream: refused, nothing started.
        add([doc_case("dl_conversation_listen", "options_json", "streamSilenceMs_below_200",
                      lambda w: {"streamSilenceMs": 199}, IA),
             doc_case("dl_conversation_listen", "options_json", "streamSilenceMs_string",
                      lambda w: {"streamSilenceMs": "1000"}, IA),
             doc_case("dl_conversation_listen", "options_json", "1.1_mode_websocket",
                      lambda w: {"mode": "websocket"}, "DL_ERR_UNSUPPORTED", conversation=lambda w: w.conv11)])
        add(handle_cases("dl_conversation_next", "conversation", "conversation"))
        add([C("dl_conversation_next", "timeout_ms", label, value, IA)
             for label, value in [("minus_2", -2), ("INT32_MIN", -(2**31)),
                                  ("0_not_listening", 0), ("minus_1_not_listening", -1)]])
        add(handle_cases("dl_conversation_fd", "conversation", "conversation"))
        add([C("dl_conversation_fd", "out_fd", "null", None, IA)])
        add(handle_cases("dl_conversation_unlisten", "conversation", "conversation"))

    # out_json NULL: allowed, the status alone comes back.
    without_handle = {
        "dl_client_new": ("null_with_a_null_config", {"config_json": None}, IA),
        "dl_set_log_callback": ("null_with_level_99", {"level": 99}, IA),
        "dl_set_thread_timeouts": ("null_with_ill_formed_options", {"options_json": b"{"}, IA),
    }
    for function, params in SIGNATURES.items():
        if function in without_handle:
            label, overrides, expect = without_handle[function]
            add([Case(function, "out_json", label, {"out_json": None, **overrides}, expect)])
        elif any(name == "out_json" for name, _ in params):
            add([Case(function, "out_json", "null_with_a_null_handle", {"out_json": None, params[0][0]: None}, IH)])
    return cases


CASES = build_cases()
assert len({case.id for case in CASES}) == len(CASES), "duplicate case ids"


# ---- running one case --------------------------------------------------------------------------

def invoke(world: World, case: Case) -> tuple[int, Optional[str], dict[str, Optional[int]]]:
    """Calls the function with the case's arguments; returns the status, the
    out_json text (freed) and the out handles written (non-NULL ones freed)."""
    values = BASE[case.function](world)
    for name, value in case.overrides.items():
        values[name] = value(world) if callable(value) and not isinstance(value, ctypes._CFuncPtr) else value
    args, slots = [], {}
    for name, _ in SIGNATURES[case.function]:
        value = values[name]
        if value is SLOT:
            slots[name] = c_void_p(SENTINEL)
            args.append(byref(slots[name]))
        else:
            args.append(value)
    try:
        status = getattr(LIB, case.function)(*args)
    finally:
        if case.function in RESTORE:
            assert RESTORE[case.function]() == STATUS["DL_OK"]
    text = None
    if "out_json" in slots:
        assert slots["out_json"].value != SENTINEL, "out_json was not written"
        text = take(slots["out_json"])
    handles = {}
    for name in ("out_client", "out_conversation"):
        if name in slots:
            assert slots[name].value != SENTINEL, f"{name} was not written"
            handles[name] = slots[name].value
            if slots[name].value:
                free = LIB.dl_client_free if name == "out_client" else LIB.dl_conversation_free
                assert free(slots[name].value) == STATUS["DL_OK"]
    return status, text, handles


def check_error(status: int, text: Optional[str]) -> dict:
    """The error JSON of a refusal: its fields, and no secret in it."""
    assert text is not None, "an error must write the error JSON"
    document = json.loads(text)
    assert set(document) == {"error"}
    error = document["error"]
    assert error["status"] == status
    assert error["name"] == status_name(status) == LIB.dl_status_name(status).decode()
    assert isinstance(error["message"], str) and error["message"]
    assert error["delivery"] == "not_sent"
    assert error["attempts"] == 0
    for secret in NEVER_OUT:
        assert secret not in text, f"the error JSON carries {secret!r}"
    return error


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=case.marks) for case in CASES])
def test_hostile_input_gets_its_documented_status_and_sends_nothing(wire, world, case):
    before = wire.count()
    status, text, handles = invoke(world, case)
    assert status_name(status) == case.expect, text
    if status != STATUS["DL_OK"]:
        if "out_json" in dict(SIGNATURES[case.function]) and case.overrides.get("out_json", SLOT) is not None:
            check_error(status, text)
        for name, value in handles.items():
            assert value is None, f"{name} must be NULL after an error"
    elif text is not None:
        for secret in NEVER_OUT:
            assert secret not in text
    assert wire.count() == before, "a refused argument must send nothing"


@pytest.mark.parametrize("function", ["dl_upload_file", "dl_upload_multipart"])
def test_a_fifo_is_not_a_regular_file_and_never_blocks(emulator, world, function):
    """Counted in the table as one more hostile `path` per upload function; run
    apart because it may block: after 1 s the test opens the FIFO for writing,
    which releases the library, and reports the hang."""
    fifo = world.files["fifo"]
    if function == "dl_upload_file":
        case = Case(function, "path", "fifo", {"path": fifo.encode()}, IO)
    else:
        case = Case(function, "upload_json", "fifo", {"upload_json": J({"files": [{"path": fifo}]})}, IO)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(invoke(world, case)), daemon=True)
    worker.start()
    worker.join(1)
    hung = worker.is_alive()
    if hung:
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        worker.join(10)
        os.close(writer)
    assert not hung, f"{function} on a FIFO did not return within 1 s"
    status, text, _ = result[0]
    assert status_name(status) == IO
    check_error(status, text)
    assert emulator.requests() == []


# ---- the four functions without a status -------------------------------------------------------

@pytest.mark.parametrize("value", [-1, 23, 1000, 2**31 - 1, -(2**31)])
def test_dl_status_name_of_a_hostile_code_is_DL_ERR_UNKNOWN(value):
    assert LIB.dl_status_name(value) == b"DL_ERR_UNKNOWN"


def test_dl_string_free_of_NULL_is_a_no_op():
    LIB.dl_string_free(None)


def test_the_table_covers_every_exported_function():
    statusless = {"dl_version", "dl_version_number", "dl_status_name", "dl_string_free"}
    assert set(SIGNATURES) | statusless == set(SYMBOLS)
    covered = {case.function for case in CASES}
    assert covered == set(SIGNATURES)
    for function, params in SIGNATURES.items():
        hostile = {case.argument for case in CASES if case.function == function}
        for name, _ in params:
            if name in ("progress", "log", "out_json") or name.startswith("out_"):
                continue  # a function pointer can be any function; out slots are covered above
            assert name in hostile, f"{function}: no hostile case for {name}"


@pytest.mark.parametrize("arg", [CONFIG, TOKEN_REQUEST, START, STATE, ACTIVITY, MESSAGE, WAIT, CONFIRM, MANIFEST,
                                 THREAD_TIMEOUTS, LISTEN],
                         ids=lambda arg: f"{arg.function}-{arg.argument}")
def test_every_JSON_base_document_is_valid_so_each_case_has_one_defect(arg):
    rendered = arg.render(_DocWorld)
    json.loads(rendered)  # strict: a syntax case starts from valid JSON
    for raw in (b"\xff", b"\\ud800"):
        assert b"@@" not in arg.render(_DocWorld, text=raw)


def test_the_base_documents_are_accepted_where_accepting_sends_nothing(emulator, world):
    for function, arg in (("dl_client_new", CONFIG), ("dl_conversation_open", STATE)):
        status, text, _ = invoke(world, Case(function, arg.argument, "valid", {arg.argument: arg.render(world)}, OK))
        assert status == STATUS["DL_OK"], text
    assert emulator.requests() == []


# ---- hostile input that is meant to reach the wire ---------------------------------------------

def start(world: World, protocol: str = "3.0") -> tuple[int, str]:
    client = world.client if protocol == "3.0" else world.client11
    handle = c_void_p()
    out = c_void_p()
    assert LIB.dl_conversation_start(client, None, byref(handle), byref(out)) == STATUS["DL_OK"]
    started = json.loads(take(out))
    world._conversations.append(handle.value)
    return handle.value, started["conversationId"]


def call(function: str, *args: Any) -> tuple[int, Optional[dict]]:
    out = c_void_p(SENTINEL)
    status = getattr(LIB, function)(*args, byref(out))
    assert out.value != SENTINEL
    text = take(out)
    if text is not None:
        for secret in (SECRET, TOKEN, TOKEN11, MARKER):
            assert secret not in text
    return status, json.loads(text) if text else None


UNSAFE_CONVERSATION_IDS = ["a/b", "a?b=c", "a#b", "a%2Fb", "a/../b", "../x", "%2e%2e", "..%2F", "a b", "ü",
                           "./x", "~", "a;b", "a&watermark=9"]


@pytest.mark.parametrize("protocol", ["3.0", "1.1"])
@pytest.mark.parametrize("conversation_id", UNSAFE_CONVERSATION_IDS)
def test_an_id_with_url_syntax_stays_one_encoded_path_segment(emulator, world, protocol, conversation_id):
    client = world.client if protocol == "3.0" else world.client11
    conversation = world.open(client, {"conversationId": conversation_id})
    status, result = call("dl_get_activities", conversation)
    assert status_name(status) == "DL_ERR_NOT_FOUND", result
    [request] = emulator.requests()
    root = "/v3/directline" if protocol == "3.0" else "/api"
    leaf = "activities" if protocol == "3.0" else "messages"
    assert request["path"] == f"{root}/conversations/{quote(conversation_id, safe='')}/{leaf}"
    assert request["query"] == ""


UNSAFE_USER_IDS = ["a/b?c#d%e&userId=x", "a b+c", "ü", "..x", "a\\b"]


@pytest.mark.parametrize("user_id", UNSAFE_USER_IDS)
def test_a_user_id_with_url_syntax_stays_one_query_value_and_one_json_string(emulator, world, user_id):
    conversation, conversation_id = start(world)
    status, _ = call("dl_upload_bytes", conversation, user_id.encode(), b"abc", 3, None, None)
    assert status == STATUS["DL_OK"]
    status, _ = call("dl_send_text", conversation, user_id.encode(), b"hi")
    assert status == STATUS["DL_OK"]
    _, upload, send = emulator.requests()
    assert upload["path"] == f"/v3/directline/conversations/{conversation_id}/upload"
    assert upload["query"] == "userId=" + quote(user_id, safe="")
    assert json.loads(send["body"])["from"]["id"] == user_id


UNSAFE_FILENAMES = ['a"b.txt', 'a\r\nX-Evil: 1\r\n.txt', '"\r\n"', 'semi;colon="x".txt', "lf\nonly.txt",
                    'x"; filename="evil.exe']


def _escaped(name: str) -> str:
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@pytest.mark.parametrize("filename", UNSAFE_FILENAMES)
def test_a_raw_upload_filename_cannot_add_a_header(emulator, world, filename):
    conversation, conversation_id = start(world)
    status, result = call("dl_upload_bytes", conversation, b"user1", b"abc", 3, b"text/plain", filename.encode())
    assert status == STATUS["DL_OK"], result
    request = emulator.requests()[-1]
    assert request["headers"]["content-disposition"] == f'name="file"; filename="{_escaped(filename)}"'
    assert "x-evil" not in request["headers"]
    stored = emulator.conversation(conversation_id)["activities"][0]
    assert stored["attachments"][0]["name"] == filename  # the emulator decodes %22 %0D %0A back


@pytest.mark.parametrize("filename", UNSAFE_FILENAMES)
def test_an_upload_path_whose_name_has_quotes_or_newlines_cannot_add_a_header(emulator, world, tmp_path,
                                                                           filename):
    path = tmp_path / filename.replace("/", "_")
    path.write_bytes(b"abc")
    conversation, _ = start(world)
    status, result = call("dl_upload_file", conversation, b"user1", os.fsencode(path), None, None)
    assert status == STATUS["DL_OK"], result
    request = emulator.requests()[-1]
    assert request["headers"]["content-disposition"] == f'name="file"; filename="{_escaped(path.name)}"'
    assert "x-evil" not in request["headers"]


@pytest.mark.parametrize("filename", UNSAFE_FILENAMES)
def test_a_multipart_filename_cannot_add_a_part_header(emulator, world, filename):
    conversation, conversation_id = start(world)
    manifest = {"files": [{"dataBase64": "aGVsbG8=", "contentType": "text/plain", "filename": filename}]}
    status, result = call("dl_upload_multipart", conversation, b"user1", J(manifest))
    assert status == STATUS["DL_OK"], result
    body = emulator.requests()[-1]["body"]
    assert f'Content-Disposition: form-data; name="file"; filename="{_escaped(filename)}"\r\n' in body
    assert "X-Evil" not in body.replace(_escaped(filename), "")
    stored = emulator.conversation(conversation_id)["activities"][0]
    assert stored["attachments"][0]["name"] == filename


CONTROL_FILENAMES = [("control_01", "a\x01b.txt"), ("del_7f", "a\x7fb.txt"), ("escape_1b", "a\x1b[31mb.txt"),
                     ("backspace_08", "a\x08b.txt")]


def _no_control_bytes(text: str) -> bool:
    return not any(ord(ch) < 0x20 and ch != "\t" or ord(ch) == 0x7F for ch in text)


@pytest.mark.parametrize("filename", [pytest.param(name, id=label)
                                      for label, name in CONTROL_FILENAMES])
@pytest.mark.parametrize("how", ["bytes", "multipart"])
def test_a_filename_with_other_control_characters_is_refused_or_escaped(emulator, world, how, filename):
    conversation, _ = start(world)
    if how == "bytes":
        status, _ = call("dl_upload_bytes", conversation, b"user1", b"abc", 3, b"text/plain", filename.encode())
    else:
        status, _ = call("dl_upload_multipart", conversation, b"user1",
                         J({"files": [{"dataBase64": "aGVsbG8=", "filename": filename}]}))
    uploads = [request for request in emulator.requests() if request["path"].endswith("/upload")]
    if status == STATUS["DL_ERR_INVALID_ARGUMENT"]:
        assert uploads == []
    else:
        assert status == STATUS["DL_OK"]
        [upload] = uploads
        headers = upload["headers"].get("content-disposition", "")
        part_headers = "".join(line for line in upload["body"].split("\r\n") if "filename=" in line)
        assert _no_control_bytes(headers) and _no_control_bytes(part_headers)


# ---- callbacks that call back in ---------------------------------------------------------------

def _reentrant_args(world: World, conversation: int, client: int) -> dict[str, dict[str, Any]]:
    """Valid arguments for each function, on the live conversation and its client."""
    args = {}
    for function in SIGNATURES:
        values = BASE[function](world)
        if "conversation" in values:
            values["conversation"] = conversation
        if "client" in values:
            values["client"] = client
        args[function] = values
    args["dl_token_refresh"]["token"] = b"some-token"
    return args


@pytest.mark.parametrize("function", list(SIGNATURES))
def test_a_callback_that_calls_back_in_gets_DL_ERR_REENTRANT_and_nothing_is_sent(emulator, world, function):
    conversation, _ = start(world)
    inner_args = _reentrant_args(world, conversation, world.client)[function]
    outcome: dict[str, Any] = {}

    def progress(_userdata, done, total):
        if "status" in outcome:
            return 0
        try:
            args, slots = [], {}
            for name, _ in SIGNATURES[function]:
                value = inner_args[name]
                if value is SLOT:
                    slots[name] = c_void_p(SENTINEL)
                    args.append(byref(slots[name]))
                else:
                    args.append(value)
            outcome["status"] = getattr(LIB, function)(*args)
            outcome["text"] = take(slots["out_json"]) if "out_json" in slots else None
            outcome["handles"] = [slots[name].value for name in ("out_client", "out_conversation") if name in slots]
            # The functions without a status still work inside a callback.
            outcome["pure"] = (LIB.dl_version(), LIB.dl_version_number(), LIB.dl_status_name(20))
            LIB.dl_string_free(None)
        except BaseException as error:  # noqa: BLE001 - reported after the C call
            outcome["error"] = error
        return 0

    callback = PROGRESS(progress)
    assert LIB.dl_conversation_set_progress(conversation, callback, None) == STATUS["DL_OK"]
    status, result = call("dl_upload_bytes", conversation, b"user1", b"p" * 20_000, 20_000, None, None)
    assert LIB.dl_conversation_set_progress(conversation, NO_PROGRESS, None) == STATUS["DL_OK"]
    if "error" in outcome:
        raise outcome["error"]
    assert status == STATUS["DL_OK"], result
    assert status_name(outcome["status"]) == "DL_ERR_REENTRANT"
    if outcome["text"] is not None:
        error = json.loads(outcome["text"])["error"]
        assert error["status"] == STATUS["DL_ERR_REENTRANT"] and error["delivery"] == "not_sent"
        assert error["attempts"] == 0 and SECRET not in outcome["text"]
    else:
        assert "out_json" not in dict(SIGNATURES[function])
    assert outcome["handles"] in ([], [None])
    assert outcome["pure"][2] == b"DL_ERR_REENTRANT" and outcome["pure"][0] == LIB.dl_version()
    paths = [(request["method"], request["path"].rsplit("/", 1)[-1]) for request in emulator.requests()]
    assert paths == [("POST", "conversations"), ("POST", "upload")], "the re-entrant call sent something"
    # The handles the callback tried to free are still alive.
    assert call("dl_conversation_info", conversation)[0] == STATUS["DL_OK"]
    assert LIB.dl_token_generate(world.client, None, None) == STATUS["DL_OK"]


def test_a_callback_on_one_conversation_may_not_touch_another_either(emulator, world):
    conversation, _ = start(world)
    statuses = []

    def progress(_userdata, done, total):
        if not statuses:
            statuses.append(LIB.dl_conversation_free(world.conv))       # another live handle
            statuses.append(LIB.dl_client_free(world.client11))         # another client
            statuses.append(LIB.dl_get_activities(world.conv11, None))  # another client's conversation
        return 0

    callback = PROGRESS(progress)
    assert LIB.dl_conversation_set_progress(conversation, callback, None) == STATUS["DL_OK"]
    assert call("dl_upload_bytes", conversation, b"user1", b"abc", 3, None, None)[0] == STATUS["DL_OK"]
    assert LIB.dl_conversation_set_progress(conversation, NO_PROGRESS, None) == STATUS["DL_OK"]
    assert [status_name(status) for status in statuses] == ["DL_ERR_REENTRANT"] * 3
    assert call("dl_conversation_info", world.conv)[0] == STATUS["DL_OK"]
    assert len(emulator.requests()) == 2


def test_a_callback_on_another_thread_is_not_mistaken_for_re_entry(emulator, world):
    """Only the thread running the callback is refused: other threads calling
    in at the same time work normally."""
    conversation, _ = start(world)
    other_thread: list[int] = []
    release = threading.Event()

    def progress(_userdata, done, total):
        if not other_thread:
            worker = threading.Thread(target=lambda: other_thread.append(
                LIB.dl_conversation_info(conversation, None)))
            worker.start()
            worker.join(10)
            release.set()
        return 0

    callback = PROGRESS(progress)
    assert LIB.dl_conversation_set_progress(conversation, callback, None) == STATUS["DL_OK"]
    began = time.monotonic()
    assert call("dl_upload_bytes", conversation, b"user1", b"abc", 3, None, None)[0] == STATUS["DL_OK"]
    assert LIB.dl_conversation_set_progress(conversation, NO_PROGRESS, None) == STATUS["DL_OK"]
    assert release.is_set() and time.monotonic() - began < 10
    assert other_thread == [STATUS["DL_OK"]]


@pytest.mark.skipif("dl_set_log_callback" not in SIGNATURES, reason="the library has no dl_set_log_callback")
def test_a_log_callback_that_calls_back_in_gets_DL_ERR_REENTRANT(emulator, world):
    conversation, _ = start(world)
    statuses: list[tuple[str, int]] = []

    def log(_userdata, level, message):
        if not statuses:
            statuses.append(("info", LIB.dl_conversation_info(conversation, None)))
            statuses.append(("free", LIB.dl_conversation_free(conversation)))
            statuses.append(("send", LIB.dl_send_text(conversation, b"user1", b"from a log callback", None)))
            # Replacing the callback from inside it would wait for itself.
            statuses.append(("unset", LIB.dl_set_log_callback(NO_LOG, None, 0, None)))

    callback = LOG(log)
    assert LIB.dl_set_log_callback(callback, None, 3, None) == STATUS["DL_OK"]
    try:
        status, result = call("dl_get_activities", conversation)
    finally:
        assert LIB.dl_set_log_callback(NO_LOG, None, 0, None) == STATUS["DL_OK"]
    assert status == STATUS["DL_OK"], result
    assert [(what, status_name(code)) for what, code in statuses] == [
        (what, "DL_ERR_REENTRANT") for what in ("info", "free", "send", "unset")]
    assert [request["method"] for request in emulator.requests()] == ["POST", "GET"]
    assert call("dl_conversation_info", conversation)[0] == STATUS["DL_OK"]
