"""A recording HTTP proxy for the tests: absolute-form forwarding and CONNECT tunnels.

Used by test_proxy.py (the "proxy" option) and test_http2.py (HTTP/2 inside
a tunnel), through the `proxy` fixture in conftest.py.
"""

from __future__ import annotations

import http
import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import NoReturn, Optional
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost")
# Headers that describe one hop, not the request: a proxy does not pass them on.
# Content-Length is written again for the body as relayed.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "upgrade", "transfer-encoding", "content-length"}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it: its request line and raw header fields."""

    connection: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        """Every value of the header `name` (any case), in order: duplicates show."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


class ProxyFailure(Exception):
    """Something the proxy will not guess at; recorded, and fails the test."""


class _Stream:
    """A socket read in pieces: heads up to their blank line, bodies by length."""

    MAX_HEAD = 64 * 1024

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65_536)
        self.buffer += data
        return bool(data)

    def head(self) -> Optional[bytes]:
        """The next head without its blank line; None when the peer closed between messages."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > self.MAX_HEAD:
                raise ProxyFailure("a head over 64 KiB")
            if not self._fill():
                if self.buffer:
                    raise ProxyFailure(f"the peer closed in the middle of a head: {self.buffer[:200]!r}")
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ProxyFailure(f"the peer closed {count - len(self.buffer)} bytes before the body's end")
        body, self.buffer = self.buffer[:count], self.buffer[count:]
        return body

    def to_end(self) -> bytes:
        while self._fill():
            pass
        body, self.buffer = self.buffer, b""
        return body


