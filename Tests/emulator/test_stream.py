"""The emulator's Direct Line 3.0 WebSocket stream, against `websockets`' own
client as a strict, independent peer (RFC 6455).

Run from the repository root: python3 -m pytest Tests/emulator/test_stream.py -q
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from websockets.exceptions import (ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidMessage,
                                   InvalidStatus)
from websockets.sync.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from emulator.server import start_in_thread  # noqa: E402

SECRET = "emulator-secret"
V3 = "/v3/directline"
TICKET = r"[A-Za-z0-9_-]{40,}"


class Api:
    """HTTP calls to the emulator (service and control API), one connection each."""

    def __init__(self, handle) -> None:
        self.port = handle.port
        self.stream_port = handle.stream_port

    def call(self, method: str, path: str, body=None, auth: str | None = SECRET,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = f"Bearer {auth}"
        if isinstance(body, (dict, list)):
            all_headers.setdefault("Content-Type", "application/json")
            body = json.dumps(body).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.headers), response.read()
        finally:
            conn.close()

    def control(self, method: str, path: str, body=None) -> dict:
        status, _, data = self.call(method, f"/_emulator/{path}", body, auth=None)
        assert status == 200, data
        return json.loads(data)

    def config(self, **settings) -> dict:
        return self.control("POST", "config", settings)

    def fault(self, **rule) -> dict:
        return self.control("POST", "faults", rule)

    def streams(self) -> list[dict]:
        return self.control("GET", "streams")["streams"]

    def start(self, auth: str = SECRET) -> dict:
        status, _, data = self.call("POST", f"{V3}/conversations", auth=auth)
        assert status in (200, 201), data
        return json.loads(data)

    def reconnect(self, conversation: dict, watermark: str | None = None) -> dict:
        query = "" if watermark is None else f"?watermark={watermark}"
        status, _, data = self.call("GET", f"{V3}/conversations/{conversation['conversationId']}{query}",
                                    auth=conversation["token"])
        assert status == 200, data
        return json.loads(data)

    def send(self, conversation: dict, text: str | None = None, **activity) -> str:
        activity = {"type": "message", "from": {"id": "user1"}, **activity}
        if text is not None:
            activity["text"] = text
        status, _, data = self.call("POST", f"{V3}/conversations/{conversation['conversationId']}/activities",
                                    activity, auth=conversation["token"])
        assert status == 200, data
        return json.loads(data)["id"]

    def activities(self, conversation: dict, watermark: str = "") -> dict:
        status, _, data = self.call(
            "GET", f"{V3}/conversations/{conversation['conversationId']}/activities?watermark={watermark}",
            auth=conversation["token"])
        assert status == 200, data
        return json.loads(data)


def open_stream(url: str, **options) -> ClientConnection:
    options.setdefault("open_timeout", 5)
    options.setdefault("close_timeout", 2)
    return connect(url, **options)


def receive(ws: ClientConnection, timeout: float = 5, keep_alives: bool = False):
    """The next message as JSON (keep-alives skipped), or "" for a keep-alive
    when `keep_alives` is true."""
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert isinstance(message, str), "every message is a text frame"
        if message == "":
            if keep_alives:
                return ""
            continue
        return json.loads(message)


def receive_many(ws: ClientConnection, count: int) -> list[dict]:
    return [receive(ws) for _ in range(count)]


def closed_with(ws: ClientConnection, timeout: float = 5) -> ConnectionClosed:
    """How the server ended the stream (after any messages still on their way)."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=max(0.0, deadline - time.monotonic()))
    return info.value


def refused(url: str) -> tuple[int, dict, dict]:
    """The HTTP status, headers and JSON body of a refused upgrade."""
    with pytest.raises(InvalidStatus) as info:
        open_stream(url)
    response = info.value.response
    headers = {name.lower(): value for name, value in response.headers.raw_items()}
    return response.status_code, headers, json.loads(response.body) if response.body else {}


