"""What goes on the wire: exactly the headers of each kind of request.

Every request carries `x-ms-bot-agent` (`DirectLine/<protocol> (libdirectline
<VERSION>[; <botAgent>])`); the caller's `headers` go with every Direct Line
request and the stream's upgrade, and to a token or regional settings
endpoint only on the service's own origin; a credential only where one
belongs. The emulator logs each request's headers as they arrived, the
stream's upgrade included, so each kind's set of header names is pinned
here, not just the presence of ours: a header the library starts sending
by accident fails too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from support import SECRET, Emulator

import directline

VERSION = directline.__version__
EXTRA = {"X-Request-Source": "kiosk-12", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
TOKEN_PATH = "/powervirtualagents/botsbyschema/cr1_wire/directline/token"
API_VERSION = "api-version=2022-03-01-preview"

# The headers every request has, whatever its kind.
BASE = {"host", "accept", "user-agent", "x-ms-bot-agent"}
OURS = {name.lower() for name in EXTRA}


def kind(entry: dict[str, Any]) -> str:
    """The kind of request a log entry is, from its method and path."""
    method, path = entry["method"], re.sub(r"^/region/[^/]+", "", entry["path"])
    rules = [
        (r"/powervirtualagents/botsbyschema/.*/token", "token endpoint"),
        (r"/powervirtualagents/regionalchannelsettings", "regional settings"),
        (r"/v3/directline/tokens/generate", "generate"),
        (r"/v3/directline/tokens/refresh", "refresh"),
        (r"/v3/directline/conversations", "start"),
        (r"/v3/directline/conversations/[^/]+/stream", "stream upgrade"),
        (r"/v3/directline/conversations/[^/]+", "reconnect"),
        (r"/v3/directline/conversations/[^/]+/activities", "send" if method == "POST" else "receive"),
        (r"/v3/directline/conversations/[^/]+/upload", "upload"),
        (r"/api/conversations", "start"),
        (r"/api/conversations/[^/]+/messages", "send" if method == "POST" else "receive"),
        (r"/api/conversations/[^/]+/upload", "upload"),
        (r"/api/tokens/[^/]+/renew", "refresh"),
    ]
    for pattern, name in rules:
        if re.fullmatch(pattern, path):
            return name
    raise AssertionError(f"unexpected request {method} {entry['path']}")


def captured(emulator: Emulator) -> dict[str, list[dict[str, str]]]:
    """The headers of every logged request, by kind (uploads split into raw and multipart)."""
    kinds: dict[str, list[dict[str, str]]] = {}
    for entry in emulator.requests():
        name = kind(entry)
        if name == "upload":
            multipart = entry["headers"]["content-type"].startswith("multipart/form-data")
            name = "upload multipart" if multipart else "upload raw"
        kinds.setdefault(name, []).append(entry["headers"])
    return kinds


def expected_names(request_kind: str, *, extra: bool = True, credential: bool = True) -> set[str]:
    names = set(BASE)
    if extra:
        names |= OURS
    if credential:
        names.add("authorization")
    if request_kind in ("start", "refresh", "generate"):
        # POSTs without a body (none is given here): no content type.
        names.add("content-length")
    if request_kind in ("send", "upload raw", "upload multipart"):
        names |= {"content-type", "content-length"}
    if request_kind == "upload raw":
        names.add("content-disposition")
    if request_kind == "stream upgrade":
        # The token rides in the stream URL's t=, as the service hands it out.
        names = (names - {"authorization"}) | {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
    return names


def check(headers: dict[str, str], names: set[str], protocol: str = "3.0",
          bot_agent: str | None = "WireTest/1.0") -> None:
    assert set(headers) == names
    product = f"libdirectline {VERSION}" + (f"; {bot_agent}" if bot_agent else "")
    assert headers["x-ms-bot-agent"] == f"DirectLine/{protocol} ({product})"
    assert headers["user-agent"] == f"libdirectline/{VERSION}"
    for name, value in EXTRA.items():
        if name.lower() in names:
            assert headers[name.lower()] == value
    if "authorization" in names:
        assert headers["authorization"].startswith("Bearer ")


def exercise(client: Any, conversation: Any) -> None:
    """One of each kind of request a conversation makes, the stream's upgrade last."""
    conversation.send_text("user", "hello")
    conversation.upload_bytes("user", b"raw", filename="r\u00e9sum\u00e9.txt")
    conversation.upload("user", [{"data": b"a", "filename": "a.txt"}], activity={"text": "see"})
    conversation.get_activities()
    conversation.refresh()
    state = conversation.state()
    with client.open_conversation(state["conversationId"], state["token"], reconnect=True):
        pass
    assert conversation.listen()["mode"] == "websocket"
    for _ in range(40):
        if conversation.next(0.25)["state"] == "online":
            break
    conversation.unlisten()


