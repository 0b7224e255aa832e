"""The Direct Line emulator's contract, proved over real HTTP.

Run from the repository root: python3 -m pytest Tests/emulator -q
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from emulator.server import start_in_thread  # noqa: E402

SECRET = "emulator-secret"
JSON_TYPE = "application/json; charset=utf-8"
V3 = "/v3/directline"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class Client:
    """A small HTTP client: one fresh connection per call unless `conn` is given."""

    def __init__(self, handle) -> None:
        self.port = handle.port
        self.stream_port = handle.stream_port
        self.url = handle.url

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method: str, path: str, body=None, auth: str | None = None,
             headers: dict | None = None, conn=None, timeout: float = 10) -> Reply:
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = f"Bearer {auth}"
        if isinstance(body, (dict, list)) and "Content-Type" not in all_headers:
            all_headers["Content-Type"] = "application/json"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        own = conn is None
        conn = conn or self.connect(timeout)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            if own:
                conn.close()

    # -- shortcuts -------------------------------------------------------------

    def control(self, method: str, path: str, body=None) -> Reply:
        reply = self.call(method, f"/_emulator/{path}", body)
        assert reply.status == 200, reply.body
        return reply

    def fault(self, **spec) -> dict:
        return self.control("POST", "faults", spec).json

    def config(self, **changes) -> dict:
        return self.control("POST", "config", changes).json

    def requests(self) -> list[dict]:
        return self.control("GET", "requests").json["requests"]

    def stored(self, conversation_id: str) -> dict:
        return self.control("GET", f"conversations/{conversation_id}").json

    def start(self, auth: str = SECRET, body=None) -> dict:
        reply = self.call("POST", f"{V3}/conversations", body, auth=auth)
        assert reply.status in (200, 201), reply.body
        return reply.json

    def send(self, conversation: dict, activity: dict, conn=None) -> Reply:
        return self.call("POST", f"{V3}/conversations/{conversation['conversationId']}/activities",
                         activity, auth=conversation["token"], conn=conn)

    def activities(self, conversation: dict, watermark: str | None = None) -> Reply:
        query = "" if watermark is None else f"?watermark={watermark}"
        return self.call("GET", f"{V3}/conversations/{conversation['conversationId']}"
                                f"/activities{query}", auth=conversation["token"])

    def start_v1(self) -> dict:
        reply = self.call("POST", "/api/conversations", auth=SECRET)
        assert reply.status == 200, reply.body
        return reply.json

    def send_v1(self, conversation: dict, message, headers=None) -> Reply:
        return self.call("POST", f"/api/conversations/{conversation['conversationId']}/messages",
                         message, auth=conversation["token"], headers=headers)


def message(text: str, user: str = "user1", **extra) -> dict:
    return {"type": "message", "from": {"id": user}, "text": text, **extra}


def assert_error(reply: Reply, status: int, code: str, message: str | None = None,
                 legacy: bool = False) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == JSON_TYPE
    error = reply.json["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    if message is not None:
        assert error["message"] == message
    if legacy:
        assert error["statusCode"] == status
    else:
        assert "statusCode" not in error
    assert set(reply.json) == {"error"}


def multipart(parts: list[tuple[list[tuple[str, str]], bytes]], boundary: str,
              close: bool = True) -> bytes:
    out = b""
    for headers, data in parts:
        out += f"--{boundary}\r\n".encode()
        out += b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
        out += b"\r\n" + data + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


# -- fixtures --------------------------------------------------------------------

@pytest.fixture
def client(handle) -> Client:
    api = Client(handle)
    api.control("POST", "reset")
    return api


# -- Direct Line 3.0 end to end ----------------------------------------------------

def test_v3_generated_token_starts_conversation_and_bot_echoes(client):
    generated = client.call("POST", f"{V3}/tokens/generate", auth=SECRET)
    assert generated.status == 200
    assert generated.headers["Content-Type"] == JSON_TYPE
    token_doc = generated.json
    assert set(token_doc) == {"conversationId", "token", "expires_in"}
    assert token_doc["expires_in"] == 1800
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token_doc["conversationId"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", token_doc["token"])

    started = client.call("POST", f"{V3}/conversations", auth=token_doc["token"])
    assert started.status == 201
    conversation = started.json
    conversation_id = token_doc["conversationId"]
    assert conversation["conversationId"] == conversation_id
    assert conversation["token"] == token_doc["token"]
    assert conversation["expires_in"] == 1800
    # The stream has a port of its own, and its URL a ticket of its own (not the token).
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{client.stream_port}{V3}/conversations/{conversation_id}"
                        r"/stream\?t=[A-Za-z0-9_-]{40,}", conversation["streamUrl"])
    assert token_doc["token"] not in conversation["streamUrl"]
    assert set(conversation) == {"conversationId", "token", "expires_in", "streamUrl",
                                 "referenceGrammarId", "eTag"}
    again = client.call("POST", f"{V3}/conversations", auth=token_doc["token"])
    assert again.status == 200
    assert again.json["conversationId"] == conversation_id

    sent = client.send(conversation, message("hello", channelData={"clientActivityID": "c-1"}))
    assert sent.status == 200
    assert sent.json == {"id": f"{conversation_id}|0000000"}

    listed = client.activities(conversation)
    assert listed.status == 200
    assert listed.json["watermark"] == "2"
    user, reply = listed.json["activities"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", user.pop("timestamp"))
    assert user == {"type": "message", "from": {"id": "user1"}, "text": "hello",
                    "channelData": {"clientActivityID": "c-1"},
                    "id": f"{conversation_id}|0000000", "channelId": "directline",
                    "conversation": {"id": conversation_id}}
    reply.pop("timestamp")
    assert reply == {"type": "message", "from": {"id": "echo-bot", "name": "Echo Bot"},
                     "text": "echo: hello", "replyToId": f"{conversation_id}|0000000",
                     "id": f"{conversation_id}|0000001", "channelId": "directline",
                     "conversation": {"id": conversation_id}}

    after = client.activities(conversation, "2")
    assert after.json == {"activities": [], "watermark": "2"}


def test_v3_secret_start_is_201_with_new_conversation_each_time(client):
    first = client.call("POST", f"{V3}/conversations", auth=SECRET)
    second = client.call("POST", f"{V3}/conversations", auth=SECRET)
    assert (first.status, second.status) == (201, 201)
    assert first.json["conversationId"] != second.json["conversationId"]
    assert first.json["token"] != second.json["token"]


def test_v3_start_with_a_locale_gets_a_welcome_in_it(client):
    started = client.call("POST", f"{V3}/conversations", {"locale": "fr-FR"}, auth=SECRET)
    assert started.status == 201
    conversation = started.json
    cid = conversation["conversationId"]
    [welcome] = client.activities(conversation).json["activities"]
    assert welcome["type"] == "message" and welcome["text"] == "welcome (fr-FR)"
    assert welcome["locale"] == "fr-FR"
    assert welcome["from"] == {"id": "echo-bot", "name": "Echo Bot"}
    assert welcome["id"] == f"{cid}|0000000" and welcome["conversation"] == {"id": cid}
    assert client.stored(cid)["locale"] == "fr-FR"
    # The user's first send comes after the welcome.
    assert client.send(conversation, message("hi")).json == {"id": f"{cid}|0000001"}


def test_v3_locale_welcomes_once_and_only_when_given(client):
    plain = client.start()
    assert client.activities(plain).json == {"activities": [], "watermark": "0"}
    assert client.stored(plain["conversationId"])["locale"] is None
    # A token's conversation is welcomed when it is started, not re-joined.
    generated = client.call("POST", f"{V3}/tokens/generate", {"locale": "de-DE"}, auth=SECRET).json
    first = client.call("POST", f"{V3}/conversations", {"locale": "en-US"}, auth=generated["token"])
    again = client.call("POST", f"{V3}/conversations", {"locale": "it-IT"}, auth=generated["token"])
    assert (first.status, again.status) == (201, 200)
    texts = [a["text"] for a in client.activities(first.json).json["activities"]]
    assert texts == ["welcome (en-US)"]
    assert client.stored(generated["conversationId"])["locale"] == "en-US"
    longest = "a" * 64
    assert client.start(body={"locale": longest}, auth=SECRET)["conversationId"]


def test_v3_bad_locale_is_400_and_starts_nothing(client):
    generated = client.call("POST", f"{V3}/tokens/generate", auth=SECRET).json
    for bad in ("", "fr_FR", "fr FR", "fr-FR\n", "a" * 65, "fr\u00e9", 5, [],
                {"tag": "fr"}, True):
        reply = client.call("POST", f"{V3}/conversations", {"locale": bad}, auth=generated["token"])
        assert_error(reply, 400, "BadArgument")
        assert "locale" in reply.json["error"]["message"]
    assert client.stored(generated["conversationId"])["started"] is False
    assert [e["status"] for e in client.requests()][-1] == 400


def test_v3_reconnect_returns_new_stream_url_with_watermark(client):
    conversation = client.start()
    cid = conversation["conversationId"]
    reply = client.call("GET", f"{V3}/conversations/{cid}?watermark=7",
                        auth=conversation["token"])
    assert reply.status == 200
    assert reply.json["conversationId"] == cid
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{client.stream_port}{V3}/conversations/{cid}"
                        r"/stream\?watermark=7&t=[A-Za-z0-9_-]{40,}", reply.json["streamUrl"])
    assert reply.json["streamUrl"] != conversation["streamUrl"]
    bad = client.call("GET", f"{V3}/conversations/{cid}?watermark=x", auth=conversation["token"])
    assert_error(bad, 400, "BadArgument")


def test_v3_paging_returns_at_most_50_per_call(client):
    conversation = client.start()
    conn = client.connect()
    for index in range(60):
        assert client.send(conversation, {"type": "event", "name": f"e{index}",
                                          "from": {"id": "user1"}}, conn=conn).status == 200
    conn.close()
    first = client.activities(conversation).json
    assert len(first["activities"]) == 50
    assert first["watermark"] == "50"
    assert first["activities"][49]["name"] == "e49"
    second = client.activities(conversation, first["watermark"]).json
    assert [a["name"] for a in second["activities"]] == [f"e{i}" for i in range(50, 60)]
    assert second["watermark"] == "60"
    assert client.activities(conversation, "60").json == {"activities": [], "watermark": "60"}


def test_v3_refresh_issues_new_token_and_old_stays_valid(client):
    conversation = client.start()
    refreshed = client.call("POST", f"{V3}/tokens/refresh", auth=conversation["token"])
    assert refreshed.status == 200
    assert set(refreshed.json) == {"conversationId", "token", "expires_in"}
    assert refreshed.json["conversationId"] == conversation["conversationId"]
    assert refreshed.json["token"] != conversation["token"]
    for token in (conversation["token"], refreshed.json["token"]):
        assert client.send({**conversation, "token": token}, message("x")).status == 200
    assert_error(client.call("POST", f"{V3}/tokens/refresh", auth=SECRET), 403, "BadArgument")


def test_v3_token_user_overrides_from_id(client):
    bad = client.call("POST", f"{V3}/tokens/generate", {"user": {"id": "alice"}}, auth=SECRET)
    assert_error(bad, 400, "BadArgument", "user.id must start with dl_")
    generated = client.call("POST", f"{V3}/tokens/generate",
                            {"user": {"id": "dl_alice", "name": "Alice"},
                             "trustedOrigins": ["https://example.com"]}, auth=SECRET).json
    conversation = client.start(auth=generated["token"])
    client.send(conversation, message("hi", user="someone-else"))
    user = client.activities(conversation).json["activities"][0]
    assert user["from"] == {"id": "dl_alice", "name": "Alice"}


def test_v3_end_of_conversation_silences_the_bot(client):
    conversation = client.start()
    ended = client.send(conversation, {"type": "endOfConversation", "from": {"id": "user1"}})
    assert ended.status == 200
    assert client.send(conversation, message("still there?")).status == 200
    stored = client.stored(conversation["conversationId"])
    assert stored["ended"] is True
    assert [a["type"] for a in stored["activities"]] == ["endOfConversation", "message"]
    assert all(a["from"]["id"] == "user1" for a in stored["activities"])


def test_slow_message_delays_the_response(client):
    conversation = client.start()
    began = time.monotonic()
    assert client.send(conversation, message("slow:0.4")).status == 200
    assert time.monotonic() - began >= 0.39
    texts = [a["text"] for a in client.activities(conversation).json["activities"]]
    assert texts == ["slow:0.4", "echo: slow:0.4"]


# -- Direct Line 1.1 end to end ----------------------------------------------------

def test_a_token_starts_only_a_conversation_of_its_own_protocol(client):
    v3_token = client.call("POST", f"{V3}/tokens/generate", auth=SECRET).json["token"]
    v1_token = client.call("POST", "/api/tokens/conversation", auth=SECRET).json
    assert_error(client.call("POST", "/api/conversations", auth=v3_token), 409, "Conflict",
                 "this token's conversation was started with Direct Line 3.0", legacy=True)
    assert_error(client.call("POST", f"{V3}/conversations", auth=v1_token), 409, "Conflict",
                 "this token's conversation was started with Direct Line 1.1")


def test_v1_token_start_send_and_echo(client):
    token_reply = client.call("POST", "/api/tokens/conversation", auth=SECRET)
    assert token_reply.status == 200
    assert token_reply.headers["Content-Type"] == JSON_TYPE
    token = token_reply.json
    assert isinstance(token, str) and len(token) >= 40

    started = client.call("POST", "/api/conversations", auth=token)
    assert started.status == 200
    conversation = started.json
    assert set(conversation) == {"conversationId", "token", "expires_in", "eTag"}
    assert conversation["token"] == token
    assert conversation["expires_in"] == 1800
    cid = conversation["conversationId"]

    sent = client.send_v1(conversation, {"text": "hello", "from": "user1",
                                         "channelData": {"k": 1}})
    assert sent.status == 204
    assert sent.headers["Content-Length"] == "0"
    assert sent.body == b""

    listed = client.call("GET", f"/api/conversations/{cid}/messages", auth=token)
    assert listed.status == 200
    doc = listed.json
    assert doc["watermark"] == "2"
    assert isinstance(doc["eTag"], str)
    user, reply = doc["messages"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", user.pop("created"))
    assert user == {"text": "hello", "from": "user1", "channelData": {"k": 1},
                    "id": f"{cid}|0000000", "conversationId": cid}
    reply.pop("created")
    assert reply == {"from": "echo-bot", "text": "echo: hello", "id": f"{cid}|0000001",
                     "conversationId": cid}
    empty = client.call("GET", f"/api/conversations/{cid}/messages?watermark=2", auth=token)
    assert empty.json["messages"] == [] and empty.json["watermark"] == "2"


def test_v1_renew_by_get_and_post_and_botconnector_scheme(client):
    conversation = client.start_v1()
    cid = conversation["conversationId"]
    tokens = set()
    for method in ("GET", "POST"):
        reply = client.call(method, f"/api/tokens/{cid}/renew", auth=conversation["token"])
        assert reply.status == 200
        assert isinstance(reply.json, str)
        tokens.add(reply.json)
    assert len(tokens) == 2 and conversation["token"] not in tokens
    reply = client.call("GET", f"/api/conversations/{cid}/messages",
                        headers={"Authorization": f"BotConnector {tokens.pop()}"})
    assert reply.status == 200
    v3_reply = client.call("POST", f"{V3}/tokens/generate",
                           headers={"Authorization": f"BotConnector {SECRET}"})
    assert_error(v3_reply, 401, "Unauthorized")


def test_v1_validation(client):
    conversation = client.start_v1()
    assert_error(client.send_v1(conversation, {"text": "x", "from": {"id": "u"}}),
                 400, "BadArgument", "message.from must be a string", legacy=True)
    assert_error(client.send_v1(conversation, {"text": "x", "channelData": "scalar"}),
                 400, "BadArgument", "message.channelData must be an object", legacy=True)
    assert_error(client.send_v1(conversation, [1]), 400, "BadArgument", legacy=True)
    assert_error(client.send_v1(conversation, b"{}", headers={"Content-Type": "text/plain"}),
                 415, "BadArgument", legacy=True)
    assert client.stored(conversation["conversationId"])["messages"] == []


# -- auth -----------------------------------------------------------------------

def test_auth_missing_or_malformed_is_401(client):
    conversation = client.start()
    path = f"{V3}/conversations/{conversation['conversationId']}/activities"
    assert_error(client.call("GET", path), 401, "Unauthorized")
    for header in ("Bearer", "Bearer ", "Basic abc", "bearer a b", "Token x"):
        assert_error(client.call("GET", path, headers={"Authorization": header}),
                     401, "Unauthorized")
    assert client.call("GET", path, headers={"Authorization": f"bearer {SECRET}"}).status == 200


def test_auth_tokens_are_scoped_unknown_and_secret_only(client):
    mine = client.start()
    other = client.start()
    wrong = client.call("GET", f"{V3}/conversations/{mine['conversationId']}/activities",
                        auth=other["token"])
    assert_error(wrong, 403, "BadArgument", "token not valid for this conversation")
    unknown = client.call("GET", f"{V3}/conversations/{mine['conversationId']}/activities",
                          auth="not-a-token")
    assert_error(unknown, 403, "BadArgument", "Invalid token or secret")
    assert_error(client.call("POST", f"{V3}/tokens/generate", auth=mine["token"]),
                 403, "BadArgument")
    assert_error(client.call("POST", "/api/tokens/conversation", auth=mine["token"]),
                 403, "BadArgument", legacy=True)
    missing = client.call("GET", f"{V3}/conversations/nope/activities", auth=SECRET)
    assert_error(missing, 404, "NotFound", "conversation not found")
    assert client.call("GET", f"{V3}/conversations/{mine['conversationId']}/activities",
                       auth=SECRET).status == 200


def test_expired_token_is_403_token_expired(client):
    assert client.config(tokenLifetime=1)["tokenLifetime"] == 1
    conversation = client.start()
    assert conversation["expires_in"] == 1
    assert client.activities(conversation).status == 200
    time.sleep(1.1)
    assert_error(client.activities(conversation), 403, "TokenExpired")
    assert_error(client.call("POST", f"{V3}/tokens/refresh", auth=conversation["token"]),
                 403, "TokenExpired")
    v1 = client.start_v1()
    time.sleep(1.1)
    assert_error(client.send_v1(v1, {"text": "late"}), 403, "TokenExpired", legacy=True)


def test_unknown_path_and_wrong_method(client):
    assert_error(client.call("GET", "/v3/directline/nothing", auth=SECRET), 404, "NotFound")
    assert_error(client.call("GET", "/", auth=SECRET), 404, "NotFound")
    assert_error(client.call("GET", "/api/nothing", auth=SECRET), 404, "NotFound", legacy=True)
    wrong = client.call("DELETE", f"{V3}/conversations", auth=SECRET)
    assert_error(wrong, 405, "MethodNotAllowed")
    assert wrong.headers["Allow"] == "POST"
    assert_error(client.call("GET", f"{V3}/tokens/generate", auth=SECRET), 405,
                 "MethodNotAllowed")


# -- request validation -------------------------------------------------------------

def test_v3_body_must_be_a_utf8_json_object(client):
    conversation = client.start()
    path = f"{V3}/conversations/{conversation['conversationId']}/activities"
    json_header = {"Content-Type": "application/json"}
    for body in (b"[1,2]", b'"text"', b"{", b"", b"\xff\xfe{}", b'{"a": NaN}',
                 b'\xef\xbb\xbf{"type":"message"}'):
        reply = client.call("POST", path, body, auth=conversation["token"], headers=json_header)
        assert_error(reply, 400, "BadArgument")
    assert client.stored(conversation["conversationId"])["activities"] == []


def test_v3_activity_needs_type_and_from_id(client):
    conversation = client.start()
    cases = [
        ({"from": {"id": "u"}}, "activity has no type"),
        ({"type": 5, "from": {"id": "u"}}, "activity has no type"),
        ({"type": "message"}, "activity has no from.id"),
        ({"type": "message", "from": {"name": "u"}}, "activity has no from.id"),
        ({"type": "message", "from": {"id": 7}}, "activity has no from.id"),
        ({"type": "message", "from": "u"}, "activity has no from.id"),
    ]
    for activity, text in cases:
        assert_error(client.send(conversation, activity), 400, "MissingProperty", text)


def test_send_content_type_must_be_json(client):
    conversation = client.start()
    path = f"{V3}/conversations/{conversation['conversationId']}/activities"
    body = json.dumps(message("x")).encode()
    for content_type in (None, "text/plain", "application/jsonx", "application/json; charset=latin-1"):
        headers = {} if content_type is None else {"Content-Type": content_type}
        reply = client.call("POST", path, body, auth=conversation["token"], headers=headers)
        assert_error(reply, 415, "BadArgument")
    ok = client.call("POST", path, body, auth=conversation["token"],
                     headers={"Content-Type": "Application/JSON; charset=UTF-8"})
    assert ok.status == 200


def test_send_size_limit_is_262144_bytes(client):
    conversation = client.start()
    base = json.dumps(message("")).encode()
    exact = json.dumps(message("a" * (262_144 - len(base)))).encode()
    assert len(exact) == 262_144
    path = f"{V3}/conversations/{conversation['conversationId']}/activities"
    headers = {"Content-Type": "application/json"}
    assert client.call("POST", path, exact, auth=conversation["token"],
                       headers=headers).status == 200
    over = json.dumps(message("a" * (262_145 - len(base)))).encode()
    reply = client.call("POST", path, over, auth=conversation["token"], headers=headers)
    assert_error(reply, 413, "RequestTooLarge",
                 "request content length exceeded limit of 262,144 bytes")
    assert reply.headers["Connection"] == "close"
    refused = client.requests()[-1]
    assert refused["headers"]["content-length"] == "262145"
    assert (refused["bodyLength"], refused["status"]) == (0, 413)
    assert len(client.stored(conversation["conversationId"])["activities"]) == 2


def test_oversize_with_expect_continue_is_refused_before_the_body(client):
    conversation = client.start()
    with socket.create_connection(("127.0.0.1", client.port), timeout=5) as sock:
        sock.sendall((f"POST {V3}/conversations/{conversation['conversationId']}/activities "
                      f"HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {conversation['token']}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 300000\r\n"
                      "Expect: 100-continue\r\n\r\n").encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_expect_continue_and_chunked_bodies_are_accepted(client):
    conversation = client.start()
    body = json.dumps(message("chunky")).encode()
    conn = client.connect()
    conn.request("POST", f"{V3}/conversations/{conversation['conversationId']}/activities",
                 body=iter([body[:10], body[10:]]), encode_chunked=True,
                 headers={"Authorization": f"Bearer {conversation['token']}",
                          "Content-Type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()
    with socket.create_connection(("127.0.0.1", client.port), timeout=5) as sock:
        sock.sendall((f"POST {V3}/conversations/{conversation['conversationId']}/activities "
                      f"HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {conversation['token']}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                      "Expect: 100-continue\r\n\r\n").encode())
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    texts = [a["text"] for a in client.activities(conversation).json["activities"]]
    assert texts == ["chunky", "echo: chunky", "chunky", "echo: chunky"]


# -- faults ---------------------------------------------------------------------------

def test_fault_status_with_retry_after_is_not_processed(client):
    conversation = client.start()
    rule = client.fault(action="status", status=429, retryAfter="3", method="post",
                        path=r"/activities$")
    assert rule["count"] == 1 and rule["code"] == "Throttled"
    throttled = client.send(conversation, message("one"))
    assert_error(throttled, 429, "Throttled", "injected fault: HTTP 429")
    assert throttled.headers["Retry-After"] == "3"
    assert client.stored(conversation["conversationId"])["activities"] == []
    assert client.send(conversation, message("two")).status == 200
    assert client.control("GET", "faults").json["faults"][0]["count"] == 0


def test_fault_matching_by_method_path_and_count(client):
    conversation = client.start()
    client.fault(action="status", status=503, method="GET", path="/activities", count=-1,
                 code="Overloaded", message="try later")
    for _ in range(2):
        assert_error(client.activities(conversation), 503, "Overloaded", "try later")
    assert client.send(conversation, message("fine")).status == 200
    client.control("DELETE", "faults")
    client.fault(action="status", status=500, count=2)
    assert client.activities(conversation).status == 500
    assert client.activities(conversation).status == 500
    assert client.activities(conversation).status == 200


def test_fault_skip_lets_matching_requests_through_first(client):
    conversation = client.start()
    client.fault(action="status", status=500, method="GET", path="/activities", skip=2)
    assert client.send(conversation, message("not a GET")).status == 200
    assert client.activities(conversation).status == 200
    assert client.activities(conversation).status == 200
    assert client.activities(conversation).status == 500
    assert client.activities(conversation).status == 200


def test_page_size_bounds_each_get(client):
    conversation = client.start()
    client.config(pageSize=2)
    for index in range(3):
        client.send(conversation, message(f"m{index}"))
    first = client.activities(conversation).json
    assert len(first["activities"]) == 2
    rest = client.activities(conversation, first["watermark"]).json
    assert len(rest["activities"]) == 2


def test_endless_pages_never_run_dry(client):
    conversation = client.start()
    client.config(endlessPages=True)
    watermark = None
    for expected in range(1, 6):
        page = client.activities(conversation, watermark).json
        assert len(page["activities"]) == 1 and page["watermark"] == str(expected)
        watermark = page["watermark"]


def test_fault_defaults_and_v1_error_shape(client):
    conversation = client.start_v1()
    client.fault(action="status", status=502)
    assert_error(client.send_v1(conversation, {"text": "x"}), 502, "BotError",
                 legacy=True)
    for status, code in ((400, "BadArgument"), (401, "Unauthorized"), (403, "Forbidden"),
                         (404, "NotFound"), (409, "Conflict"), (500, "ServiceError"),
                         (504, "BotTimeout")):
        assert client.fault(action="status", status=status)["code"] == code


def test_fault_rules_are_validated(client):
    for spec in ({"action": "explode"}, {"action": "status"}, {"action": "status", "status": 99},
                 {"action": "hang", "count": 0}, {"action": "close", "path": "("},
                 {"action": "close", "colour": "red"}, {"action": "close", "seconds": 1},
                 {"action": "close", "skip": -1}, {"action": "close", "skip": "1"}):
        assert_error(client.call("POST", "/_emulator/faults", spec), 400, "BadArgument")


def test_fault_deliver_then_fail_stores_and_answers_502(client):
    conversation = client.start()
    client.fault(action="deliver_then_fail")
    assert_error(client.send(conversation, message("hi")), 502, "BotError")
    texts = [a["text"] for a in client.stored(conversation["conversationId"])["activities"]]
    assert texts == ["hi", "echo: hi"]


def test_fault_hang_then_close_without_answer(client):
    conversation = client.start()
    client.fault(action="hang", seconds=0.5)
    began = time.monotonic()
    with pytest.raises(http.client.RemoteDisconnected):
        client.send(conversation, message("lost"))
    assert time.monotonic() - began >= 0.45
    assert client.stored(conversation["conversationId"])["activities"] == []


def test_fault_hang_stops_promptly_when_the_server_stops():
    own = start_in_thread()
    api = Client(own)
    api.fault(action="hang")
    outcome = []

    def victim():
        try:
            api.call("GET", "/anything", timeout=10)
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    worker = threading.Thread(target=victim)
    worker.start()
    time.sleep(0.3)
    began = time.monotonic()
    own.stop()
    worker.join(5)
    assert not worker.is_alive()
    assert time.monotonic() - began < 2
    assert len(outcome) == 1


def test_fault_close_drops_connection_unprocessed(client):
    conversation = client.start()
    client.fault(action="close")
    with pytest.raises(http.client.RemoteDisconnected):
        client.send(conversation, message("gone"))
    assert client.stored(conversation["conversationId"])["activities"] == []
    assert client.requests()[-1]["status"] is None


def test_fault_close_mid_cuts_the_body_after_processing(client):
    conversation = client.start()
    client.fault(action="close_mid")
    conn = client.connect()
    conn.request("POST", f"{V3}/conversations/{conversation['conversationId']}/activities",
                 body=json.dumps(message("half")),
                 headers={"Authorization": f"Bearer {conversation['token']}",
                          "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
    texts = [a["text"] for a in client.stored(conversation["conversationId"])["activities"]]
    assert texts == ["half", "echo: half"]


def test_fault_short_body_sends_everything_but_promises_one_byte_more(client):
    conversation = client.start()
    client.fault(action="short_body", method="POST", path=r"/activities$")
    conn = client.connect()
    conn.request("POST", f"{V3}/conversations/{conversation['conversationId']}/activities",
                 body=json.dumps(message("short")),
                 headers={"Authorization": f"Bearer {conversation['token']}",
                          "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    promised = int(response.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    conn.close()
    assert len(caught.value.partial) == promised - 1
    assert json.loads(caught.value.partial) == {"id": f"{conversation['conversationId']}|0000000"}
    texts = [a["text"] for a in client.stored(conversation["conversationId"])["activities"]]
    assert texts == ["short", "echo: short"]
    assert client.requests()[-1]["status"] == 200


def test_fault_short_body_of_a_204_is_the_placeholder(client):
    conversation = client.start_v1()
    client.fault(action="short_body")
    conn = client.connect()
    conn.request("POST", f"/api/conversations/{conversation['conversationId']}/messages",
                 body=json.dumps({"from": "u", "text": "x"}),
                 headers={"Authorization": f"Bearer {conversation['token']}",
                          "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    conn.close()
    assert json.loads(caught.value.partial)["note"]
    assert int(response.headers["Content-Length"]) == len(caught.value.partial) + 1


def test_fault_garbage_and_wrong_type(client):
    conversation = client.start()
    client.fault(action="garbage")
    garbage = client.activities(conversation)
    assert garbage.status == 200
    assert garbage.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(garbage.body)
    client.fault(action="wrong_type")
    html = client.activities(conversation)
    assert html.status == 200
    assert html.headers["Content-Type"].startswith("text/html")
    assert html.body.startswith(b"<!DOCTYPE html>")


def test_fault_slow_drips_the_body_and_delay_waits(client):
    conversation = client.start()
    client.fault(action="slow", seconds=0.5)
    began = time.monotonic()
    slow = client.send(conversation, message("drip"))
    assert time.monotonic() - began >= 0.45
    assert slow.json == {"id": f"{conversation['conversationId']}|0000000"}
    client.fault(action="delay", seconds=0.3)
    began = time.monotonic()
    assert client.activities(conversation).json["watermark"] == "2"
    assert time.monotonic() - began >= 0.29


# -- request log and keep-alive -------------------------------------------------------

def test_keep_alive_reuses_one_connection(client):
    conversation = client.start()
    conn = client.connect()
    for index in range(5):
        assert client.send(conversation, message(f"m{index}"), conn=conn).status == 200
    sock = conn.sock
    assert sock is not None
    assert client.activities(conversation).status == 200
    conn.close()
    entries = client.requests()
    sends = [e for e in entries if e["method"] == "POST" and e["path"].endswith("/activities")]
    assert len(sends) == 5
    assert len({e["connection"] for e in sends}) == 1
    assert entries[-1]["connection"] != sends[0]["connection"]


def test_request_log_records_everything_but_control_calls(client):
    conversation = client.start()
    client.control("GET", "config")
    body = json.dumps(message("logged")).encode()
    client.call("POST", f"{V3}/conversations/{conversation['conversationId']}/activities?x=1",
                body, auth=conversation["token"], headers={"Content-Type": "application/json",
                                                           "X-Custom": "Yes"})
    client.call("POST", "/api/nowhere", b"\xff\x00\x01", headers={"Content-Type": "a/b"})
    entries = client.requests()
    assert [e["path"] for e in entries] == [
        f"{V3}/conversations", f"{V3}/conversations/{conversation['conversationId']}/activities",
        "/api/nowhere"]
    send = entries[1]
    assert send["method"] == "POST" and send["query"] == "x=1"
    assert send["headers"]["x-custom"] == "Yes"
    assert send["headers"]["authorization"] == f"Bearer {conversation['token']}"
    assert send["bodyLength"] == len(body)
    assert send["bodySha256"] == hashlib.sha256(body).hexdigest()
    assert send["body"] == body.decode() and send["bodyEncoding"] == "utf-8"
    assert send["status"] == 200 and isinstance(send["connection"], int)
    binary = entries[2]
    assert binary["bodyEncoding"] == "base64"
    assert base64.b64decode(binary["body"]) == b"\xff\x00\x01"
    assert binary["status"] == 404


def test_concurrent_sends_are_all_stored_with_unique_sequential_ids(client):
    conversation = client.start()
    failures = []

    def sender(worker: int) -> None:
        conn = client.connect()
        for index in range(10):
            reply = client.send(conversation, message(f"w{worker}-{index}"), conn=conn)
            if reply.status != 200:
                failures.append(reply)
        conn.close()

    workers = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert failures == []
    cid = conversation["conversationId"]
    stored = client.stored(cid)["activities"]
    assert [a["id"] for a in stored] == [f"{cid}|{n:07d}" for n in range(160)]
    user_texts = sorted(a["text"] for a in stored if a["from"]["id"] == "user1")
    assert user_texts == sorted(f"w{w}-{i}" for w in range(8) for i in range(10))
    assert len(client.requests()) == 81
    assert_error(client.call("GET", "/_emulator/conversations/nope"), 404, "NotFound")
    assert_error(client.call("GET", "/_emulator/attachments/nope"), 404, "NotFound")


def test_null_watermark_config(client):
    client.config(nullWatermark=True)
    conversation = client.start()
    client.send(conversation, message("x"))
    doc = client.activities(conversation).json
    assert doc["watermark"] is None and len(doc["activities"]) == 2
    v1 = client.start_v1()
    listed = client.call("GET", f"/api/conversations/{v1['conversationId']}/messages",
                         auth=v1["token"])
    assert listed.json["watermark"] is None


def test_reset_forgets_everything_and_config_is_strict(client):
    conversation = client.start()
    client.config(tokenLifetime=5, maxUploadBytes=10, nullWatermark=True, pageSize=2,
                  replyDelaySeconds=[1, 2], typingBeforeReply=False)
    client.fault(action="close")
    defaults = client.control("POST", "reset").json
    assert defaults == {"tokenLifetime": 1800, "maxUploadBytes": 4_194_304,
                        "nullWatermark": False, "pageSize": 50, "endlessPages": False,
                        "streamKeepAliveSeconds": 5.0, "streamUrlLifetime": 60,
                        "streamCollision": "closeNew", "botDelaySeconds": 0.0,
                        "tokenEndpointLifetime": 60, "tokenEndpointExpiresKey": "expires_in",
                        "region": "europe", "replyDelaySeconds": 0.0, "typingBeforeReply": True}
    assert client.control("GET", "faults").json == {"faults": []}
    assert client.requests() == []
    assert_error(client.activities(conversation), 403, "BadArgument")
    for bad in ({"tokenLifetime": 0}, {"maxUploadBytes": "1"}, {"nullWatermark": 1},
                {"pageSize": 0}, {"pageSize": True}, {"endlessPages": 1}, {"tokenLifetimes": 5}):
        assert_error(client.call("POST", "/_emulator/config", bad), 400, "BadArgument")


# -- regional hosts (/region/NAME/...) ---------------------------------------------------

def test_every_direct_line_route_is_served_under_a_region_prefix(client):
    prefix = "/region/europe"
    started = client.call("POST", f"{prefix}{V3}/conversations", {"locale": "en-GB"}, auth=SECRET)
    assert started.status == 201
    conversation = started.json
    cid = conversation["conversationId"]
    sent = client.call("POST", f"{prefix}{V3}/conversations/{cid}/activities", message("hi"),
                       auth=conversation["token"])
    assert sent.json == {"id": f"{cid}|0000001"}
    listed = client.call("GET", f"{prefix}{V3}/conversations/{cid}/activities?watermark=1",
                         auth=conversation["token"])
    assert [a["text"] for a in listed.json["activities"]] == ["hi", "echo: hi"]
    reconnected = client.call("GET", f"/region/any-Name.1{V3}/conversations/{cid}",
                              auth=conversation["token"])
    assert reconnected.status == 200 and reconnected.json["conversationId"] == cid
    refreshed = client.call("POST", f"{prefix}{V3}/tokens/refresh", auth=conversation["token"])
    assert refreshed.status == 200
    v1 = client.call("POST", f"{prefix}/api/conversations", headers={"Authorization": f"BotConnector {SECRET}"})
    assert v1.status == 200
    # The log keeps the path as received, so a test can tell the regional URL was used.
    assert [e["path"] for e in client.requests()] == [
        f"{prefix}{V3}/conversations", f"{prefix}{V3}/conversations/{cid}/activities",
        f"{prefix}{V3}/conversations/{cid}/activities", f"/region/any-Name.1{V3}/conversations/{cid}",
        f"{prefix}{V3}/tokens/refresh", f"{prefix}/api/conversations"]


def test_region_prefixed_errors_limits_and_faults_are_those_of_the_route(client):
    prefix = "/region/india"
    legacy = client.call("GET", f"{prefix}/api/conversations/nope/messages", auth=SECRET)
    assert_error(legacy, 404, "NotFound", legacy=True)
    assert_error(client.call("POST", f"{prefix}{V3}/tokens/generate"), 401, "Unauthorized")
    too_big = client.call("POST", f"{prefix}{V3}/conversations/x/activities", b"x" * 262_145, auth=SECRET,
                          headers={"Content-Type": "application/json"})
    assert_error(too_big, 413, "RequestTooLarge", "request content length exceeded limit of 262,144 bytes")
    conversation = client.start()
    upload = f"{prefix}{V3}/conversations/{conversation['conversationId']}/upload?userId=u"
    big_file = client.call("POST", upload, b"a" * 300_000, auth=conversation["token"],
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Disposition": 'name="file"; filename="big.bin"'})
    assert big_file.status == 200, big_file.body
    client.fault(path="^/region/.*/activities$", action="status", status=503)
    assert client.send(conversation, message("not prefixed")).status == 200
    faulted = client.call("POST", f"{prefix}{V3}/conversations/{conversation['conversationId']}/activities",
                          message("x"), auth=conversation["token"])
    assert_error(faulted, 503, "ServiceUnavailable")
    for path in (f"{prefix}/_emulator/config", f"{prefix}", f"{prefix}/", "/region//v3/directline/conversations",
                 f"{prefix}/powervirtualagents/regionalchannelsettings?api-version=1"):
        assert_error(client.call("GET", path, auth=SECRET), 404, "NotFound")


# -- Copilot Studio: token service and regional settings --------------------------------

PVA = "/powervirtualagents"
TOKEN_URL = f"{PVA}/botsbyschema/cr123_agent/directline/token?api-version=2022-03-01-preview"
SETTINGS_URL = f"{PVA}/regionalchannelsettings?api-version=2022-03-01-preview"


def test_token_endpoint_hands_out_a_token_bound_to_a_new_conversation(client):
    reply = client.call("GET", TOKEN_URL)
    assert reply.status == 200 and reply.headers["Content-Type"] == JSON_TYPE
    answer = reply.json
    assert set(answer) == {"token", "expires_in", "conversationId"}
    assert answer["expires_in"] == 60
    cid = answer["conversationId"]
    assert client.stored(cid)["protocol"] == "3.0" and client.stored(cid)["started"] is False
    started = client.call("POST", f"{V3}/conversations", {"locale": "fr-CA"}, auth=answer["token"])
    assert started.status == 201
    assert (started.json["conversationId"], started.json["token"]) == (cid, answer["token"])
    again = client.call("POST", f"{V3}/conversations", auth=answer["token"])
    assert again.status == 200 and again.json["conversationId"] == cid
    assert client.send(started.json, message("hi")).status == 200
    refreshed = client.call("POST", f"{V3}/tokens/refresh", auth=answer["token"])
    assert refreshed.status == 200 and refreshed.json["conversationId"] == cid
    assert refreshed.json["expires_in"] == 1800
    texts = [a["text"] for a in client.activities({"conversationId": cid, "token": refreshed.json["token"]})
             .json["activities"]]
    assert texts == ["welcome (fr-CA)", "hi", "echo: hi"]
    # No credential is needed, and each call is a new conversation.
    assert client.call("GET", TOKEN_URL).json["conversationId"] != cid
    assert client.requests()[0]["path"] == f"{PVA}/botsbyschema/cr123_agent/directline/token"


def test_token_endpoint_lifetime_and_its_spelling_are_configurable(client):
    settings = client.config(tokenEndpointLifetime=1, tokenEndpointExpiresKey="expiresIn")
    assert (settings["tokenEndpointLifetime"], settings["tokenEndpointExpiresKey"]) == (1, "expiresIn")
    answer = client.call("GET", TOKEN_URL).json
    assert set(answer) == {"token", "expiresIn", "conversationId"} and answer["expiresIn"] == 1
    time.sleep(1.1)
    expired = client.call("POST", f"{V3}/conversations", auth=answer["token"])
    assert_error(expired, 403, "TokenExpired")
    client.config(tokenEndpointExpiresKey="expires_in")
    assert "expires_in" in client.call("GET", TOKEN_URL).json


def test_regional_settings_point_at_the_emulator_under_region_prefix(client):
    reply = client.call("GET", SETTINGS_URL)
    assert reply.status == 200
    assert reply.json == {"channelUrlsById": {"directline": f"http://127.0.0.1:{client.port}/region/europe/"},
                          "regionName": "europe"}
    client.config(region="india-2")
    named = client.call("GET", SETTINGS_URL, headers={"Host": f"localhost:{client.port}"})
    assert named.json == {"channelUrlsById": {"directline": f"http://localhost:{client.port}/region/india-2/"},
                          "regionName": "india-2"}
    base = named.json["channelUrlsById"]["directline"].split(str(client.port), 1)[1]
    assert client.call("POST", f"{base}v3/directline/conversations", auth=SECRET).status == 201


def test_copilot_routes_need_an_api_version_and_only_get(client):
    for path in (TOKEN_URL, SETTINGS_URL):
        bare = path.split("?")[0]
        for missing in (bare, f"{bare}?api-version=", f"{bare}?apiversion=1"):
            assert_error(client.call("GET", missing), 400, "MissingApiVersionParameter")
        assert_error(client.call("POST", path), 405, "MethodNotAllowed")
    assert_error(client.call("GET", f"{PVA}/botsbyschema//directline/token?api-version=1"), 404, "NotFound")
    # Refusals are logged like any service request's.
    assert [e["status"] for e in client.requests()][:4] == [400, 400, 400, 405]


def test_copilot_config_keys_are_validated(client):
    defaults = client.control("GET", "config").json
    assert (defaults["tokenEndpointLifetime"], defaults["tokenEndpointExpiresKey"], defaults["region"]) == \
        (60, "expires_in", "europe")
    for bad in ({"tokenEndpointLifetime": 0}, {"tokenEndpointLifetime": 1.5}, {"tokenEndpointLifetime": True},
                {"tokenEndpointExpiresKey": "expires"}, {"tokenEndpointExpiresKey": 7},
                {"region": ""}, {"region": "eu/west"}, {"region": "eu_west"}, {"region": "r" * 64},
                {"region": 5}):
        assert_error(client.call("POST", "/_emulator/config", bad), 400, "BadArgument")
    assert client.control("GET", "config").json == defaults


# -- uploads --------------------------------------------------------------------------

ALL_BYTES = bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n\r"


def fetch(url: str) -> Reply:
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/_emulator/attachments/[\w-]+)", url)
    assert match, url
    conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
    try:
        conn.request("GET", match.group(2))
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def test_raw_upload_serves_identical_bytes(client):
    conversation = client.start()
    cid = conversation["conversationId"]
    reply = client.call("POST", f"{V3}/conversations/{cid}/upload?userId=user1", ALL_BYTES,
                        auth=conversation["token"],
                        headers={"Content-Type": "application/octet-stream",
                                 "Content-Disposition":
                                     'name="file"; filename="a%22b%0D%0Ac%25d%41.bin"'})
    assert reply.status == 200
    assert reply.json == {"id": f"{cid}|0000000"}
    user, bot = client.activities(conversation).json["activities"]
    assert user["type"] == "message" and user["from"] == {"id": "user1"}
    [attachment] = user["attachments"]
    assert attachment["contentType"] == "application/octet-stream"
    # %22, %0D, %0A and %25 are decoded; any other % stays as it is.
    assert attachment["name"] == 'a"b\r\nc%d%41.bin'
    served = fetch(attachment["contentUrl"])
    assert served.status == 200
    assert served.headers["Content-Type"] == "application/octet-stream"
    assert served.body == ALL_BYTES
    assert bot["text"] == (f'received 1 attachment(s): a"b\r\nc%d%41.bin '
                           f"(application/octet-stream, {len(ALL_BYTES)} bytes)")
    assert bot["replyToId"] == f"{cid}|0000000"


def test_multipart_upload_with_activity_part(client):
    conversation = client.start()
    cid = conversation["conversationId"]
    boundary = "----emulator-test-7f3a9c"
    activity = {"type": "message", "from": {"id": "user1"}, "text": "see attached"}
    body = multipart([
        ([("Content-Type", "image/png"),
          ("Content-Disposition", 'form-data; name="file"; filename="one.png"')], ALL_BYTES),
        ([("Content-Type", "application/vnd.microsoft.activity")],
         json.dumps(activity).encode()),
        ([("Content-Type", "text/plain"),
          ("Content-Disposition", 'form-data; name="file"; filename="two.txt"')], b"hello"),
    ], boundary)
    reply = client.call("POST", f"{V3}/conversations/{cid}/upload?userId=user1", body,
                        auth=conversation["token"],
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status == 200, reply.body
    user, bot = client.activities(conversation).json["activities"]
    assert user["text"] == "see attached"
    assert [(a["name"], a["contentType"]) for a in user["attachments"]] == [
        ("one.png", "image/png"), ("two.txt", "text/plain")]
    assert fetch(user["attachments"][0]["contentUrl"]).body == ALL_BYTES
    assert fetch(user["attachments"][1]["contentUrl"]).body == b"hello"
    assert bot["text"] == (f"received 2 attachment(s): one.png (image/png, {len(ALL_BYTES)} "
                           "bytes), two.txt (text/plain, 5 bytes); text: see attached")


def test_multipart_without_activity_part_is_wrapped(client):
    conversation = client.start()
    cid = conversation["conversationId"]
    body = multipart([([("Content-Type", "text/plain"),
                        ("Content-Disposition", 'form-data; name="file"; filename="x.txt"')],
                       b"x")], "bnd")
    reply = client.call("POST", f"{V3}/conversations/{cid}/upload?userId=dl_u", body,
                        auth=conversation["token"],
                        headers={"Content-Type": "multipart/form-data; boundary=bnd"})
    assert reply.status == 200
    user = client.activities(conversation).json["activities"][0]
    assert (user["type"], user["from"]) == ("message", {"id": "dl_u"})


def test_malformed_uploads_are_400(client):
    conversation = client.start()
    path = f"{V3}/conversations/{conversation['conversationId']}/upload?userId=user1"
    file_headers = [("Content-Type", "text/plain"),
                    ("Content-Disposition", 'form-data; name="file"; filename="x.txt"')]
    unclosed = multipart([(file_headers, b"data")], "bnd", close=False)
    untyped = multipart([([("Content-Disposition", 'form-data; name="file"')], b"d")], "bnd")
    bad_activity = multipart([(file_headers, b"d"),
                              ([("Content-Type", "application/vnd.microsoft.activity")],
                               b"[1]")], "bnd")
    only_activity = multipart([([("Content-Type", "application/vnd.microsoft.activity")],
                                json.dumps(message("no files")).encode())], "bnd")
    form = {"Content-Type": "multipart/form-data; boundary=bnd"}
    for body in (unclosed, untyped, bad_activity, only_activity, b"not multipart at all"):
        reply = client.call("POST", path, body, auth=conversation["token"], headers=form)
        assert_error(reply, 400, "BadArgument")
    no_boundary = client.call("POST", path, untyped, auth=conversation["token"],
                              headers={"Content-Type": "multipart/form-data"})
    assert_error(no_boundary, 400, "BadArgument")
    no_name = client.call("POST", path, b"x", auth=conversation["token"],
                          headers={"Content-Type": "text/plain"})
    assert_error(no_name, 400, "MissingProperty")
    no_user = client.call("POST", path.split("?")[0], b"x", auth=conversation["token"],
                          headers={"Content-Type": "text/plain",
                                   "Content-Disposition": 'name="file"; filename="x"'})
    assert_error(no_user, 400, "MissingProperty", "the userId query parameter is required")
    assert client.stored(conversation["conversationId"])["activities"] == []


def raw_upload(client, conversation: dict, disposition, data: bytes = b"data") -> Reply:
    return client.call("POST", f"{V3}/conversations/{conversation['conversationId']}/upload?userId=user1",
                       data, auth=conversation["token"],
                       headers={"Content-Type": "text/plain", "Content-Disposition": disposition})


def test_raw_upload_takes_a_utf8_name_from_filename_star(client):
    conversation = client.start()
    cases = [
        ("name=\"file\"; filename=\"resume.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.txt",
         "résumé €.txt"),
        ("attachment; filename*=utf-8'fr'%F0%9F%93%84!#$&+-.^_`|~", "📄!#$&+-.^_`|~"),
        ("name=\"file\"; filename*=UTF-8''a%2522b; filename=\"fallback\"", "a%22b"),
    ]
    for disposition, _name in cases:
        assert raw_upload(client, conversation, disposition).status == 200, disposition
    stored = client.stored(conversation["conversationId"])["activities"]
    names = [a["attachments"][0]["name"] for a in stored if a["from"]["id"] == "user1"]
    assert names == [name for _, name in cases]
    uploads = [e for e in client.requests() if e["path"].endswith("/upload")]
    assert [e["filenames"] for e in uploads] == [[name] for _, name in cases]


def test_raw_upload_refuses_a_non_ascii_header_and_bad_filename_star(client):
    conversation = client.start()
    non_ascii = raw_upload(client, conversation, 'name="file"; filename="résumé.txt"'.encode())
    assert_error(non_ascii, 400, "BadArgument")
    assert "filename*" in non_ascii.json["error"]["message"]
    for value in ("ISO-8859-1''caf%E9",        # only UTF-8
                  "''abc",                     # no charset
                  "UTF-8''a%2",                # a cut escape
                  "UTF-8''a%zz",               # not hex
                  "UTF-8''%C3%28",             # not UTF-8
                  "UTF-8''%FF",                # not UTF-8
                  "UTF-8''a*b",                # * is no attr-char
                  "UTF-8''a'b",                # nor is '
                  "UTF-8''",                   # empty
                  "UTF-8'abc",                 # one quote
                  "UTF-8'e!n'abc",             # not a language tag
                  "\"UTF-8''abc\""):           # an ext-value is never quoted
        reply = raw_upload(client, conversation, f"name=\"file\"; filename=\"x\"; filename*={value}")
        assert_error(reply, 400, "BadArgument")
        assert "filename*" in reply.json["error"]["message"], value
    assert client.stored(conversation["conversationId"])["activities"] == []
    assert all("filenames" not in e for e in client.requests())


def test_multipart_names_are_utf8_in_filename_and_filename_star_is_refused(client):
    conversation = client.start()
    path = f"{V3}/conversations/{conversation['conversationId']}/upload?userId=user1"
    form = {"Content-Type": "multipart/form-data; boundary=bnd"}
    body = multipart([
        ([("Content-Type", "text/plain"),
          ("Content-Disposition", 'form-data; name="file"; filename="résumé %22q%22.txt"')], b"1"),
        ([("Content-Type", "application/vnd.microsoft.activity")], json.dumps(message("two")).encode()),
        ([("Content-Type", "text/plain"), ("Content-Disposition", 'form-data; name="field"')], b"2"),
    ], "bnd")
    assert client.call("POST", path, body, auth=conversation["token"], headers=form).status == 200
    user = client.activities(conversation).json["activities"][0]
    assert [a["name"] for a in user["attachments"]] == ['résumé "q".txt', "field"]
    starred = multipart([([("Content-Type", "text/plain"),
                           ("Content-Disposition", "form-data; name=\"file\"; filename=\"a.txt\"; "
                                                   "filename*=UTF-8''a.txt")], b"1")], "bnd")
    refused = client.call("POST", path, starred, auth=conversation["token"], headers=form)
    assert_error(refused, 400, "BadArgument")
    assert "RFC 7578" in refused.json["error"]["message"]
    first, second = [e for e in client.requests() if e["path"].endswith("/upload")]
    assert first["filenames"] == ['résumé "q".txt', "field"]
    assert "filenames" not in second and second["status"] == 400


def test_v1_uploads_follow_the_same_name_rules_and_log_them(client):
    conversation = client.start_v1()
    path = f"/api/conversations/{conversation['conversationId']}/upload?userId=user1"
    ok = client.call("POST", path, b"x", auth=conversation["token"],
                     headers={"Content-Type": "text/plain",
                              "Content-Disposition": "name=\"file\"; filename*=UTF-8''%C3%A9.txt"})
    assert ok.status == 204
    bad = client.call("POST", path, b"x", auth=conversation["token"],
                      headers={"Content-Type": "text/plain",
                               "Content-Disposition": "name=\"file\"; filename*=UTF-8''%C3"})
    assert_error(bad, 400, "BadArgument", legacy=True)
    assert [e.get("filenames") for e in client.requests()] == [None, ["é.txt"], None]


def test_upload_limit_is_configurable(client):
    client.config(maxUploadBytes=1000)
    conversation = client.start()
    path = f"{V3}/conversations/{conversation['conversationId']}/upload?userId=user1"
    headers = {"Content-Type": "application/octet-stream",
               "Content-Disposition": 'name="file"; filename="f.bin"'}
    assert client.call("POST", path, b"a" * 1000, auth=conversation["token"],
                       headers=headers).status == 200
    over = client.call("POST", path, b"a" * 1001, auth=conversation["token"], headers=headers)
    assert_error(over, 413, "RequestTooLarge",
                 "request content length exceeded limit of 1,000 bytes")


def test_v1_upload_with_message_part(client):
    conversation = client.start_v1()
    cid = conversation["conversationId"]
    body = multipart([
        ([("Content-Type", "application/vnd.microsoft.bot.message")],
         json.dumps({"text": "pics", "from": "user1"}).encode()),
        ([("Content-Type", "image/jpeg"),
          ("Content-Disposition", 'form-data; name="file"; filename="p.jpg"')], ALL_BYTES),
    ], "b1")
    reply = client.call("POST", f"/api/conversations/{cid}/upload?userId=user1", body,
                        auth=conversation["token"],
                        headers={"Content-Type": "multipart/form-data; boundary=b1"})
    assert reply.status == 204 and reply.body == b""
    user, bot = client.stored(cid)["messages"]
    [attachment] = user["attachments"]
    assert (attachment["name"], attachment["contentType"]) == ("p.jpg", "image/jpeg")
    assert fetch(attachment["url"]).body == ALL_BYTES
    assert bot["text"] == (f"received 1 attachment(s): p.jpg (image/jpeg, {len(ALL_BYTES)} "
                           "bytes); text: pics")


# -- command line ---------------------------------------------------------------------

def run_cli(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--quiet",
                                *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return process, process.stdout.readline()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_url_first_and_exits_cleanly(signum):
    process, first = run_cli()
    try:
        match = re.fullmatch(r"directline-emulator listening on http://127\.0\.0\.1:(\d+)\n",
                             first)
        assert match, first
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        conn.request("POST", f"{V3}/tokens/generate",
                     headers={"Authorization": f"Bearer {SECRET}"})
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signum)
        assert process.wait(5) == 0
        assert process.stdout.read() == ""
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")
def test_cli_serves_https(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    process, first = run_cli("--tls-cert", str(cert), "--tls-key", str(key),
                             "--secret", "s3cret")
    try:
        match = re.fullmatch(r"directline-emulator listening on https://127\.0\.0\.1:(\d+)\n",
                             first)
        assert match, first
        port = int(match.group(1))
        with pytest.raises(ssl.SSLCertVerificationError):
            http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                        context=ssl.create_default_context()).connect()
        trusted = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=trusted)
        conn.request("POST", f"{V3}/conversations", headers={"Authorization": "Bearer s3cret"})
        response = conn.getresponse()
        assert response.status == 201
        assert re.match(r"wss://127\.0\.0\.1:\d+/", json.loads(response.read())["streamUrl"])
        conn.close()
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=trusted)
        conn.request("GET", "/powervirtualagents/regionalchannelsettings?api-version=1")
        regional = json.loads(conn.getresponse().read())["channelUrlsById"]["directline"]
        assert regional == f"https://127.0.0.1:{port}/region/europe/"
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