def wait_until(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def texts(activity_set: dict) -> list:
    return [(a["type"], a.get("text")) for a in activity_set["activities"]]


# -- URLs -------------------------------------------------------------------------------

def test_start_token_start_and_reconnect_answer_ws_urls_with_tickets(api):
    conversation = api.start()
    cid = conversation["conversationId"]
    assert api.control("GET", "streams")["port"] == api.stream_port != api.port
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{api.stream_port}{V3}/conversations/{cid}/stream\?t={TICKET}",
                        conversation["streamUrl"])
    status, _, data = api.call("POST", f"{V3}/tokens/generate")
    generated = json.loads(data)
    bound = api.start(auth=generated["token"])
    assert bound["conversationId"] == generated["conversationId"]
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{api.stream_port}{V3}/conversations/"
                        rf"{generated['conversationId']}/stream\?t={TICKET}", bound["streamUrl"])
    again = api.reconnect(conversation, "3")
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{api.stream_port}{V3}/conversations/{cid}"
                        rf"/stream\?watermark=3&t={TICKET}", again["streamUrl"])
    plain = api.reconnect(conversation)
    assert "watermark" not in plain["streamUrl"]
    tickets = {url.rsplit("t=", 1)[1] for url in (conversation["streamUrl"], again["streamUrl"],
                                                   plain["streamUrl"])}
    assert len(tickets) == 3 and conversation["token"] not in tickets
    # The host is the one the client asked for; the port is the stream's.
    status, _, data = api.call("POST", f"{V3}/conversations", headers={"Host": f"localhost:{api.port}"})
    assert json.loads(data)["streamUrl"].startswith(f"ws://localhost:{api.stream_port}/")
    # The HTTP port has no stream route.
    assert api.call("GET", f"{V3}/conversations/{cid}/stream")[0] == 404


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")
def test_tls_emulator_streams_over_wss_with_the_same_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    trusted = ssl.create_default_context(cafile=str(cert))
    with start_in_thread(tls_cert=str(cert), tls_key=str(key)) as secure:
        conn = http.client.HTTPSConnection("127.0.0.1", secure.port, timeout=5, context=trusted)
        conn.request("POST", f"{V3}/conversations", headers={"Authorization": f"Bearer {SECRET}"})
        conversation = json.loads(conn.getresponse().read())
        conn.close()
        url = conversation["streamUrl"]
        assert url.startswith(f"wss://127.0.0.1:{secure.stream_port}/")
        with pytest.raises(ssl.SSLCertVerificationError):
            open_stream(url, ssl=ssl.create_default_context())
        with open_stream(url, ssl=trusted) as ws:
            conn = http.client.HTTPSConnection("127.0.0.1", secure.port, timeout=5, context=trusted)
            conn.request("POST", f"{V3}/conversations/{conversation['conversationId']}/activities",
                         body=json.dumps({"type": "message", "from": {"id": "u"}, "text": "tls"}),
                         headers={"Authorization": f"Bearer {conversation['token']}",
                                  "Content-Type": "application/json"})
            assert conn.getresponse().status == 200
            conn.close()
            assert texts(receive(ws)) == [("message", "tls")]


def test_cli_stream_port_option_and_unchanged_banner():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        wanted = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--quiet",
                                "--stream-port", str(wanted)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        match = re.fullmatch(r"directline-emulator listening on http://127\.0\.0\.1:(\d+)\n", first)
        assert match, first
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        conn.request("POST", f"{V3}/conversations", headers={"Authorization": f"Bearer {SECRET}"})
        url = json.loads(conn.getresponse().read())["streamUrl"]
        conn.close()
        assert url.startswith(f"ws://127.0.0.1:{wanted}/")
        with open_stream(url):
            pass
        process.terminate()
        assert process.wait(5) == 0
        assert process.stdout.read() == "" and process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- what the stream pushes ---------------------------------------------------------------

