"""Uploads through the Python binding, against the emulator, on both protocols: the
exact bytes and headers the service receives, the multipart body, refusals that
send nothing, and progress callbacks (cancelling, raising, calling back in)."""

from __future__ import annotations

import base64
import email.message
import gc
import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import directline
from support import SECRET, items, python_env, sender

USER = "user1"
LIMIT = 65_536  # the small clients' max_upload_bytes, and the emulator's limit with them
MIB = 1 << 20


# ---- helpers ---------------------------------------------------------------------------

def pattern(size: int) -> bytes:
    """`size` bytes that are not all alike, so a shifted or truncated copy shows."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uploads(emulator: Any) -> list[dict]:
    """The upload requests in the emulator's log, oldest first."""
    return [entry for entry in emulator.requests() if entry["path"].endswith("/upload")]


def only_upload(emulator: Any) -> dict:
    (entry,) = uploads(emulator)
    return entry


def logged_body(entry: dict) -> bytes:
    assert not entry["bodyTruncated"]
    if entry["bodyEncoding"] == "base64":
        return base64.b64decode(entry["body"])
    return entry["body"].encode("utf-8")


def multipart(entry: dict) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    """The boundary and the (headers, content) of each part of a logged multipart body."""
    header = email.message.Message()
    header["Content-Type"] = entry["headers"]["content-type"]
    assert header.get_content_type() == "multipart/form-data"
    boundary = header.get_param("boundary")
    assert isinstance(boundary, str) and boundary
    body = logged_body(entry)
    delimiter = b"--" + boundary.encode("ascii")
    assert body.startswith(delimiter + b"\r\n")
    closing = b"\r\n" + delimiter + b"--\r\n"
    assert body.endswith(closing)
    parts = []
    for chunk in body[len(delimiter) + 2:-len(closing)].split(b"\r\n" + delimiter + b"\r\n"):
        head, separator, content = chunk.partition(b"\r\n\r\n")
        assert separator
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            name, colon, value = line.partition(": ")
            assert colon, line
            headers[name.lower()] = value
        parts.append((headers, content))
    return boundary, parts


def user_items(conversation: Any) -> list[dict]:
    """What the user sent, as the client reads it back (advances the watermark)."""
    return [item for item in items(conversation.get_activities()) if sender(item) == USER]


def bot_replies(emulator: Any, conversation: Any) -> list[str]:
    stored = emulator.conversation(conversation.id)
    return [item["text"] for item in stored.get("activities", stored.get("messages", []))
            if sender(item) == "echo-bot"]


def attachment_url(attachment: dict) -> str:
    """3.0 attachments carry `contentUrl`, 1.1 ones `url`."""
    return attachment["contentUrl"] if "contentUrl" in attachment else attachment["url"]


def fetch(attachment: dict) -> bytes:
    with urllib.request.urlopen(attachment_url(attachment), timeout=10) as response:
        return response.read()


def assert_upload_result(result: dict, protocol: str, conversation: Any) -> None:
    """3.0 answers the id of the activity carrying the files; 1.1 answers nothing."""
    if protocol == "1.1":
        assert result == {}
        return
    assert set(result) == {"id"}
    assert result["id"].startswith(conversation.id + "|")


def stored_count(emulator: Any, conversation: Any) -> int:
    stored = emulator.conversation(conversation.id)
    return len(stored.get("activities", stored.get("messages", [])))


@contextmanager
def nothing_sent(emulator: Any) -> Iterator[None]:
    """Asserts that the block puts no request on the wire."""
    before = len(emulator.requests())
    yield
    assert len(emulator.requests()) == before, "nothing may be sent"


