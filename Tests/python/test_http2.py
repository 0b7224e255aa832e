"""HTTP/2: a conversation over h2, directly and inside a proxy's CONNECT tunnel.

Over https:// libcurl offers h2 by ALPN and uses it when the server agrees
(docs/performance.md), through a proxy too: the tunnel carries TLS, and
ALPN happens inside it. The server here is nginx with TLS and h2, answering
the Direct Line 3.0 routes with fixed JSON; its access log records each
request's protocol, which must be HTTP/2.0. A conversation is started,
sent to, uploaded to (bytes from memory, and a file streamed from disk),
and read, with the same results either way.
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

import directline
from recording_proxy import RecordingProxy
from support import SECRET

USER = "user1"
CONVERSATION = "h2conversation"
# Over the library's 1 MiB limit for bodies sent from memory: streamed through
# libcurl's read callback, as DATA frames paced by h2 flow control.
STREAMED_BYTES = (1 << 20) + 4097
SMALL = b"a small file\n"
# start, send, two uploads, get
REQUESTS = 5
ACTIVITIES = [
    {"type": "message", "id": f"{CONVERSATION}|0000000", "from": {"id": USER}, "text": "over h2"},
    {"type": "message", "id": f"{CONVERSATION}|0000001", "from": {"id": "fixed-bot"}, "text": "echo: over h2"},
]

# @PORT@, @DIR@ and @USER@ are filled in by the fixture. `listen ... http2`
# is the spelling nginx 1.22 (Debian 12) knows; later versions also accept it.
NGINX_CONFIG = r"""
@USER@
worker_processes 1;
daemon off;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 64; }