def test_pushes_own_and_bot_activities_in_order_with_watermarks_and_typing_between(api):
    conversation = api.start()
    cid = conversation["conversationId"]
    with open_stream(conversation["streamUrl"]) as ws:
        first = api.send(conversation, "one", channelData={"clientActivityID": "c-1"})
        second = api.send(conversation, "two")
        sets = receive_many(ws, 6)
    assert [texts(s) for s in sets] == [
        [("message", "one")], [("typing", None)], [("message", "echo: one")],
        [("message", "two")], [("typing", None)], [("message", "echo: two")]]
    assert [s.get("watermark", "none") for s in sets] == ["1", "none", "2", "3", "none", "4"]
    pushed = [s["activities"][0] for s in sets if "watermark" in s]
    # Exactly what GET returns, in the same order, the user's own activities included.
    assert pushed == api.activities(conversation)["activities"]
    assert [a["id"] for a in pushed] == [first, f"{cid}|0000001", second, f"{cid}|0000003"]
    assert pushed[0]["channelData"] == {"clientActivityID": "c-1"}
    assert pushed[0]["from"] == {"id": "user1"}


def test_typing_goes_to_the_stream_only_never_to_get_or_the_store(api):
    conversation = api.start()
    cid = conversation["conversationId"]
    with open_stream(conversation["streamUrl"]) as ws:
        sent = api.send(conversation, "hi")
        user, typing, reply = receive_many(ws, 3)
    activity = typing["activities"][0]
    assert set(typing) == {"activities"}, "typing has no watermark position"
    assert re.fullmatch(rf"{re.escape(cid)}\|live\d{{7}}", activity["id"])
    assert activity["type"] == "typing" and activity["from"] == {"id": "echo-bot", "name": "Echo Bot"}
    assert activity["replyToId"] == sent
    assert activity["channelId"] == "directline" and activity["conversation"] == {"id": cid}
    listed = api.activities(conversation)
    assert [a["type"] for a in listed["activities"]] == ["message", "message"]
    assert listed["watermark"] == "2"
    stored = api.control("GET", f"conversations/{cid}")["activities"]
    assert "typing" not in [a["type"] for a in stored]
    assert activity["id"] not in [a["id"] for a in stored]
    # Non-message activities get no reply, so no typing either.
    with open_stream(api.reconnect(conversation)["streamUrl"]) as ws:
        api.send(conversation, type="event", name="ping")
        assert [a["type"] for a in receive(ws)["activities"]] == ["event"]
        with pytest.raises(TimeoutError):
            receive(ws, timeout=0.3)


