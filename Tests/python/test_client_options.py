"""Client options the core added: locale at the start, bot agent and extra headers, token endpoints.

Held to API.md ("config_json", "Starting and opening") through the
emulator's request log: what the binding passes must reach the wire (or be
refused with nothing sent), whatever the protocol and whichever call sends.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import directline
from directline import aio
from support import SECRET, Emulator, items

API_VERSION = "2022-03-01-preview"
START_PATHS = ("/v3/directline/conversations", "/api/conversations")


def make_client(emulator: Emulator, protocol: str = "3.0", **options: Any) -> directline.Client:
    return directline.Client(emulator.url, secret=SECRET, protocol=protocol, timeout_ms=10_000,
                             retry={"max_attempts": 1}, **options)


def token_url(emulator: Emulator, schema: str = "cr1_bot") -> str:
    """The emulator's Copilot Studio token service for ``schema``."""
    return f"{emulator.url}/powervirtualagents/botsbyschema/{schema}/directline/token?api-version={API_VERSION}"


def starts(emulator: Emulator) -> list[dict[str, Any]]:
    """The logged requests that start a conversation (any region prefix)."""
    return [entry for entry in emulator.requests()
            if entry["method"] == "POST" and entry["path"].endswith(START_PATHS)]


def start_body(emulator: Emulator) -> dict[str, Any]:
    (entry,) = starts(emulator)
    body: dict[str, Any] = json.loads(entry["body"]) if entry["body"] else {}
    return body


# ---- locale --------------------------------------------------------------------------------------

def test_the_locale_goes_in_the_start_body_and_the_bot_welcomes_in_it(emulator):
    with make_client(emulator) as client, client.start_conversation(locale="fr-FR") as conversation:
        assert start_body(emulator) == {"locale": "fr-FR"}
        assert emulator.conversation(conversation.id)["locale"] == "fr-FR"
        welcome = items(conversation.get_activities())
    assert [activity["text"] for activity in welcome] == ["welcome (fr-FR)"]


def test_the_locale_goes_with_the_user(emulator):
    with make_client(emulator) as client, client.start_conversation("dl_user1", "Ana", locale="pt-BR"):
        assert start_body(emulator) == {"user": {"id": "dl_user1", "name": "Ana"}, "locale": "pt-BR"}


def test_without_a_locale_the_start_body_has_none(emulator):
    with make_client(emulator) as client, client.start_conversation() as conversation:
        assert "locale" not in start_body(emulator)
        assert emulator.conversation(conversation.id)["locale"] is None


@pytest.mark.parametrize("tag", ["zh-Hant-TW", "de-CH-1996", "x-private", "i-klingon", "en", "es-419"])
def test_well_formed_tags_are_sent_as_given(emulator, tag):
    with make_client(emulator) as client, client.start_conversation(locale=tag):
        assert start_body(emulator) == {"locale": tag}


@pytest.mark.parametrize("tag", ["fr_FR", "en--US", "", "de-1996-1996", "en-", "français"])
def test_malformed_tags_are_refused_with_nothing_sent(emulator, tag):
    with make_client(emulator) as client:
        with pytest.raises(directline.InvalidArgumentError) as refused:
            client.start_conversation(locale=tag)
    assert "locale" in str(refused.value)
    assert emulator.requests() == []


def test_a_locale_is_refused_on_1_1_with_nothing_sent(emulator):
    with make_client(emulator, "1.1") as client:
        with pytest.raises(directline.InvalidArgumentError) as refused:
            client.start_conversation(locale="fr-FR")
    message = str(refused.value)
    assert "locale" in message and "1.1" in message
    assert emulator.requests() == []


@pytest.mark.asyncio
async def test_aio_start_takes_the_locale(emulator):
    async with aio.Client(emulator.url, secret=SECRET, timeout_ms=10_000) as client:
        async with await client.start_conversation(locale="nl-BE") as conversation:
            assert start_body(emulator) == {"locale": "nl-BE"}
            assert emulator.conversation(conversation.id)["locale"] == "nl-BE"
        with pytest.raises(directline.InvalidArgumentError):
            await client.start_conversation(locale="nl_BE")
    assert len(starts(emulator)) == 1


# ---- bot agent and headers -----------------------------------------------------------------------