class Recorder:
    """A progress callable that records its calls and the threads they came on."""

    def __init__(self, verdict: Optional[bool] = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.threads: set[int] = set()
        self.verdict = verdict

    def __call__(self, done: int, total: int) -> Optional[bool]:
        self.calls.append((done, total))
        self.threads.add(threading.get_ident())
        return self.verdict

    def assert_complete(self, total: int) -> None:
        assert self.calls, "progress was never called"
        assert self.calls[-1] == (total, total)
        assert {call_total for _, call_total in self.calls} == {total}
        done = [call_done for call_done, _ in self.calls]
        assert done == sorted(done), "done must never decrease"


@pytest.fixture
def small_client(emulator, protocol):
    """A client whose upload limit is LIMIT bytes, as is the emulator's."""
    emulator.configure(maxUploadBytes=LIMIT)
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol, timeout_ms=10_000,
                           retry={"max_attempts": 1}, max_upload_bytes=LIMIT) as made:
        yield made


@pytest.fixture
def small(small_client):
    with small_client.start_conversation() as started:
        yield started


# ---- the bytes that arrive -------------------------------------------------------------

@pytest.mark.parametrize("size", [1, MIB], ids=["1 byte", "1 MiB"])
def test_upload_file_delivers_the_files_exact_bytes(conversation, protocol, emulator, tmp_path, size):
    data = pattern(size)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)

    result = conversation.upload_file(USER, path)

    assert_upload_result(result, protocol, conversation)
    entry = only_upload(emulator)
    assert (entry["bodyLength"], entry["bodySha256"]) == (size, sha256(data))
    (sent,) = user_items(conversation)
    if protocol == "3.0":
        assert sent["id"] == result["id"]
    (attachment,) = sent["attachments"]
    assert (attachment["name"], attachment["contentType"]) == ("payload.bin", "application/octet-stream")
    assert fetch(attachment) == data
    assert bot_replies(emulator, conversation) == [
        f"received 1 attachment(s): payload.bin (application/octet-stream, {size} bytes)"]


@pytest.mark.parametrize("size", [MIB, MIB + 1, 3 * MIB], ids=["1 MiB", "1 MiB + 1", "3 MiB"])
@pytest.mark.parametrize("method", ["upload_file", "upload_bytes"])
def test_no_request_asks_for_100_continue(conversation, emulator, tmp_path, method, size):
    """libcurl asks for 100-continue before a body over 1 MiB and waits up to a second
    for it. The library turns that off for streamed bodies and sends bodies up to
    1 MiB from memory, which never ask, so no request carries `Expect`."""
    data = pattern(size)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)

    conversation.send_text(USER, "before")
    if method == "upload_file":
        conversation.upload_file(USER, path)
    else:
        conversation.upload_bytes(USER, data)
    conversation.send_text(USER, "after")

    assert (only_upload(emulator)["bodyLength"], only_upload(emulator)["bodySha256"]) == (size, sha256(data))
    assert [entry["headers"].get("expect") for entry in emulator.requests()] == [None] * len(emulator.requests())


def strided(data: bytes) -> memoryview:
    """A non-contiguous view whose bytes are `data`."""
    spread = bytearray(2 * len(data))
    spread[::2] = data
    return memoryview(spread)[::2]


@pytest.mark.parametrize("wrap", [
    bytes, bytearray, lambda data: memoryview(bytearray(data)), memoryview, strided,
], ids=["bytes", "bytearray", "writable memoryview", "read-only memoryview", "strided memoryview"])
def test_upload_bytes_delivers_the_exact_bytes_of_any_buffer(conversation, protocol, emulator, wrap):
    data = pattern(3000)
    buffer = wrap(data)
    assert bytes(buffer) == data

    result = conversation.upload_bytes(USER, buffer)

    assert_upload_result(result, protocol, conversation)
    entry = only_upload(emulator)
    assert (entry["bodyLength"], entry["bodySha256"]) == (3000, sha256(data))
    (sent,) = user_items(conversation)
    (attachment,) = sent["attachments"]
    assert attachment["name"] == "file"
    assert fetch(attachment) == data