http {
    client_body_temp_path @DIR@/client_body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    default_type application/json;
    client_max_body_size 8m;
    # $request is the request line as received: an internal redirect changes $request_method and $uri.
    log_format protocol '$server_protocol $status $request_length $request';
    access_log @DIR@/access.log protocol;

    map $request_method $activities_answer {
        GET '@PAGE@';
        default '{"id":"@CONVERSATION@|0000000"}';
    }

    server {
        listen 127.0.0.1:@PORT@ ssl http2;
        ssl_certificate @DIR@/server.pem;
        ssl_certificate_key @DIR@/server.key;

        location = /v3/directline/conversations {
            return 200 '{"conversationId":"@CONVERSATION@","token":"fixed-token","expires_in":1800}';
        }
        location = /v3/directline/conversations/@CONVERSATION@/activities {
            return 200 $activities_answer;
        }
        # A `return` would discard the body unread: the mirror reads all of
        # it first (its $request_length is logged), empty_gif then refuses
        # the POST with 405, and error_page turns that into the answer.
        location = /v3/directline/conversations/@CONVERSATION@/upload {
            client_body_buffer_size 4m;
            mirror /discard;
            mirror_request_body on;
            empty_gif;
            error_page 405 =200 /uploaded;
        }
        location = /discard {
            internal;
            access_log off;
            return 204;
        }
        location = /uploaded {
            internal;
            return 200 '{"id":"@CONVERSATION@|0000001"}';
        }
        location / {
            return 404 '{"error":{"code":"NotFound","message":"fixed h2 server"}}';
        }
    }
}
"""


@dataclass(frozen=True)
class Logged:
    protocol: str
    method: str
    path: str
    status: int
    length: int


class Nginx:
    """nginx in the foreground (the test owns its pid), serving h2 over TLS on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            pytest.fail("nginx is not installed (scripts/common.sh installs it)")
        user = ""
        if os.geteuid() == 0:
            # Root's workers would otherwise run as nobody, who cannot read this folder.
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        page = json.dumps({"activities": ACTIVITIES, "watermark": "2"}, separators=(",", ":"))
        for _ in range(5):  # another process may take the port between the probe and nginx
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            config = (NGINX_CONFIG.replace("@USER@", user).replace("@DIR@", str(self.folder))
                      .replace("@PORT@", str(self.port)).replace("@PAGE@", page)
                      .replace("@CONVERSATION@", CONVERSATION))
            (self.folder / "nginx.conf").write_text(config)
            # Its messages go to error.log (-e), read when it does not start.
            self.process = subprocess.Popen(
                [binary, "-p", str(self.folder), "-e", str(self.folder / "error.log"),
                 "-c", str(self.folder / "nginx.conf")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._ready():
                return
            self.stop()
        raise RuntimeError(f"nginx did not start: {(self.folder / 'error.log').read_text()}")

    def _ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> list[Logged]:
        """The access log so far (nginx writes each line as its request ends)."""
        entries = []
        for line in (self.folder / "access.log").read_text().splitlines():
            protocol, status, length, method, target, _ = line.split(" ")
            entries.append(Logged(protocol, method, target.partition("?")[0], int(status), int(length)))
        return entries


class _VersionInfo(ctypes.Structure):
    """The first fields of libcurl's curl_version_info_data, the same in every version."""

    _fields_ = [("age", ctypes.c_int), ("version", ctypes.c_char_p), ("version_num", ctypes.c_uint),
                ("host", ctypes.c_char_p), ("features", ctypes.c_int)]


def libcurl_speaks_http2() -> bool:
    """Whether the libcurl the library uses (already loaded by it) was built with HTTP/2."""
    curl = ctypes.CDLL("libcurl.so.4")
    curl.curl_version_info.restype = ctypes.POINTER(_VersionInfo)
    curl.curl_version_info.argtypes = [ctypes.c_int]
    return bool(curl.curl_version_info(0).contents.features & (1 << 16))  # CURL_VERSION_HTTP2


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    if not libcurl_speaks_http2():
        pytest.skip("this libcurl was built without HTTP/2 (Debian's is built with nghttp2)")
    folder = tmp_path_factory.mktemp("h2")
    # A self-signed certificate for 127.0.0.1 is its own CA file.
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "server.key", "-out", "server.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=folder, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    (folder / "streamed.bin").write_bytes((bytes(range(251)) * (STREAMED_BYTES // 251 + 1))[:STREAMED_BYTES])
    server = Nginx(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def converse(nginx: Nginx, **config: Any) -> list[Logged]:
    """Start, send, upload bytes, upload a streamed file, read; returns what nginx logged for them."""
    before = len(nginx.log())
    settings = {"endpoint": nginx.url, "secret": SECRET, "timeoutMs": 10_000, "retry": {"maxAttempts": 1},
                "caFile": str(nginx.folder / "server.pem"), **config}
    with directline.Client.from_config(settings) as client:
        with client.start_conversation() as conversation:
            assert conversation.id == CONVERSATION
            assert conversation.send_text(USER, "over h2")["id"] == f"{CONVERSATION}|0000000"
            uploaded = conversation.upload_bytes(USER, SMALL, content_type="text/plain", filename="small.txt")
            assert uploaded["id"] == f"{CONVERSATION}|0000001"
            streamed = conversation.upload_file(USER, nginx.folder / "streamed.bin",
                                                content_type="application/octet-stream")
            assert streamed["id"] == f"{CONVERSATION}|0000001"
            page = conversation.get_activities()
    assert page["activities"] == ACTIVITIES
    assert page["watermark"] == "2"
    # nginx writes each line as its request ends, which may be just after the answer.
    deadline = time.monotonic() + 5
    while len(nginx.log()) < before + REQUESTS and time.monotonic() < deadline:
        time.sleep(0.01)
    return nginx.log()[before:]


def assert_all_over_h2(logged: list[Logged]) -> None:
    base = f"/v3/directline/conversations/{CONVERSATION}"
    assert [(entry.method, entry.path, entry.status) for entry in logged] == [
        ("POST", "/v3/directline/conversations", 200), ("POST", f"{base}/activities", 200),
        ("POST", f"{base}/upload", 200), ("POST", f"{base}/upload", 200), ("GET", f"{base}/activities", 200)]
    assert {entry.protocol for entry in logged} == {"HTTP/2.0"}, logged
    # The streamed upload arrived whole (the length counts the headers too).
    assert logged[3].length > STREAMED_BYTES


def test_a_conversation_over_http2(nginx: Nginx) -> None:
    assert_all_over_h2(converse(nginx))


def test_a_conversation_over_http2_through_a_connect_proxy(nginx: Nginx, proxy: RecordingProxy) -> None:
    assert_all_over_h2(converse(nginx, proxy=proxy.url))
    seen = proxy.seen()
    assert seen, "nothing went through the proxy"
    assert {(entry.method, entry.target) for entry in seen} == {("CONNECT", urlsplit(nginx.url).netloc)}
