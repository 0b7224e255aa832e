"""HTTP/1.1 transport: bodies in, responses and injected faults out.

`start_in_thread()` runs an emulator inside the current process (pytest);
`python3 -m emulator` runs one from the command line.
"""

from __future__ import annotations

import itertools
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from . import __version__
from .app import body_limit, dispatch, error_response, is_control_path
from .errors import ApiError, bad_argument, default_code, error_body, size_limit_message
from .faults import Fault
from .messages import (GARBAGE_BODY, JSON_CONTENT_TYPE, SEND_LIMIT_BYTES, WRONG_TYPE_BODY, Request, Response,
                       encode_json, first_values, is_legacy_path, service_path, split_target)
from .service import Emulator
from .state import DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_TOKEN_LIFETIME, ReplyDelay
from .stream import DEFAULT_BACKLOG, StreamServer

# Over libcurl's 100 KiB limit on one response header.
HUGE_HEADER_BYTES = 128 * 1024
DEFAULT_SECRET = "emulator-secret"
IDLE_TIMEOUT_SECONDS = 300
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024 * 1024
# Well-formed JSON whose strings hold bytes that are not UTF-8.
INVALID_UTF8_BODY = (b'{"id":"\xff","activities":[{"type":"message","text":"\xc3("}],'
                     b'"messages":[{"text":"\xc3("}],"watermark":"1"}')
PLACEHOLDER_BODY = b'{"note":"the emulator cut this response short on purpose"}'

_HOST_HEADER = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class _ClientGone(Exception):
    """The client closed the connection before sending the whole request."""