def test_an_upload_is_pushed_with_its_attachment_then_typing_and_the_reply(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        status, _, _ = api.call("POST", f"{V3}/conversations/{conversation['conversationId']}/upload?userId=u9",
                                b"hello", auth=conversation["token"],
                                headers={"Content-Type": "text/plain",
                                         "Content-Disposition": 'name="file"; filename="a.txt"'})
        assert status == 200
        upload, typing, reply = receive_many(ws, 3)
    assert upload["activities"][0]["attachments"][0]["name"] == "a.txt"
    assert typing["activities"][0]["type"] == "typing"
    assert reply["activities"][0]["text"].startswith("received 1 attachment(s): a.txt")


def test_concurrent_sends_arrive_once_each_in_stored_order(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        workers = [threading.Thread(target=lambda w=w: [api.send(conversation, f"w{w}-{i}") for i in range(5)])
                   for w in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        sets = receive_many(ws, 60)  # 20 sends: user, typing, reply each
    stored = [s for s in sets if "watermark" in s]
    assert [s["watermark"] for s in stored] == [str(n) for n in range(1, 41)]
    assert [s["activities"][0] for s in stored] == api.activities(conversation)["activities"]


def test_null_watermark_setting_applies_to_the_stream(api):
    api.config(nullWatermark=True)
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, "x")
        user = receive(ws)
    assert "watermark" in user and user["watermark"] is None


# -- replay -----------------------------------------------------------------------------

def test_a_url_replays_after_its_watermark_then_goes_live(api):
    conversation = api.start()
    api.send(conversation, "a")
    api.send(conversation, "b")
    with open_stream(api.reconnect(conversation, "1")["streamUrl"]) as ws:
        replay = receive(ws)
        assert texts(replay) == [("message", "echo: a"), ("message", "b"), ("message", "echo: b")]
        assert replay["watermark"] == "4"
        api.send(conversation, "c")
        assert [s.get("watermark") for s in receive_many(ws, 3)] == ["5", None, "6"]


def test_replay_comes_in_sets_of_at_most_page_size(api):
    api.config(pageSize=2)
    conversation = api.start()
    for text in ("a", "b", "c"):
        api.send(conversation, text)
    with open_stream(api.reconnect(conversation, "0")["streamUrl"]) as ws:
        sets = receive_many(ws, 3)
    assert [len(s["activities"]) for s in sets] == [2, 2, 2]
    assert [s["watermark"] for s in sets] == ["2", "4", "6"]


def test_a_watermark_added_to_the_url_is_honoured(api):
    conversation = api.start()
    api.send(conversation, "a")
    url = api.reconnect(conversation)["streamUrl"]
    with open_stream(url.replace("?t=", "?watermark=1&t=")) as ws:
        assert texts(receive(ws)) == [("message", "echo: a")]


def test_a_watermark_ahead_of_the_conversation_skips_up_to_it_as_get_does(api):
    conversation = api.start()
    url = api.reconnect(conversation, "3")["streamUrl"]  # nothing is stored yet
    with open_stream(url) as ws:
        api.send(conversation, "at 0")
        api.send(conversation, "at 2")
        typing, pushed = receive_many(ws, 2)
    assert typing["activities"][0]["replyToId"].endswith("|0000002")
    assert texts(pushed) == [("message", "echo: at 2")] and pushed["watermark"] == "4"
    assert api.activities(conversation, "3")["activities"] == pushed["activities"]


def test_without_a_watermark_a_url_replays_what_came_after_it_was_issued(api):
    conversation = api.start()
    api.send(conversation, "before connecting")  # after the start, before the socket
    with open_stream(conversation["streamUrl"]) as ws:
        replay = receive(ws)
    assert texts(replay) == [("message", "before connecting"), ("message", "echo: before connecting")]
    assert replay["watermark"] == "2"
    url = api.reconnect(conversation)["streamUrl"]  # issued at watermark 2
    api.send(conversation, "after")
    with open_stream(url) as ws:
        replay = receive(ws)
    assert texts(replay) == [("message", "after"), ("message", "echo: after")]
    assert replay["watermark"] == "4"


# -- keep-alives and what clients send ---------------------------------------------------

def test_the_welcome_of_a_start_with_a_locale_is_replayed_by_its_stream_url(api):
    status, _, data = api.call("POST", f"{V3}/conversations", {"locale": "nb-NO"})
    assert status == 201
    conversation = json.loads(data)
    with open_stream(conversation["streamUrl"]) as ws:
        assert texts(receive(ws)) == [("message", "welcome (nb-NO)")]


def test_keep_alives_are_empty_text_messages_at_the_configured_interval(api):
    api.config(streamKeepAliveSeconds=0.15)
    conversation = api.start()
    started = time.monotonic()  # before the server can start counting
    with open_stream(conversation["streamUrl"]) as ws:
        assert [receive(ws, keep_alives=True) for _ in range(3)] == ["", "", ""]
        elapsed = time.monotonic() - started
        [info] = api.streams()
    assert 0.45 <= elapsed < 5
    assert info["keepAlivesSent"] >= 3 and info["framesSent"] == 0


def test_client_messages_are_ignored(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        ws.send("")
        ws.send("not an activity")
        api.send(conversation, "still streaming")
        assert texts(receive(ws)) == [("message", "still streaming")]
        [info] = api.streams()
    assert info["messagesReceived"] == 2
    assert api.activities(conversation)["watermark"] == "2"


# -- one stream per conversation --------------------------------------------------------

def test_a_second_stream_is_closed_with_collision_and_the_first_goes_on(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as first:
        with open_stream(api.reconnect(conversation)["streamUrl"]) as second:
            closed = closed_with(second)
        assert isinstance(closed, ConnectionClosedError)
        assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "collision")
        api.send(conversation, "to the first")
        assert texts(receive(first)) == [("message", "to the first")]
        assert len(api.streams()) == 1
    # Once the first has gone, a new stream is accepted.
    wait_until(lambda: api.streams() == [])
    with open_stream(api.reconnect(conversation)["streamUrl"]) as third:
        api.send(conversation, "to the third")
        assert texts(receive(third)) == [("message", "to the third")]


def test_close_old_policy_closes_the_first_stream_instead(api):
    api.config(streamCollision="closeOld")
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as first:
        with open_stream(api.reconnect(conversation)["streamUrl"]) as second:
            closed = closed_with(first)
            assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "collision")
            api.send(conversation, "to the second")
            assert texts(receive(second)) == [("message", "to the second")]


def test_streams_of_different_conversations_do_not_collide(api):
    one, two = api.start(), api.start()
    with open_stream(one["streamUrl"]) as a, open_stream(two["streamUrl"]) as b:
        api.send(one, "for one")
        api.send(two, "for two")
        assert texts(receive(a)) == [("message", "for one")]
        assert texts(receive(b)) == [("message", "for two")]


# -- endOfConversation --------------------------------------------------------------------

def test_the_users_end_of_conversation_is_pushed_then_the_stream_closes_normally(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, type="endOfConversation")
        assert [a["type"] for a in receive(ws)["activities"]] == ["endOfConversation"]
        closed = closed_with(ws)
    assert isinstance(closed, ConnectionClosedOK) and closed.rcvd.code == 1000
    assert api.control("GET", f"conversations/{conversation['conversationId']}")["ended"] is True


def test_the_bots_end_of_conversation_closes_the_stream_and_reconnects_replay_it(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, "end")
        sets = receive_many(ws, 3)
        closed = closed_with(ws)
    assert [s["activities"][0]["type"] for s in sets] == ["message", "typing", "endOfConversation"]
    ending = sets[2]["activities"][0]
    assert ending["from"]["id"] == "echo-bot" and sets[2]["watermark"] == "2"
    assert closed.rcvd.code == 1000
    assert api.activities(conversation)["activities"][1]["type"] == "endOfConversation"
    # A stream from before the end replays up to it and closes again; one from
    # after it stays open (the service keeps the conversation: sends are stored).
    with open_stream(api.reconnect(conversation, "1")["streamUrl"]) as ws:
        assert [a["type"] for a in receive(ws)["activities"]] == ["endOfConversation"]
        assert closed_with(ws).rcvd.code == 1000
    with open_stream(api.reconnect(conversation, "2")["streamUrl"]) as ws:
        api.send(conversation, "after the end")
        assert texts(receive(ws)) == [("message", "after the end")]  # the bot no longer answers
        with pytest.raises(TimeoutError):
            receive(ws, timeout=0.3)


# -- refused upgrades -------------------------------------------------------------------------

def test_wrong_missing_foreign_and_expired_tickets_are_refused_with_403(api):
    conversation = api.start()
    other = api.start()
    url = conversation["streamUrl"]
    base = url.split("?", 1)[0]
    for bad, code in ((f"{base}?t=not-a-ticket", "BadArgument"),
                      (base, "BadArgument"),
                      (f"{base}?t={conversation['token']}", "BadArgument"),  # the token is no ticket
                      (f"{base}?t={other['streamUrl'].rsplit('t=', 1)[1]}", "BadArgument")):
        status, headers, body = refused(bad)
        assert (status, body["error"]["code"]) == (403, code), bad
        assert headers["content-type"] == "application/json; charset=utf-8"
    reused = api.reconnect(conversation)["streamUrl"]
    for _ in range(2):  # usable more than once within its lifetime
        with open_stream(reused):
            pass
        wait_until(lambda: api.streams() == [])
    api.config(streamUrlLifetime=1)
    short = api.reconnect(conversation)["streamUrl"]
    time.sleep(1.1)
    status, _, body = refused(short)
    assert (status, body["error"]["code"]) == (403, "TokenExpired")


def test_bad_watermark_unknown_path_and_forgotten_conversation(api):
    conversation = api.start()
    url = conversation["streamUrl"]
    assert refused(url.replace("?t=", "?watermark=x&t="))[0] == 400
    assert refused(url.replace("/stream?", "/streams?"))[0] == 404
    api.control("POST", "reset")
    assert refused(url)[0] == 403  # tickets are forgotten with everything else


def test_upgrades_are_in_the_request_log(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]):
        pass
    refused(conversation["streamUrl"].split("?")[0])
    entries = [e for e in api.control("GET", "requests")["requests"] if e["path"].endswith("/stream")]
    assert [e["status"] for e in entries] == [101, 403]
    assert entries[0]["method"] == "GET" and entries[0]["query"].startswith("t=")
    assert entries[0]["headers"]["upgrade"] == "websocket"


# -- faults --------------------------------------------------------------------------------

def test_fault_refuses_the_upgrade_with_a_status_and_retry_after_once(api):
    conversation = api.start()
    api.fault(path="/stream$", action="status", status=503, retryAfter="7")
    status, headers, body = refused(conversation["streamUrl"])
    assert (status, headers["retry-after"], body["error"]["code"]) == (503, "7", "ServiceUnavailable")
    api.fault(action="status", status=502, bare=True)
    with pytest.raises(InvalidStatus) as info:
        open_stream(conversation["streamUrl"])
    assert info.value.response.status_code == 502 and b"<html>" in info.value.response.body
    with open_stream(conversation["streamUrl"]):
        pass


def test_fault_close_hang_delay_and_garbage_on_the_upgrade(api):
    conversation = api.start()
    url = conversation["streamUrl"]
    api.fault(path="/stream$", action="close")
    with pytest.raises(InvalidMessage) as info:  # the connection ended before any response
        open_stream(url)
    assert isinstance(info.value.__cause__, EOFError)
    api.fault(path="/stream$", action="hang", seconds=0.3)
    started = time.monotonic()
    with pytest.raises(InvalidMessage) as info:
        open_stream(url)
    assert isinstance(info.value.__cause__, EOFError)
    assert time.monotonic() - started >= 0.25
    api.fault(path="/stream$", action="garbage")
    with pytest.raises(InvalidStatus) as garbage:
        open_stream(url)
    assert garbage.value.response.status_code == 200
    api.fault(path="/stream$", action="delay", seconds=0.3)
    started = time.monotonic()
    with open_stream(url):
        assert time.monotonic() - started >= 0.25
    statuses = [e["status"] for e in api.control("GET", "requests")["requests"] if e["path"].endswith("/stream")]
    assert statuses == [None, None, 200, 101]


def test_fault_closes_cleanly_after_n_messages(api):
    conversation = api.start()
    api.fault(action="stream_close", frames=3, closeCode=1001, closeReason="maintenance")
    with open_stream(conversation["streamUrl"]) as ws:
        # Registered before the send, so that it goes live (typing included), not in the replay.
        wait_until(lambda: api.streams())
        api.send(conversation, "one")
        assert [s.get("watermark") for s in receive_many(ws, 3)] == ["1", None, "2"]
        closed = closed_with(ws)
    assert isinstance(closed, ConnectionClosedOK)
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "maintenance")
    assert api.control("GET", "faults")["faults"][0]["count"] == 0
    with open_stream(api.reconnect(conversation, "2")["streamUrl"]) as ws:  # the rule is used up
        api.send(conversation, "two")
        assert texts(receive(ws)) == [("message", "two")]