@pytest.mark.parametrize("method", ["upload_file", "upload_bytes"])
def test_exactly_the_limit_is_sent_and_one_byte_more_is_refused_unsent(small, protocol, emulator, tmp_path,
                                                                      method):
    def upload(size: int) -> dict:
        data = pattern(size)
        if method == "upload_bytes":
            return small.upload_bytes(USER, data)
        path = tmp_path / f"{size}.bin"
        path.write_bytes(data)
        return small.upload_file(USER, path)

    assert_upload_result(upload(LIMIT), protocol, small)
    entry = only_upload(emulator)
    assert (entry["bodyLength"], entry["bodySha256"]) == (LIMIT, sha256(pattern(LIMIT)))
    (sent,) = user_items(small)
    assert fetch(sent["attachments"][0]) == pattern(LIMIT)

    with nothing_sent(emulator), pytest.raises(directline.TooLargeError) as caught:
        upload(LIMIT + 1)
    assert caught.value.status == directline.Status.ERR_TOO_LARGE
    assert caught.value.delivery == "not_sent"
    assert stored_count(emulator, small) == 2  # the first upload and the bot's answer only


def test_a_multipart_body_over_the_limit_is_refused_unsent(small, emulator):
    files = [{"data": pattern(LIMIT // 2), "filename": "a.bin"}, {"data": pattern(LIMIT // 2), "filename": "b.bin"}]
    with nothing_sent(emulator), pytest.raises(directline.TooLargeError):
        small.upload(USER, files)
    assert stored_count(emulator, small) == 0


# ---- raw upload headers ----------------------------------------------------------------

@pytest.mark.parametrize("name, kind, content_type, filename, expected_type, expected_name", [
    ("x.png", str, None, None, "image/png", "x.png"),
    ("x.png", Path, None, None, "image/png", "x.png"),
    ("x.png", bytes, None, None, "image/png", "x.png"),
    ("data.unknownext", str, None, None, "application/octet-stream", "data.unknownext"),
    ("noextension", str, None, None, "application/octet-stream", "noextension"),
    ("x.png", str, "text/plain", None, "text/plain", "x.png"),
    ("x.bin", Path, None, "x.png", "image/png", "x.png"),
    ("x.bin", Path, "application/json; charset=utf-8", "report.txt", "application/json; charset=utf-8",
     "report.txt"),
])
def test_upload_file_sends_the_given_or_guessed_type_and_the_file_name(
        conversation, emulator, tmp_path, name, kind, content_type, filename, expected_type, expected_name):
    path = tmp_path / name
    path.write_bytes(b"abc")
    argument = str(path) if kind is str else bytes(path) if kind is bytes else path

    conversation.upload_file(USER, argument, content_type=content_type, filename=filename)

    entry = only_upload(emulator)
    assert entry["query"] == f"userId={USER}"
    assert entry["headers"]["content-type"] == expected_type
    assert entry["headers"]["content-disposition"] == f'name="file"; filename="{expected_name}"'
    (attachment,) = user_items(conversation)[0]["attachments"]
    assert (attachment["name"], attachment["contentType"]) == (expected_name, expected_type)


@pytest.mark.parametrize("content_type, filename, expected_type, expected_name", [
    (None, None, "application/octet-stream", "file"),
    (None, "x.png", "image/png", "x.png"),
    ("text/plain", None, "text/plain", "file"),
])
def test_upload_bytes_sends_the_given_or_guessed_type_and_file_by_default(
        conversation, emulator, content_type, filename, expected_type, expected_name):
    conversation.upload_bytes(USER, b"abc", content_type=content_type, filename=filename)
    headers = only_upload(emulator)["headers"]
    assert headers["content-type"] == expected_type
    assert headers["content-disposition"] == f'name="file"; filename="{expected_name}"'


# ---- multipart -------------------------------------------------------------------------

def test_multipart_sends_the_activity_first_then_each_file_in_order(conversation, protocol, emulator,
                                                                    tmp_path):
    png, blob = pattern(700), pattern(300)[::-1]
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "c.dat").write_bytes(blob)
    files = [tmp_path / "a.png",
             {"data": b"hello", "content_type": "text/plain", "filename": "b.txt"},
             {"path": str(tmp_path / "c.dat"), "filename": "renamed.bin"}]

    result = conversation.upload(USER, files, activity={"text": "see attached"})

    boundary, parts = multipart(only_upload(emulator))
    assert len(parts) == 4
    activity_type = ("application/vnd.microsoft.activity" if protocol == "3.0"
                     else "application/vnd.microsoft.bot.message")
    assert [headers["content-type"] for headers, _ in parts] == [
        activity_type, "image/png", "text/plain", "application/octet-stream"]
    assert [headers["content-disposition"] for headers, _ in parts[1:]] == [
        'form-data; name="file"; filename="a.png"',
        'form-data; name="file"; filename="b.txt"',
        'form-data; name="file"; filename="renamed.bin"']
    assert [content for _, content in parts[1:]] == [png, b"hello", blob]
    sent_activity = json.loads(parts[0][1])
    assert sent_activity["text"] == "see attached"
    if protocol == "3.0":
        assert set(result) == {"id", "clientActivityID"}
        assert sent_activity["type"] == "message"
        assert sent_activity["from"] == {"id": USER}
        assert sent_activity["channelData"] == {"clientActivityID": result["clientActivityID"]}
    else:
        assert result == {}
        assert sent_activity["from"] == USER

    (sent,) = user_items(conversation)
    assert sent["text"] == "see attached"
    assert [(a["name"], a["contentType"]) for a in sent["attachments"]] == [
        ("a.png", "image/png"), ("b.txt", "text/plain"), ("renamed.bin", "application/octet-stream")]
    assert [fetch(a) for a in sent["attachments"]] == [png, b"hello", blob]
    if protocol == "3.0":
        assert sent["id"] == result["id"]
        assert sent["channelData"]["clientActivityID"] == result["clientActivityID"]
    assert bot_replies(emulator, conversation) == [
        "received 3 attachment(s): a.png (image/png, 700 bytes), b.txt (text/plain, 5 bytes), "
        "renamed.bin (application/octet-stream, 300 bytes); text: see attached"]
    assert boundary.encode() not in png + blob


def test_multipart_without_an_activity_sends_only_the_files(conversation, protocol, emulator):
    result = conversation.upload(USER, [{"data": b"one", "filename": "1.txt"},
                                        {"data": bytearray(b"two"), "filename": "2.txt"}])

    assert_upload_result(result, protocol, conversation)
    _, parts = multipart(only_upload(emulator))
    assert [(headers["content-type"], content) for headers, content in parts] == [
        ("text/plain", b"one"), ("text/plain", b"two")]
    (sent,) = user_items(conversation)
    assert "text" not in sent
    assert [fetch(a) for a in sent["attachments"]] == [b"one", b"two"]
    assert bot_replies(emulator, conversation) == [
        "received 2 attachment(s): 1.txt (text/plain, 3 bytes), 2.txt (text/plain, 3 bytes)"]


def test_multipart_bodies_end_with_the_closing_boundary_and_each_has_its_own(conversation, emulator):
    conversation.upload(USER, [{"data": b"x"}])
    conversation.upload(USER, [{"data": b"x"}])
    first, second = uploads(emulator)
    boundaries = []
    for entry in (first, second):
        boundary, _ = multipart(entry)
        assert logged_body(entry).endswith(f"\r\n--{boundary}--\r\n".encode())
        boundaries.append(boundary)
    assert boundaries[0] != boundaries[1]


@pytest.mark.parametrize("files, message", [
    ("a.txt", "a list"),
    ({"data": b"x"}, "a list"),
    ([b"x"], r"files\[0\] must be a path"),
    ([42], r"files\[0\] must be a path"),
    ([{"data": b"x", "contentType": "text/plain"}], "unknown key 'contentType'"),
    ([{"data": "text, not bytes"}], r"files\[0\]\['data'\] must be bytes"),
    ([{"path": 7}], r"files\[0\]\['path'\] must be a str"),
    ([{"data": b"x", "path": "a.txt"}], "exactly one"),
    ([{"filename": "a.txt"}], "exactly one"),
    ([], "files"),
])
def test_malformed_multipart_files_are_refused_unsent(conversation, emulator, files, message):
    with nothing_sent(emulator), pytest.raises(directline.InvalidArgumentError, match=message) as caught:
        conversation.upload(USER, files)
    assert caught.value.delivery == "not_sent"


# ---- hostile file names ----------------------------------------------------------------

HOSTILE = [('a"b', "a%22b"), ("x\r\nInjected: 1", "x%0D%0AInjected: 1"), ("new\nline", "new%0Aline")]


@pytest.mark.parametrize("name, escaped", HOSTILE, ids=["quote", "CRLF header", "LF"])
def test_a_hostile_raw_file_name_cannot_inject_a_header_and_round_trips(conversation, emulator, name, escaped):
    conversation.upload_bytes(USER, b"abc", filename=name)

    headers = only_upload(emulator)["headers"]
    assert "injected" not in headers
    assert headers["content-disposition"] == f'name="file"; filename="{escaped}"'
    (attachment,) = user_items(conversation)[0]["attachments"]
    assert attachment["name"] == name


@pytest.mark.parametrize("name, escaped", HOSTILE, ids=["quote", "CRLF header", "LF"])
def test_a_hostile_multipart_file_name_cannot_inject_a_header_and_round_trips(conversation, emulator, name,
                                                                             escaped):
    conversation.upload(USER, [{"data": b"abc", "filename": name}])

    entry = only_upload(emulator)
    assert "injected" not in entry["headers"]
    ((part_headers, content),) = multipart(entry)[1]
    assert set(part_headers) == {"content-type", "content-disposition"}
    assert part_headers["content-disposition"] == f'form-data; name="file"; filename="{escaped}"'
    assert content == b"abc"
    (attachment,) = user_items(conversation)[0]["attachments"]
    assert attachment["name"] == name


# ---- refusals --------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain\r\nX: 1", "nonsense"])
@pytest.mark.parametrize("method", ["upload_file", "upload_bytes", "upload"])
def test_a_bad_content_type_is_refused_unsent(conversation, emulator, tmp_path, method, content_type):
    path = tmp_path / "a.txt"
    path.write_bytes(b"abc")
    calls = {
        "upload_file": lambda: conversation.upload_file(USER, path, content_type=content_type),
        "upload_bytes": lambda: conversation.upload_bytes(USER, b"abc", content_type=content_type),
        "upload": lambda: conversation.upload(USER, [{"path": path, "content_type": content_type}]),
    }
    with nothing_sent(emulator), pytest.raises(directline.InvalidArgumentError) as caught:
        calls[method]()
    assert caught.value.status == directline.Status.ERR_INVALID_ARGUMENT
    assert caught.value.delivery == "not_sent"


@pytest.mark.parametrize("target", ["missing", "directory"])
@pytest.mark.parametrize("method", ["upload_file", "upload"])
def test_a_missing_file_or_a_directory_is_a_FileError_and_nothing_is_sent(conversation, emulator, tmp_path,
                                                                          method, target):
    path = tmp_path / "missing.txt" if target == "missing" else tmp_path
    with nothing_sent(emulator), pytest.raises(directline.FileError) as caught:
        if method == "upload_file":
            conversation.upload_file(USER, path)
        else:
            conversation.upload(USER, [{"data": b"fine"}, path])
    assert caught.value.status == directline.Status.ERR_IO
    assert caught.value.name == "DL_ERR_IO"
    assert isinstance(caught.value, OSError)
    assert caught.value.delivery == "not_sent"


@pytest.mark.parametrize("call", [
    lambda c: c.upload_file(USER, 42),
    lambda c: c.upload_file(USER, "a\0b"),
    lambda c: c.upload_bytes(USER, "text, not bytes"),
    lambda c: c.upload_bytes(USER, b"x", filename="a\0b"),
    lambda c: c.upload_bytes(None, b"x"),
], ids=["path not a path", "NUL in path", "data not bytes", "NUL in filename", "no user"])
def test_arguments_of_the_wrong_type_are_refused_unsent(conversation, emulator, call):
    with nothing_sent(emulator), pytest.raises(directline.InvalidArgumentError):
        call(conversation)


# ---- progress --------------------------------------------------------------------------

def test_progress_rises_to_the_total_of_a_raw_upload(conversation, protocol, emulator, tmp_path):
    path = tmp_path / "p.bin"
    path.write_bytes(pattern(200_000))
    recorder = Recorder()

    result = conversation.upload_file(USER, path, progress=recorder)

    assert_upload_result(result, protocol, conversation)
    recorder.assert_complete(200_000)
    assert recorder.threads == {threading.get_ident()}


def test_progress_rises_to_the_total_of_a_multipart_body(conversation, emulator):
    recorder = Recorder()
    conversation.upload(USER, [{"data": pattern(30_000)}], activity={"text": "hi"}, progress=recorder)
    recorder.assert_complete(only_upload(emulator)["bodyLength"])


@pytest.mark.parametrize("verdict", [None, True, 0, 1, ""])
def test_anything_but_False_lets_the_upload_go_on(conversation, emulator, verdict):
    conversation.upload_bytes(USER, pattern(10_000), progress=lambda done, total: verdict)
    assert only_upload(emulator)["bodyLength"] == 10_000


def test_returning_False_cancels_and_nothing_is_stored(conversation, emulator):
    recorder = Recorder(verdict=False)
    with pytest.raises(directline.CancelledError) as caught:
        conversation.upload_bytes(USER, pattern(50_000), progress=recorder)
    assert caught.value.status == directline.Status.ERR_CANCELLED
    assert caught.value.delivery == "not_sent"
    assert len(recorder.calls) == 1
    assert recorder.calls[0][0] < 50_000
    assert stored_count(emulator, conversation) == 0


def test_the_callback_is_removed_when_the_upload_returns(conversation, protocol, emulator):
    recorder = Recorder()
    conversation.upload_bytes(USER, b"abc", progress=recorder)
    calls = len(recorder.calls)
    conversation.upload_bytes(USER, b"def")
    conversation.send_text(USER, "hello")
    with pytest.raises(directline.CancelledError):
        conversation.upload_bytes(USER, b"ghi", progress=lambda done, total: False)
    conversation.upload_bytes(USER, b"jkl")
    assert len(recorder.calls) == calls
    assert [a["name"] for item in user_items(conversation) for a in item.get("attachments", [])] == [
        "file", "file", "file"]


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom("boom"), SystemExit(3)], ids=["Exception", "BaseException"])
@pytest.mark.parametrize("method", ["upload_bytes", "upload"])
def test_an_exception_in_the_callback_cancels_and_is_re_raised(conversation, emulator, capfd, method, error):
    def progress(done: int, total: int) -> None:
        raise error

    with pytest.raises(type(error)) as caught:
        if method == "upload_bytes":
            conversation.upload_bytes(USER, pattern(50_000), progress=progress)
        else:
            conversation.upload(USER, [{"data": pattern(50_000)}], progress=progress)
    assert caught.value is error
    assert caught.value.__context__ is None
    assert stored_count(emulator, conversation) == 0
    assert "Exception ignored" not in capfd.readouterr().err
    conversation.upload_bytes(USER, b"still usable")