def test_copilot_studio_token_endpoint_same_origin(emulator: Emulator) -> None:
    """A Copilot Studio token URL and no endpoint: the regional settings are
    derived and read once; the Direct Line host they name is the emulator
    itself, so the caller's headers also go to the token endpoint."""
    config = {"tokenEndpoint": f"{emulator.url}{TOKEN_PATH}?{API_VERSION}", "botAgent": "WireTest/1.0",
              "headers": EXTRA, "retry": {"maxAttempts": 1}}
    with directline.Client.from_config(config) as client:
        with client.start_conversation() as conversation:
            exercise(client, conversation)
        assert "token" in client.generate_token()
    kinds = captured(emulator)
    assert sorted(kinds) == ["receive", "reconnect", "refresh", "regional settings", "send", "start",
                             "stream upgrade", "token endpoint", "upload multipart", "upload raw"]
    assert len(kinds["regional settings"]) == 1
    assert len(kinds["token endpoint"]) == 2
    for request_kind, captures in kinds.items():
        outside = request_kind in ("token endpoint", "regional settings")
        # Before its answer, the regional settings' origin cannot be the
        # service's: the caller's headers wait for the host it names.
        extra = request_kind != "regional settings"
        for headers in captures:
            check(headers, expected_names(request_kind, extra=extra, credential=not outside))
    outside = ("token endpoint", "regional settings")
    paths = [entry["path"] for entry in emulator.requests() if kind(entry) not in outside]
    assert all(path.startswith("/region/europe/") for path in paths if "/stream" not in path)


def test_token_endpoint_on_another_origin_gets_no_extra_headers(emulator: Emulator) -> None:
    """`localhost` is another origin than `127.0.0.1`: the token endpoint
    there is told who calls (x-ms-bot-agent) but gets none of the headers
    meant for the Direct Line service."""
    other = emulator.url.replace("127.0.0.1", "localhost")
    config = {"endpoint": emulator.url, "tokenEndpoint": f"{other}{TOKEN_PATH}?{API_VERSION}",
              "headers": EXTRA, "retry": {"maxAttempts": 1}}
    with directline.Client.from_config(config) as client, client.start_conversation() as conversation:
        conversation.send_text("user", "hello")
    kinds = captured(emulator)
    assert sorted(kinds) == ["send", "start", "token endpoint"]
    check(kinds["token endpoint"][0], expected_names("token endpoint", extra=False, credential=False), bot_agent=None)
    check(kinds["start"][0], expected_names("start"), bot_agent=None)


@pytest.mark.parametrize("protocol", ["3.0", "1.1"])
def test_secret_client_requests(emulator: Emulator, protocol: str) -> None:
    """A client holding the secret, on both protocols: the same headers, the
    protocol named in x-ms-bot-agent."""
    with directline.Client.from_config({"endpoint": emulator.url, "secret": SECRET, "protocol": protocol,
                                        "botAgent": "WireTest/1.0", "headers": EXTRA}) as client:
        if protocol == "3.0":
            client.generate_token()
        with client.start_conversation() as conversation:
            conversation.send_text("user", "hello")
            conversation.upload_bytes("user", b"raw", filename="plain.txt")
            conversation.get_activities()
    kinds = captured(emulator)
    expected = ["receive", "send", "start", "upload raw"] + (["generate"] if protocol == "3.0" else [])
    assert sorted(kinds) == sorted(expected)
    for request_kind, captures in kinds.items():
        for headers in captures:
            check(headers, expected_names(request_kind), protocol=protocol)


def test_the_trace_hides_header_values_and_endpoint_keys(emulator: Emulator) -> None:
    """libcurl's trace (DL_LOG_DEBUG) shows every header line; the values
    of the caller's headers (gateway keys) and the token endpoint's query
    (a function app's `code=`) come out as [redacted], and the request log
    lines name the token endpoint without its query."""
    lines: list[str] = []
    key, code = "gw-SECRET-1234", "fn-KEY-5678"
    config = {"endpoint": emulator.url, "headers": {"X-Gateway-Key": key},
              "tokenEndpoint": f"{emulator.url}{TOKEN_PATH}?{API_VERSION}&code={code}"}
    directline.set_log_handler(lambda level, line: lines.append(line), directline.LogLevel.DEBUG)
    try:
        with directline.Client.from_config(config) as client, client.start_conversation() as conversation:
            conversation.send_text("user", "hello")
    finally:
        directline.set_log_handler(None)
    assert any("X-Gateway-Key: [redacted]" in line for line in lines), "no trace of the header at all"
    assert not [line for line in lines if key in line or code in line]
    sent = captured(emulator)
    assert sent["send"][0]["x-gateway-key"] == key