def test_fault_drops_tcp_without_a_close_frame_after_n_messages(api):
    conversation = api.start()
    api.send(conversation, "replayed")
    api.fault(action="stream_drop", frames=1)
    with open_stream(api.reconnect(conversation, "0")["streamUrl"]) as ws:
        assert receive(ws)["watermark"] == "2"
        closed = closed_with(ws)
    assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
    wait_until(lambda: api.streams() == [])


def test_fault_goes_silent_with_the_connection_open(api):
    api.config(streamKeepAliveSeconds=0.1)
    conversation = api.start()
    api.fault(action="stream_silent", frames=1)
    with open_stream(conversation["streamUrl"], close_timeout=0.3) as ws:
        wait_until(lambda: api.streams())  # the message goes live, alone, not in the replay with its echo
        api.send(conversation, "last words")
        assert texts(receive(ws)) == [("message", "last words")]
        with pytest.raises(TimeoutError):  # no typing, reply or keep-alive; not closed either
            ws.recv(timeout=0.5)
        assert not ws.ping().wait(0.3), "a silent server answers no ping"
        [info] = api.streams()
        assert info["state"] == "silent"
    # The client gave up and closed: the server notices, so no collision follows.
    wait_until(lambda: api.streams() == [])
    with open_stream(api.reconnect(conversation, "1")["streamUrl"]) as ws:
        assert texts(receive(ws)) == [("message", "echo: last words")]