def test_a_callback_calling_back_in_gets_ReentrantError_and_the_upload_completes(conversation, protocol,
                                                                                emulator):
    observed: list[BaseException] = []

    def progress(done: int, total: int) -> None:
        for call in (conversation.info,
                     lambda: conversation.send_text(USER, "nested"),
                     lambda: conversation.upload_bytes(USER, b"nested", progress=lambda d, t: None)):
            try:
                call()
            except directline.ReentrantError as error:
                observed.append(error)

    result = conversation.upload_bytes(USER, pattern(20_000), progress=progress)

    assert_upload_result(result, protocol, conversation)
    assert observed and len(observed) % 3 == 0
    assert {error.status for error in observed} == {directline.Status.ERR_REENTRANT}
    (sent,) = user_items(conversation)
    assert fetch(sent["attachments"][0]) == pattern(20_000)


def test_a_progress_that_is_not_callable_is_a_TypeError_and_nothing_is_sent(conversation, emulator):
    with nothing_sent(emulator), pytest.raises(TypeError, match="progress"):
        conversation.upload_bytes(USER, b"x", progress=42)


def test_threads_sharing_a_conversation_each_see_only_their_own_progress(conversation, emulator):
    sizes = {"a": 11_000, "b": 23_000}
    recorders = {name: [] for name in sizes}
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def uploader(name: str) -> None:
        try:
            start.wait()
            for _ in range(8):
                recorder = Recorder()
                conversation.upload_bytes(USER, pattern(sizes[name]), progress=recorder)
                recorders[name].append(recorder)
        except BaseException as error:
            failures.append(error)

    def sender_thread() -> None:
        try:
            start.wait()
            for index in range(8):
                conversation.send_text(USER, f"text {index}")
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=uploader, args=(name,)) for name in sizes]
    threads.append(threading.Thread(target=sender_thread))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    for name, size in sizes.items():
        assert len(recorders[name]) == 8
        for recorder in recorders[name]:
            recorder.assert_complete(size)
            assert len(recorder.threads) == 1
    assert len(uploads(emulator)) == 16