def test_bot_agent_and_headers_go_with_every_request(emulator, protocol, tmp_path: Path):
    upload = tmp_path / "note.txt"
    upload.write_bytes(b"hello")
    headers = {"X-Request-Source": "kiosk-12", "X-Trace": "a b;c=d"}
    with make_client(emulator, protocol, bot_agent="Kiosk/2.1", headers=headers) as client:
        with client.start_conversation() as conversation:
            conversation.send_text("user1", "hi")
            conversation.upload_file("user1", upload)
            conversation.get_activities()
    log = emulator.requests()
    kinds = {(entry["method"], entry["path"].rsplit("/", 1)[-1]) for entry in log}
    sent = "activities" if protocol == "3.0" else "messages"
    assert {("POST", "conversations"), ("POST", sent), ("POST", "upload"), ("GET", sent)} <= kinds
    for entry in log:
        agent = entry["headers"]["x-ms-bot-agent"]
        assert agent.startswith(f"DirectLine/{protocol} (libdirectline ") and agent.endswith("; Kiosk/2.1)"), entry
        assert entry["headers"]["x-request-source"] == "kiosk-12"
        assert entry["headers"]["x-trace"] == "a b;c=d"


def test_without_a_bot_agent_the_header_names_the_library_only(emulator):
    with make_client(emulator) as client, client.start_conversation():
        pass
    agent = starts(emulator)[0]["headers"]["x-ms-bot-agent"]
    assert agent.startswith("DirectLine/3.0 (libdirectline ") and agent.endswith(")") and ";" not in agent


REFUSED_HEADERS = [
    ({"Authorization": "Bearer x"}, "Authorization"),
    ({"Host": "example.com"}, "Host"),
    ({"Content-Type": "text/plain"}, "Content-Type"),
    ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding"),
    ({"Connection": "close"}, "Connection"),
    ({"Upgrade": "websocket"}, "Upgrade"),
    ({"Expect": "100-continue"}, "Expect"),
    ({"Sec-WebSocket-Protocol": "x"}, "Sec-WebSocket-Protocol"),
    ({"User-Agent": "me"}, "User-Agent"),
    ({"X-MS-Bot-Agent": "me"}, "X-MS-Bot-Agent"),
    ({"Accept": "*/*"}, "Accept"),
    ({"Keep-Alive": "timeout=5"}, "Keep-Alive"),
    ({"Proxy-Authorization": "Basic x"}, "Proxy-Authorization"),
    ({"Proxy-Connection": "close"}, "Proxy-Connection"),
    ({"TE": "trailers"}, "TE"),
    ({"Trailer": "X-A"}, "Trailer"),
    ({"X Bad": "v"}, "X Bad"),
    ({"X-Ctl": "a\r\nX-Injected: 1"}, "X-Ctl"),
    ({"X-Lead": " v"}, "X-Lead"),
    ({"X-Trail": "v\t"}, "X-Trail"),
    ({"X-Empty": ""}, "X-Empty"),
    ({"X-Big": "v" * 8193}, "X-Big"),
    ({"X-Twice": "1", "x-twice": "2"}, "x-twice"),
]


@pytest.mark.parametrize(("headers", "name"), REFUSED_HEADERS, ids=[name for _, name in REFUSED_HEADERS])
def test_each_refused_header_names_itself(headers, name):
    with pytest.raises(directline.InvalidArgumentError) as refused:
        directline.Client("http://127.0.0.1:9", secret=SECRET, headers=headers)
    assert name in str(refused.value)


def test_at_most_64_headers():
    directline.Client("http://127.0.0.1:9", secret=SECRET, headers={f"X-H{i}": "v" for i in range(64)}).close()
    with pytest.raises(directline.InvalidArgumentError, match="64"):
        directline.Client("http://127.0.0.1:9", secret=SECRET, headers={f"X-H{i}": "v" for i in range(65)})


@pytest.mark.parametrize("headers", [["X-A", "b"], "X-A: b", {1: "b"}, {"X-A": 1}, {"X-A": b"b"}, {b"X-A": "b"}],
                         ids=["list", "str", "int-name", "int-value", "bytes-value", "bytes-name"])
def test_headers_must_map_str_to_str(headers):
    with pytest.raises(directline.InvalidArgumentError, match="headers"):
        directline.Client("http://127.0.0.1:9", secret=SECRET, headers=headers)


@pytest.mark.parametrize("agent", ["My(App)", "back\\slash", "caf\u00e9", "tab\there", "x" * 257])
def test_bad_bot_agents_are_refused(agent):
    with pytest.raises(directline.InvalidArgumentError, match="botAgent"):
        directline.Client("http://127.0.0.1:9", secret=SECRET, bot_agent=agent)


# ---- token endpoints -----------------------------------------------------------------------------