def test_fault_silent_for_a_while_then_drops(api):
    conversation = api.start()
    api.fault(action="stream_silent", seconds=0.3)
    started = time.monotonic()
    with open_stream(conversation["streamUrl"]) as ws:
        closed = closed_with(ws)
    assert closed.rcvd is None and 0.3 <= time.monotonic() - started < 5


def test_fault_forces_a_collision_on_a_lone_stream(api):
    conversation = api.start()
    api.fault(action="stream_collision")
    with open_stream(conversation["streamUrl"]) as ws:
        closed = closed_with(ws)
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "collision")
    api.fault(action="stream_collision", frames=1, closeCode=4001)
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, "x")
        receive(ws)
        closed = closed_with(ws)
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "collision")


def test_stream_fault_rules_are_validated_and_never_match_http_requests(api):
    for bad in ({"action": "stream_close", "closeCode": 1005}, {"action": "stream_drop", "frames": -1},
                {"action": "stream_drop", "closeCode": 1000}, {"action": "status", "status": 500, "frames": 1},
                {"action": "stream_collision", "closeReason": "x"}, {"action": "stream_close", "status": 500},
                {"action": "stream_close", "closeReason": "x" * 124}):
        status, _, data = api.call("POST", "/_emulator/faults", bad, auth=None)
        assert status == 400, bad
    conversation = api.start()
    api.fault(action="stream_drop")
    api.send(conversation, "HTTP is untouched")
    assert refused(conversation["streamUrl"].split("?")[0])[0] == 403  # nor a refused upgrade
    assert api.control("GET", "faults")["faults"][0]["count"] == 1
    api.control("DELETE", "faults")
    api.fault(action="close_mid")  # an HTTP-only action: the upgrade is untouched
    with open_stream(conversation["streamUrl"]):
        pass
    assert api.control("GET", "faults")["faults"][0]["count"] == 1