def test_the_binding_lets_go_of_the_progress_callable_when_the_upload_returns(conversation):
    class Progress:
        def __call__(self, done: int, total: int) -> None:
            pass

    progress = Progress()
    alive = weakref.ref(progress)
    conversation.upload_bytes(USER, b"abc", progress=progress)
    del progress
    gc.collect()
    assert alive() is None


SENDS_DURING_PROGRESS_UPLOADS = """
import gc, sys, threading
import directline

with directline.Client(sys.argv[1], secret=sys.argv[2], retry={"max_attempts": 1}) as client:
    with client.start_conversation() as conversation:
        done = threading.Event()

        def send():
            while not done.is_set():
                conversation.send_text("user1", "x" * 200_000)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            for _ in range(200):
                conversation.upload_bytes("user1", b"x" * 10, progress=lambda done, total: None)
                gc.collect()  # frees at once whatever the binding no longer holds
        finally:
            done.set()
            sender.join()
print("ok")
"""


def test_a_send_that_picked_up_the_callback_can_still_call_it_after_the_upload_returned(emulator):
    # The library snapshots the callback when each send starts, so another
    # thread's send may call it after it was cleared: freeing it then crashes
    # the process, or calls whatever took its memory.
    result = subprocess.run([sys.executable, "-c", SENDS_DURING_PROGRESS_UPLOADS, emulator.url, SECRET],
                            env=python_env(), capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


@pytest.mark.parametrize("name", ["ends in a backslash\\", "back\\slash.txt", "50%22off.txt", "100%.txt",
                                  "%25 literal", 'a "quoted" name', "crlf\r\n.txt"])
@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_every_file_name_comes_back_as_itself(conversation, name, how):
    if how == "raw":
        conversation.upload_bytes(USER, b"abc", filename=name)
    else:
        conversation.upload(USER, [{"data": b"abc", "filename": name}])
    (attachment,) = user_items(conversation)[0]["attachments"]
    assert attachment["name"] == name


@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_a_file_that_reports_no_size_is_read_to_its_end(conversation, how):
    # /proc files report a size of 0 and still have content.
    path = "/proc/version"
    expected = open(path, "rb").read()
    assert expected and os.stat(path).st_size == 0
    if how == "raw":
        conversation.upload_file(USER, path)
    else:
        conversation.upload(USER, [path])
    (attachment,) = user_items(conversation)[0]["attachments"]
    assert fetch(attachment) == expected


def test_a_path_need_not_be_utf8_only_the_name_sent(conversation, tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt")  # Latin-1, as old file systems hold it
    with open(path, "wb") as file:
        file.write(b"abc")
    conversation.upload_file(USER, path, filename="cafe.txt")
    (attachment,) = user_items(conversation)[0]["attachments"]
    assert attachment["name"] == "cafe.txt" and fetch(attachment) == b"abc"
    with pytest.raises(directline.InvalidArgumentError, match="filename"):
        conversation.upload_file(USER, path)