def test_copilot_studio_token_endpoint_alone_reaches_the_regional_host(emulator):
    with directline.Client(token_endpoint=token_url(emulator), timeout_ms=10_000,
                           retry={"max_attempts": 1}) as client:
        with client.start_conversation() as first:
            first_id = first.id
            first.send_text("user1", "hello")
            replies = first.wait(timeout=5)
        with client.start_conversation() as second:
            assert second.id != first_id
    assert [reply["text"] for reply in replies] == ["echo: hello"]
    log = emulator.requests()
    token_path = "/powervirtualagents/botsbyschema/cr1_bot/directline/token"
    token_gets = [entry for entry in log if entry["path"] == token_path]
    settings_gets = [entry for entry in log if entry["path"] == "/powervirtualagents/regionalchannelsettings"]
    assert len(token_gets) == 2 and all(entry["method"] == "GET" for entry in token_gets)
    assert all(entry["query"] == f"api-version={API_VERSION}" for entry in token_gets + settings_gets)
    assert len(settings_gets) == 1  # read once per client, not once per start
    direct_line = [entry for entry in log if entry not in token_gets + settings_gets]
    assert direct_line and all(entry["path"].startswith("/region/europe/v3/directline/") for entry in direct_line)
    assert len([entry for entry in direct_line if entry["path"] == "/region/europe/v3/directline/conversations"]) == 2
    # Every Direct Line request holds the token the endpoint handed out, none the secret.
    assert all(entry["headers"]["authorization"].startswith("Bearer ") for entry in direct_line)
    assert not any(SECRET in json.dumps(entry) for entry in log)


def test_the_regional_settings_decide_the_host(emulator):
    emulator.configure(region="asia")
    with directline.Client(token_endpoint=token_url(emulator), timeout_ms=10_000) as client:
        with client.start_conversation():
            pass
    assert starts(emulator)[0]["path"] == "/region/asia/v3/directline/conversations"


@contextmanager
def relaying_token_service(emulator: Emulator) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A bot's own token service on loopback: each GET fetches a token from the
    emulator's token service and answers it. Yields its URL and what it answered."""
    answered: list[dict[str, Any]] = []
    upstream = token_url(emulator)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
            with urllib.request.urlopen(upstream, timeout=10) as response:
                body = response.read()
            answered.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/directline/token", answered
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_conversation_is_the_one_the_token_is_bound_to(emulator):
    with relaying_token_service(emulator) as (url, answered):
        with directline.Client(emulator.url, token_endpoint=url, timeout_ms=10_000) as client:
            with client.start_conversation(locale="it-IT") as conversation:
                conversation_id = conversation.id
                conversation.send_text("user1", "ciao")
                replies = conversation.wait(timeout=5)
    (token,) = answered
    assert conversation_id == token["conversationId"]
    (start,) = starts(emulator)
    assert start["path"] == "/v3/directline/conversations"  # the given endpoint: no regional settings
    assert start["headers"]["authorization"] == "Bearer " + token["token"]
    assert json.loads(start["body"]) == {"locale": "it-IT"}
    assert [reply["text"] for reply in replies] == ["welcome (it-IT)", "echo: ciao"]


def test_generate_token_returns_the_endpoints_token(emulator):
    emulator.configure(tokenEndpointLifetime=300)
    with directline.Client(token_endpoint=token_url(emulator), timeout_ms=10_000) as client:
        result = client.generate_token()
        with pytest.raises(directline.InvalidArgumentError):
            client.generate_token(user_id="dl_someone")
    assert set(result) == {"token", "expires_in", "conversationId"} and result["expires_in"] == 300
    log = emulator.requests()
    assert [(entry["method"], entry["path"]) for entry in log] == [
        ("GET", "/powervirtualagents/botsbyschema/cr1_bot/directline/token")]
    # The token is a Direct Line token for that conversation.
    with directline.Client(emulator.url, token=result["token"]) as client, client.start_conversation() as started:
        assert started.id == result["conversationId"]