# -- the control API ------------------------------------------------------------------------

def test_control_api_closes_drops_and_collides_an_open_stream_now(api):
    conversation = api.start()
    cid = conversation["conversationId"]
    path = f"streams/{cid}"
    status, _, _ = api.call("POST", f"/_emulator/{path}", {"action": "close"}, auth=None)
    assert status == 404  # no open stream
    for bad in ({"action": "explode"}, {"action": "drop", "closeCode": 1000}, {"action": "close", "closeCode": 1006},
                {"action": "close", "seconds": 1}, {"action": "close", "extra": 1}):
        assert api.call("POST", f"/_emulator/{path}", bad, auth=None)[0] == 400, bad
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, "queued first")
        assert api.control("POST", path, {"action": "close", "closeCode": 4000, "closeReason": "bye"}) == {"streams": 1}
        assert len(receive_many(ws, 3)) == 3  # what was stored before the call still arrives
        closed = closed_with(ws)
    assert (closed.rcvd.code, closed.rcvd.reason) == (4000, "bye")
    wait_until(lambda: api.streams() == [])
    with open_stream(api.reconnect(conversation)["streamUrl"]) as ws:
        api.control("POST", path, {"action": "drop"})
        assert closed_with(ws).rcvd is None
    wait_until(lambda: api.streams() == [])
    with open_stream(api.reconnect(conversation)["streamUrl"]) as ws:
        api.control("POST", path, {"action": "collision"})
        assert (closed_with(ws).rcvd.reason) == "collision"