def _parse_head(head: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    """The start line's three parts and the header fields, in order."""
    first, *lines = head.decode("latin-1").split("\r\n")
    start = first.split(" ", 2)
    if len(start) != 3:
        raise ProxyFailure(f"a malformed start line: {first!r}")
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProxyFailure(f"a malformed header line: {line!r}")
        fields.append((name, value.strip()))
    return start, fields


def _field(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in fields if key.lower() == name]


def _content_length(fields: list[tuple[str, str]]) -> Optional[int]:
    """The body's length; None when the message gives none."""
    if _field(fields, "transfer-encoding"):
        # The library always knows its body's length (CURLOPT_POSTFIELDSIZE_LARGE).
        raise ProxyFailure("a chunked body")
    values = set(_field(fields, "content-length"))
    if not values:
        return None
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ProxyFailure(f"a bad Content-Length: {sorted(values)}")
    return int(values.pop())


def _end_to_end(fields: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {value}" for name, value in fields if name.lower() not in HOP_BY_HOP]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copies bytes one way until the source ends, then ends that direction of the sink."""
    try:
        while data := source.recv(65_536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the other side closed, or the proxy is being stopped


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: RecordingProxy


class _Handler(socketserver.BaseRequestHandler):
    """One client connection: any number of absolute-form requests, or one CONNECT."""

    server: _Server

    def handle(self) -> None:
        proxy = self.server.proxy
        number = proxy._opened(self.request)
        client = _Stream(self.request)
        upstream: Optional[tuple[int, _Stream]] = None
        try:
            while (head := client.head()) is not None:
                (method, target, _), fields = _parse_head(head)
                proxy._record(Seen(number, method, target, tuple(fields)))
                if method == "CONNECT":
                    self._tunnel(client, target)
                    return
                upstream, keep_alive = self._forward(client, method, target, fields, upstream)
                if not keep_alive:
                    return
        except Exception as error:  # every failure is the test's business
            proxy._fail(f"connection {number}: {error!r}")
        finally:
            if upstream is not None:
                upstream[1].sock.close()
            proxy._closed(self.request)

    def _refuse(self, why: str) -> NoReturn:
        self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        raise ProxyFailure(why)

    def _forward(self, client: _Stream, method: str, target: str, fields: list[tuple[str, str]],
                 upstream: Optional[tuple[int, _Stream]]) -> tuple[Optional[tuple[int, _Stream]], bool]:
        """Sends one request on to its target and relays the answer; returns the
        upstream connection to reuse and whether the client's connection stays open."""
        parts = urlsplit(target)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.port is None:
            self._refuse(f"not an absolute-form http:// URL on the loopback: {target!r}")
        length = _content_length(fields)
        body = client.exactly(length or 0)
        if upstream is not None and upstream[0] != parts.port:
            upstream[1].sock.close()
            upstream = None
        if upstream is None:
            upstream = (parts.port, _Stream(socket.create_connection(("127.0.0.1", parts.port), timeout=30)))
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {origin} HTTP/1.1", *_end_to_end(fields)]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        upstream[1].sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)

        head = upstream[1].head()
        while head is not None and head.startswith(b"HTTP/1.1 1"):
            head = upstream[1].head()  # an interim answer: the real one follows
        if head is None:
            raise ProxyFailure(f"the service closed without answering {method} {target}")
        (version, status, reason), answer = _parse_head(head)
        service_closes = any(value.lower() == "close" for value in _field(answer, "connection"))
        if method == "HEAD" or status in ("204", "304"):
            content = b""
        elif (length := _content_length(answer)) is not None:
            content = upstream[1].exactly(length)
        else:
            content, service_closes = upstream[1].to_end(), True
        if service_closes:
            upstream[1].sock.close()
            upstream = None
        # The client's connection is kept unless it asked otherwise: the
        # body's length is always given, so the service's choice does not matter.
        keep_alive = not any(value.lower() == "close" for value in _field(fields, "connection"))
        relayed = [f"{version} {status} {reason}", *_end_to_end(answer)]
        if status not in ("204", "304"):
            relayed.append(f"Content-Length: {len(content)}")
        if not keep_alive:
            relayed.append("Connection: close")
        self.request.sendall("\r\n".join(relayed).encode("latin-1") + b"\r\n\r\n" + content)
        return upstream, keep_alive

    def _tunnel(self, client: _Stream, target: str) -> None:
        host, _, port = target.rpartition(":")
        if host not in LOOPBACK or not port.isdigit():
            self._refuse(f"a CONNECT to somewhere other than the loopback: {target!r}")
        if (code := self.server.proxy.refuse_connect) is not None:
            # No tunnel: the refusal, then the connection closes, as most proxies do.
            challenge = 'Proxy-Authenticate: Basic realm="proxy-test"\r\n' if code == 407 else ""
            self.request.sendall(f"HTTP/1.1 {code} {http.HTTPStatus(code).phrase}\r\n{challenge}"
                                 "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("latin-1"))
            return
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if client.buffer:
                upstream.sendall(client.buffer)
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join(30)


class RecordingProxy:
    """A forwarding HTTP proxy on 127.0.0.1 that records every request it receives.

    Absolute-form requests are forwarded to their loopback target and the
    answer relayed back, keeping both connections alive as a real proxy
    does (libcurl reuses its connection to the proxy); CONNECT is answered
    200 and tunnelled, or, when `refuse_connect` is a status code, answered
    with that status and no tunnel. It goes nowhere but the loopback.
    Whatever it cannot handle is recorded in `failures`, which the fixture
    checks, rather than guessed at.
    """

    def __init__(self, refuse_connect: Optional[int] = None) -> None:
        self.refuse_connect = refuse_connect
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._failures: list[str] = []
        self._sockets: dict[socket.socket, int] = {}
        self._connections = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="recording-proxy", daemon=True)
        self._thread.start()

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    @property
    def failures(self) -> list[str]:
        with self._lock:
            return list(self._failures)

    def close(self) -> None:
        """Stops accepting and ends every open connection (handlers then finish)."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)

    def _opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections += 1
            self._sockets[sock] = self._connections
            return self._connections

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.pop(sock, None)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def _fail(self, why: str) -> None:
        with self._lock:
            self._failures.append(why)