def test_an_expires_in_spelled_expiresIn_is_understood(emulator):
    emulator.configure(tokenEndpointExpiresKey="expiresIn", tokenEndpointLifetime=500)
    with directline.Client(token_endpoint=token_url(emulator), timeout_ms=10_000) as client:
        assert client.generate_token()["expires_in"] == 500
        with client.start_conversation() as conversation:
            info = conversation.info()
    assert info["autoRefresh"] is True
    expires = datetime.strptime(info["tokenExpiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert 490 <= expires.timestamp() - time.time() <= 505


@pytest.mark.parametrize(("status", "error"), [(500, directline.ServiceError), (403, directline.ForbiddenError),
                                               (404, directline.NotFoundError)])
def test_a_failing_token_endpoint_raises_the_mapped_error_naming_it(emulator, status, error):
    emulator.fault(path="/directline/token$", action="status", status=status, count=-1)
    with directline.Client(token_endpoint=token_url(emulator), timeout_ms=10_000,
                           retry={"max_attempts": 1}) as client:
        with pytest.raises(error) as failed:
            client.start_conversation()
        assert "tokenEndpoint" in str(failed.value) and failed.value.http_status == status
        with pytest.raises(error, match="tokenEndpoint"):
            client.generate_token()
    assert starts(emulator) == []


def test_a_token_endpoint_client_opens_only_with_a_token(emulator):
    with directline.Client(token_endpoint=token_url(emulator), timeout_ms=10_000) as client:
        with pytest.raises(directline.InvalidArgumentError, match="token"):
            client.open_conversation("some-conversation")
        with client.start_conversation() as started:
            state = started.state()
        with client.resume(state) as resumed:
            resumed.send_text("user1", "again")
            assert [reply["text"] for reply in resumed.wait(timeout=5)] == ["echo: again"]


@pytest.mark.parametrize("others", [{"secret": SECRET}, {"token": "some-token"}])
def test_a_token_endpoint_is_one_credential_of_three(emulator, others):
    with pytest.raises(directline.InvalidArgumentError):
        directline.Client(emulator.url, token_endpoint=token_url(emulator), **others)


def test_an_explicit_regional_settings_endpoint_is_followed(emulator):
    emulator.configure(region="brazil")
    settings = f"{emulator.url}/powervirtualagents/regionalchannelsettings?api-version={API_VERSION}"
    with directline.Client(secret=SECRET, regional_settings_endpoint=settings, timeout_ms=10_000) as client:
        with client.start_conversation() as conversation:
            conversation.send_text("user1", "ol\u00e1")
    paths = [entry["path"] for entry in emulator.requests()]
    assert paths[0] == "/powervirtualagents/regionalchannelsettings"
    assert paths[1:] and all(path.startswith("/region/brazil/v3/directline/") for path in paths[1:])
    with pytest.raises(directline.InvalidArgumentError, match="regionalSettingsEndpoint"):
        directline.Client(emulator.url, secret=SECRET, regional_settings_endpoint=settings)


# ---- uploads ---------------------------------------------------------------------------------------

def test_a_non_ascii_file_name_goes_out_in_filename_star(emulator, tmp_path: Path):
    path = tmp_path / "r\u00e9sum\u00e9 \u65e5\u672c.txt"
    path.write_bytes(b"cv")
    with make_client(emulator) as client, client.start_conversation() as conversation:
        conversation.upload_file("user1", path)
        stored = emulator.conversation(conversation.id)["activities"]
    (upload,) = [entry for entry in emulator.requests() if entry["path"].endswith("/upload")]
    disposition = upload["headers"]["content-disposition"]
    assert disposition.isascii()
    assert "filename*=UTF-8''" + urllib.parse.quote(path.name, safe="") in disposition
    assert disposition.index("filename=") < disposition.index("filename*=")
    assert [attachment["name"] for item in stored for attachment in item.get("attachments", [])] == [path.name]


@pytest.mark.parametrize("mode", ["polling", "websocket"])
def test_a_resumed_handle_whose_regional_settings_fail_reports_it_when_listening(emulator, mode):
    """A handle opened from a saved state reads the regional host on the
    library's thread before its first poll or stream; when that read fails,
    listening ends with the mapped error, named after the URL that failed."""
    with directline.Client(token_endpoint=token_url(emulator)) as first, first.start_conversation() as started:
        state = started.state()
    emulator.fault(method="GET", path=r"/powervirtualagents/regionalchannelsettings$", action="status",
                   status=403, count=-1)
    with directline.Client(token_endpoint=token_url(emulator), retry={"max_attempts": 1}) as client:
        with client.resume(state) as conversation:
            assert conversation.listen(mode=mode)["mode"] == mode
            with pytest.raises(directline.ForbiddenError) as raised:
                for _ in range(20):
                    conversation.next(0.5)
    assert raised.value.message.startswith("regionalSettingsEndpoint: ")
    assert not [entry for entry in emulator.requests() if entry["path"].startswith("/region/")
                and entry["method"] == "GET" and "/conversations/" in entry["path"]]