def test_control_api_silences_an_open_stream(api):
    api.config(streamKeepAliveSeconds=0.1)
    conversation = api.start()
    with open_stream(conversation["streamUrl"], close_timeout=0.2) as ws:
        assert receive(ws, keep_alives=True) == ""
        api.control("POST", f"streams/{conversation['conversationId']}", {"action": "silent", "seconds": 30})
        wait_until(lambda: api.streams()[0]["state"] == "silent")
        with pytest.raises(TimeoutError):
            for _ in range(20):  # keep-alives in flight may still arrive, then nothing
                ws.recv(timeout=0.4)


def test_a_stream_open_at_a_reset_is_not_listed_when_it_ends_after_it(api):
    # The reset closes it (1001), but the server forgets the connection a
    # moment after the reset emptied the list: it must not come back in it
    # (the next test's listing found the last test's stream there).
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        wait_until(lambda: len(api.streams()) == 1)
        api.control("POST", "reset")
        assert closed_with(ws).rcvd.code == 1001
    wait_until(lambda: api.streams() == [])
    time.sleep(0.3)
    assert api.control("GET", "streams")["closed"] == []


def test_streams_listing_and_settings(api):
    listing = api.control("GET", "streams")
    assert listing == {"port": api.stream_port, "secure": False, "streams": [], "closed": []}
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, "x")
        receive_many(ws, 3)
        [info] = api.streams()
    assert info["conversationId"] == conversation["conversationId"]
    assert (info["state"], info["watermark"], info["framesSent"]) == ("open", "2", 3)
    assert isinstance(info["connection"], int)
    for bad in ({"streamKeepAliveSeconds": 0}, {"streamKeepAliveSeconds": "1"}, {"streamUrlLifetime": 0},
                {"streamUrlLifetime": 1.5}, {"streamCollision": "both"}, {"botDelaySeconds": -1},
                {"botDelaySeconds": True}):
        assert api.call("POST", "/_emulator/config", bad, auth=None)[0] == 400, bad
    settings = api.config(streamKeepAliveSeconds=0.5, streamUrlLifetime=5, botDelaySeconds=0.25,
                          streamCollision="closeOld")
    assert (settings["streamKeepAliveSeconds"], settings["streamUrlLifetime"], settings["botDelaySeconds"],
            settings["streamCollision"]) == (0.5, 5, 0.25, "closeOld")


def test_bot_delay_comes_between_typing_and_the_reply(api):
    api.config(botDelaySeconds=0.4)
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        sender = threading.Thread(target=api.send, args=(conversation, "wait for it"))
        sender.start()
        user, typing, reply = receive_many(ws, 3)
        sender.join(5)
    assert texts(reply) == [("message", "echo: wait for it")]
    # The server's own clock: typing at once, the reply after the delay.
    stamps = [datetime.strptime(s["activities"][0]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
              for s in (user, typing, reply)]
    assert (stamps[1] - stamps[0]).total_seconds() < 0.3
    assert (stamps[2] - stamps[1]).total_seconds() >= 0.4


def test_reset_and_stop_close_open_streams(api):
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        api.control("POST", "reset")
        assert closed_with(ws).rcvd.code == 1001
    with start_in_thread() as own:
        own_api = Api(own)
        started = own_api.start()
        own_api.fault(action="stream_silent")
        with open_stream(started["streamUrl"]) as silent, \
                open_stream(own_api.start()["streamUrl"]) as normal:
            began = time.monotonic()
            own.stop()
            assert time.monotonic() - began < 5
            assert closed_with(normal).rcvd.code == 1001
            assert closed_with(silent).rcvd is None