class _Refused(Exception):
    """The request body is refused unread; answer and close the connection."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"directline-emulator/{__version__}"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    disable_nagle_algorithm = True
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        self.connection_id = self.server.connection_id(self.request)

    def handle_expect_100(self) -> bool:
        # Answered in _continue, only once the body is known to be wanted.
        return True

    def _serve(self) -> None:
        emulator = self.server.emulator
        raw_path, raw_query = split_target(self.path)
        segments = [unquote(segment) for segment in service_path(raw_path).split("/")[1:]]
        control = is_control_path(raw_path)
        legacy = is_legacy_path(raw_path)
        limit = SEND_LIMIT_BYTES if control else body_limit(emulator, segments)
        refusal = None
        try:
            body = self._read_body(limit)
        except _ClientGone:
            self.close_connection = True
            return
        except _Refused as refused:
            body, refusal = b"", error_response(refused.error, legacy)
        entry = None
        if not control:
            entry = emulator.log.record(self.command, raw_path, raw_query, self.headers, body,
                                        self.connection_id)
        if refusal is not None:
            self._respond(refusal, entry, close=True)
            self._linger()
            return
        request = Request(method=self.command, raw_path=raw_path, segments=segments,
                          query=first_values(raw_query), headers=self.headers, body=body,
                          base_url=self._base_url("http"),
                          stream_base_url=self._stream_base_url(), log_entry=entry)
        fault = None if control else emulator.faults.take(self.command, raw_path)
        if fault is None:
            self._respond(self._process(request), entry)
        else:
            self._run_fault(fault, request, entry)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def _process(self, request: Request) -> Response:
        try:
            return dispatch(self.server.emulator, request)
        except Exception:  # an emulator bug must not look like a network failure
            traceback.print_exc(file=sys.stderr)
            return error_response(ApiError(500, "ServiceError", "internal emulator error"),
                                  request.legacy)

    # -- request bodies -------------------------------------------------------

    def _continue(self) -> None:
        expect = self.headers.get("Expect", "")
        if expect.lower() == "100-continue" and self.request_version == "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_body(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes; a larger one is refused unread."""
        encodings = self.headers.get_all("Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length")
        if encodings:
            if lengths:
                raise _Refused(bad_argument("both Content-Length and Transfer-Encoding"))
            if ",".join(encodings).strip().lower() != "chunked":
                raise _Refused(bad_argument("unsupported Transfer-Encoding"))
            self._continue()
            return self._read_chunked(limit)
        if not lengths:
            return b""
        values = {value.strip() for value in lengths}
        if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
            raise _Refused(bad_argument("invalid Content-Length"))
        length = int(values.pop())
        if length > limit:
            raise _Refused(_too_large(limit))
        if length:
            self._continue()
        body = self.rfile.read(length)
        if len(body) != length:
            raise _ClientGone()
        return body

    def _read_chunked(self, limit: int) -> bytes:
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _ClientGone()
            size_text = line.rstrip(b"\r\n").split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not _HEX.fullmatch(size_text):
                raise _Refused(bad_argument("malformed chunked body"))
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise _Refused(_too_large(limit))
            data = self.rfile.read(size)
            if len(data) != size:
                raise _ClientGone()
            if self.rfile.read(2) != b"\r\n":
                raise _Refused(bad_argument("malformed chunked body"))
            chunks.append(data)
        while True:  # trailer fields, ignored
            line = self.rfile.readline(8192)
            if not line:
                raise _ClientGone()
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)

    def _linger(self) -> None:
        """Drain what the client is still sending after a refusal, so closing the
        socket does not reset the connection before the client reads the answer."""
        try:
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(0.25)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while time.monotonic() < deadline and drained < LINGER_MAX_BYTES:
                chunk = self.request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    # -- responses ------------------------------------------------------------

    def _base_url(self, scheme: str) -> str:
        secure = self.server.ssl_context is not None
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.fullmatch(host):
            host = self.server.authority
        return f"{scheme}{'s' if secure else ''}://{host}"

    def _stream_base_url(self) -> str:
        """`ws(s)://HOST:STREAMPORT`: the host the client asked for, the stream's port."""
        secure = self.server.ssl_context is not None
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.fullmatch(host):
            host = self.server.authority
        name = host[:host.index("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
        return f"ws{'s' if secure else ''}://{name}:{self.server.stream_port}"

    def version_string(self) -> str:
        return self.server_version

    def _head(self, status: int, headers: list[tuple[str, str]], content_length: int,
              close: bool) -> bytes:
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [f"{self.protocol_version} {status} {reason}",
                 f"Server: {self.version_string()}",
                 f"Date: {self.date_time_string()}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {content_length}")
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _respond(self, response: Response, entry: dict | None, close: bool = False,
                 drip_seconds: float | None = None) -> None:
        if entry is not None:
            self.server.emulator.log.set_status(entry, response.status)
        self._log_status(response.status)
        close = close or self.close_connection
        self.close_connection = close
        headers = list(response.headers)
        if response.content_type:
            headers.insert(0, ("Content-Type", response.content_type))
        body = b"" if self.command == "HEAD" else response.body
        head = self._head(response.status, headers, len(response.body), close)
        if drip_seconds is None:
            self.wfile.write(head + body)
        else:
            self._drip(head, body, drip_seconds)

    def _drip(self, head: bytes, body: bytes, seconds: float) -> None:
        """Send the head at once, then the body one byte at a time over `seconds`."""
        emulator = self.server.emulator
        if not body:
            if not emulator.pause(seconds):
                self.close_connection = True
                return
            self.wfile.write(head)
            return
        self.wfile.write(head)
        start = time.monotonic()
        for index in range(len(body)):
            self.wfile.write(body[index:index + 1])
            due = start + seconds * (index + 1) / len(body)
            if not emulator.pause(max(0.0, due - time.monotonic())):
                self.close_connection = True
                return

    def _drop(self) -> None:
        """End the exchange with no (further) response bytes."""
        self.close_connection = True

    # -- faults ---------------------------------------------------------------

    def _fault_error(self, fault: Fault, request: Request) -> Response:
        headers = [("Retry-After", fault.retry_after)] if fault.retry_after else []
        if fault.location:
            headers.append(("Location", fault.location))
        if fault.status in (204, 304):  # statuses that never carry a body
            return Response(fault.status, headers=headers)
        if fault.bare:
            page = f"<html><body><h1>{fault.status}</h1>{fault.message}</body></html>".encode()
            return Response(fault.status, page, "text/html; charset=utf-8", headers)
        return error_response(ApiError(fault.status, fault.code, fault.message, headers),
                              request.legacy)

    def _run_fault(self, fault: Fault, request: Request, entry: dict | None) -> None:
        emulator = self.server.emulator
        action = fault.action
        if action == "status":
            self._respond(self._fault_error(fault, request), entry)
        elif action == "deliver_then_fail":
            self._process(request)
            self._respond(self._fault_error(fault, request), entry)
        elif action == "hang":
            emulator.pause(fault.seconds)
            self._drop()
        elif action == "close":
            self._drop()
        elif action == "close_mid":
            self._cut_short(self._process(request), entry)
        elif action == "short_body":
            self._cut_short(self._process(request), entry, whole_body=True)
        elif action == "garbage":
            self._respond(Response(200, GARBAGE_BODY, "application/json"), entry)
        elif action == "wrong_type":
            self._respond(Response(200, WRONG_TYPE_BODY, "text/html; charset=utf-8"), entry)
        elif action == "slow":
            self._respond(self._process(request), entry, drip_seconds=fault.seconds)
        elif action == "invalid_utf8":
            self._respond(Response(200, INVALID_UTF8_BODY, "application/json"), entry)
        elif action == "huge_header":
            answer = self._process(request)
            answer.headers.append(("X-Padding", "x" * HUGE_HEADER_BYTES))
            self._respond(answer, entry)
        elif action == "delay":
            if emulator.pause(fault.seconds):
                self._respond(self._process(request), entry)
            else:
                self._drop()

    def _cut_short(self, response: Response, entry: dict | None, whole_body: bool = False) -> None:
        """Promise the whole body in Content-Length, send half of it, close.

        With `whole_body` (the `short_body` fault) every byte of the body is
        sent but Content-Length promises one more, so only a client that
        checks the length can tell the answer is incomplete."""
        status, body = response.status, response.body
        content_type = response.content_type
        if not body:
            status, body, content_type = 200, PLACEHOLDER_BODY, JSON_CONTENT_TYPE
        if entry is not None:
            self.server.emulator.log.set_status(entry, status)
        self._log_status(status)
        headers = ([("Content-Type", content_type)] if content_type else []) + response.headers
        if whole_body:
            self.wfile.write(self._head(status, headers, len(body) + 1, close=True) + body)
        else:
            self.wfile.write(self._head(status, headers, len(body), close=True)
                             + body[:len(body) // 2])
        self._drop()

    # -- logging --------------------------------------------------------------

    def _log_status(self, status: int) -> None:
        if not self.server.quiet:
            path = self.path.split("?", 1)[0]  # queries may carry tokens (t=)
            sys.stderr.write(f"{self.client_address[0]} {self.command} {path} -> {status}\n")

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Malformed requests the base class rejects still get a JSON error."""
        self.log_error("code %d, message %s", code, message)
        body = encode_json(error_body(code, default_code(code), message or "bad request",
                                      False))
        self.close_connection = True
        self.wfile.write(self._head(code, [("Content-Type", JSON_CONTENT_TYPE)], len(body),
                                    close=True) + body)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestTooLarge", size_limit_message(limit))


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its connections, so it can number
    them (for the request log) and close them all at shutdown."""

    daemon_threads = True
    request_queue_size = DEFAULT_BACKLOG

    def __init__(self, host: str, port: int, emulator: Emulator,
                 ssl_context: ssl.SSLContext | None, quiet: bool, stream_port: int = 0,
                 backlog: int = DEFAULT_BACKLOG) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.request_queue_size = backlog  # listen() in server_activate
        self.emulator = emulator
        self.ssl_context = ssl_context
        self.quiet = quiet
        self._connections: dict[socket.socket, int] = {}
        self._connections_lock = threading.Lock()
        self._connection_ids = itertools.count(1)
        super().__init__((host, port), EmulatorRequestHandler)
        shown_host = f"[{host}]" if ":" in host else host
        self.authority = f"{shown_host}:{self.server_address[1]}"
        self.url = f"{'https' if ssl_context else 'http'}://{self.authority}"
        try:
            self.streams = StreamServer(emulator, host, stream_port, ssl_context, quiet,
                                        self.next_connection_id, backlog)
        except BaseException:
            self.server_close()
            raise
        emulator.streams = self.streams
        self.stream_port = self.streams.port
        self.stream_url = f"{'wss' if ssl_context else 'ws'}://{shown_host}:{self.stream_port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, address = super().get_request()
        if self.ssl_context is not None:
            # The handshake runs later in the connection's own thread.
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections[request] = next(self._connection_ids)
        super().process_request(request, client_address)

    def next_connection_id(self) -> int:
        """A number for a new connection (the stream's share the sequence)."""
        with self._connections_lock:
            return next(self._connection_ids)

    def connection_id(self, sock: socket.socket) -> int:
        with self._connections_lock:
            return self._connections.get(sock, 0)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            sockets = list(self._connections)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # resets, timeouts, failed TLS handshakes: the client's business
        super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop accepting, wake sleeping handlers, close every connection."""
        self.emulator.stopping.set()
        self.emulator.replies.stop()
        self.streams.stop()
        self.shutdown()
        self.close_connections()
        self.server_close()


def create_server(host: str = "127.0.0.1", port: int = 0, secret: str = DEFAULT_SECRET,
                  token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
                  max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                  tls_cert: str | None = None, tls_key: str | None = None,
                  quiet: bool = True, stream_port: int = 0,
                  reply_delay_seconds: ReplyDelay = 0.0, typing_before_reply: bool = True,
                  backlog: int = DEFAULT_BACKLOG) -> EmulatorServer:
    """A bound (not yet serving) emulator server. `reply_delay_seconds` and
    `typing_before_reply` are the start-up (and after a reset) config values;
    `backlog` is the listen queue of the HTTP port and of the stream's."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    if token_lifetime < 1:
        raise ValueError("token_lifetime must be at least 1 second")
    if max_upload_bytes < 0:
        raise ValueError("max_upload_bytes must not be negative")
    if backlog < 1:
        raise ValueError("backlog must be at least 1")
    context = None
    if tls_cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
    emulator = Emulator(secret, token_lifetime, max_upload_bytes, reply_delay_seconds,
                        typing_before_reply)
    return EmulatorServer(host, port, emulator, context, quiet, stream_port, backlog)


class EmulatorHandle:
    """A running in-process emulator: `.url`, `.port`, `.stream_port`, `.secret`, `.stop()`."""

    def __init__(self, server: EmulatorServer, thread: threading.Thread) -> None:
        self.server = server
        self.emulator = server.emulator
        self.url = server.url
        self.port = server.server_address[1]
        self.stream_port = server.stream_port
        self.secret = server.emulator.secret
        self._thread = thread

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.stop()
            self._thread.join(5)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_in_thread(**options) -> EmulatorHandle:
    """Start an emulator on a background thread; options as for `create_server`."""
    server = create_server(**options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"directline-emulator:{server.server_address[1]}",
                              daemon=True)
    thread.start()
    return EmulatorHandle(server, thread)
