"""The "proxy" option, through a recording forwarding proxy (recording_proxy.py).

With "proxy" set, every request reaches the emulator through the proxy (in
absolute form for http://, inside a CONNECT tunnel for https://) and
carries exactly one User-Agent, the CONNECT included; the calls give the
same results as without a proxy. Without "proxy", requests carry exactly one
User-Agent and the *_proxy environment variables are ignored; with it,
no_proxy cannot route around the proxy. A proxy that refuses connections,
or refuses to open a tunnel, is a network error with nothing sent. With a
plain http:// endpoint the proxy must be on loopback or https:// unless
"allowInsecureHttp" is set: creating the client says so."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlsplit

import pytest

import directline
from directline import Status
from recording_proxy import RecordingProxy
from support import REPO_ROOT, SECRET, items, python_env, sender, streamed_exchange, text_activity

sys.path.insert(0, str(REPO_ROOT))
from emulator.server import start_in_thread  # noqa: E402

USER = "user1"
DEFAULT_AGENT = f"libdirectline/{directline.__version__}"
CUSTOM_AGENT = "proxy-test/2.0 (custom)"
# None: the configuration has no "userAgent", so the default is sent.
AGENTS = pytest.mark.parametrize("agent", [None, CUSTOM_AGENT], ids=["default-agent", "custom-agent"])
SMALL = b"a small file\n"
# Over the library's 1 MiB limit for bodies sent from memory: this upload is
# streamed through libcurl's read callback instead.
STREAMED_BYTES = (1 << 20) + 4097
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


# ---- fixtures and helpers -----------------------------------------------------------------

@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file the library streams from disk rather than sending from memory."""
    path = tmp_path_factory.mktemp("proxy") / "streamed.bin"
    path.write_bytes((bytes(range(251)) * (STREAMED_BYTES // 251 + 1))[:STREAMED_BYTES])
    return path


def openssl(*arguments: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA (ca.pem) and a certificate it signed for 127.0.0.1 (good.pem, good.key).

    P-256 keys, as they are made far faster than RSA ones."""
    folder = tmp_path_factory.mktemp("proxy-tls")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=libdirectline proxy test CA", cwd=folder)
    openssl("req", *curve, "-keyout", "good.key", "-out", "good.csr", "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "local.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "good.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "local.ext", "-out", "good.pem", cwd=folder)
    return folder


@pytest.fixture
def tls_emulator(certificates: Path) -> Iterator[Any]:
    """An https emulator in this process, with a certificate signed by the test CA."""
    with start_in_thread(secret=SECRET, tls_cert=str(certificates / "good.pem"),
                         tls_key=str(certificates / "good.key")) as handle:
        yield handle


def expected_activities(streamed: Path) -> list[tuple[str, Optional[str], list[str]]]:
    """What `exchange` reads back: each item's sender, text and attachment names."""
    size = streamed.stat().st_size
    return [
        (USER, "through the proxy", []), ("echo-bot", "echo: through the proxy", []),
        (USER, "an activity", []), ("echo-bot", "echo: an activity", []),
        (USER, None, ["small.txt"]),
        ("echo-bot", f"received 1 attachment(s): small.txt (text/plain, {len(SMALL)} bytes)", []),
        (USER, None, ["streamed.bin"]),
        ("echo-bot", f"received 1 attachment(s): streamed.bin (application/octet-stream, {size} bytes)", []),
    ]


def exchange(endpoint: str, protocol: str, streamed: Path, **config: Any) -> dict[str, Any]:
    """Starts a conversation, sends a text and an activity, uploads bytes (sent from
    memory) and a file (streamed), and reads the replies, with a client made from
    `config` (C spelling). Returns the parts of the results that do not depend on ids."""
    settings = {"endpoint": endpoint, "secret": SECRET, "protocol": protocol, "timeoutMs": 10_000,
                "retry": {"maxAttempts": 1}, **config}
    with directline.Client.from_config(settings) as client:
        with client.start_conversation() as conversation:
            results = [conversation.start_result,
                       conversation.send_text(USER, "through the proxy"),
                       conversation.send_activity(text_activity(protocol, "an activity")),
                       conversation.upload_bytes(USER, SMALL, content_type="text/plain", filename="small.txt"),
                       conversation.upload_file(USER, streamed, content_type="application/octet-stream")]
            replies = conversation.get_activities()
    return {"keys": [sorted(result or {}) for result in results],
            "activities": [(sender(item), item.get("text"), [file["name"] for file in item.get("attachments", [])])
                           for item in items(replies)],
            "watermark": replies["watermark"]}


def with_agent(agent: Optional[str], **config: Any) -> dict[str, Any]:
    return config if agent is None else {**config, "userAgent": agent}


def absolute(endpoint: str, entry: dict[str, Any]) -> str:
    """The absolute-form target of a request in the emulator's log."""
    return f"{endpoint}{entry['path']}" + (f"?{entry['query']}" if entry["query"] else "")


def streamed_upload_arrived_whole(received: list[dict[str, Any]], streamed: Path) -> bool:
    digest = hashlib.sha256(streamed.read_bytes()).hexdigest()
    return any(entry["bodySha256"] == digest for entry in received if entry["path"].endswith("/upload"))


# ---- with "proxy": plain http ---------------------------------------------------------------

@AGENTS
def test_every_request_goes_through_the_proxy_with_one_user_agent_and_the_same_results(
        emulator: Any, protocol: str, proxy: RecordingProxy, streamed: Path, agent: Optional[str]) -> None:
    direct = exchange(emulator.url, protocol, streamed, **with_agent(agent))
    assert direct["activities"] == expected_activities(streamed)
    emulator.reset()

    proxied = exchange(emulator.url, protocol, streamed, **with_agent(agent, proxy=proxy.url))
    assert proxied == direct

    received = emulator.requests()
    seen = proxy.seen()
    # start, send text, send activity, two uploads, get: each once, all through the proxy.
    assert len(received) == 6
    assert [(entry.method, entry.target) for entry in seen] == [
        (entry["method"], absolute(emulator.url, entry)) for entry in received]
    expected = agent or DEFAULT_AGENT
    for entry in seen:
        assert entry.values("User-Agent") == [expected], f"{entry.method} {entry.target}"
    # The emulator joins repeated headers with ", ": a second copy would show here too.
    assert [entry["headers"].get("user-agent") for entry in received] == [expected] * len(received)
    assert streamed_upload_arrived_whole(received, streamed)


def test_the_client_keeps_its_connection_to_the_proxy(emulator: Any, protocol: str, proxy: RecordingProxy,
                                                      streamed: Path) -> None:
    # A client reuses its connections (docs/conventions.md); through a proxy too.
    exchange(emulator.url, protocol, streamed, proxy=proxy.url)
    seen = proxy.seen()
    assert len(seen) == 6
    assert len({entry.connection for entry in seen}) < len(seen)


# ---- without "proxy" -------------------------------------------------------------------------

@AGENTS
def test_without_a_proxy_each_request_carries_one_user_agent(emulator: Any, protocol: str, streamed: Path,
                                                             agent: Optional[str]) -> None:
    result = exchange(emulator.url, protocol, streamed, **with_agent(agent))
    assert result["activities"] == expected_activities(streamed)
    received = emulator.requests()
    assert len(received) == 6
    # Joined with ", " by the emulator when repeated, so this also counts them.
    assert [entry["headers"].get("user-agent") for entry in received] == [agent or DEFAULT_AGENT] * 6


# The child makes the calls of `exchange` with a client that has no "proxy" key
# (an empty one is refused), and after them one request with urllib, which does read the environment:
# the proxy seeing that one shows the environment was in effect.
ENVIRONMENT_CHILD = r"""
import json, sys, urllib.request
import directline

endpoint, secret, protocol, streamed = sys.argv[1:5]
config = {"endpoint": endpoint, "secret": secret, "protocol": protocol, "timeoutMs": 10000,
          "retry": {"maxAttempts": 1}}
with directline.Client.from_config(config) as client:
    with client.start_conversation() as conversation:
        conversation.send_text("user1", "through the proxy")
        conversation.send_activity({"type": "message", "from": {"id": "user1"}, "text": "an activity"}
                                   if protocol == "3.0" else {"from": "user1", "text": "an activity"})
        conversation.upload_bytes("user1", b"a small file\n", content_type="text/plain", filename="small.txt")
        conversation.upload_file("user1", streamed, content_type="application/octet-stream")
        replies = conversation.get_activities()
with urllib.request.urlopen(endpoint + "/_emulator/requests", timeout=10) as response:
    response.read()
print(json.dumps([item.get("text") for item in replies.get("activities", replies.get("messages"))]))
"""


def test_proxy_environment_variables_are_ignored(emulator: Any, protocol: str, proxy: RecordingProxy,
                                                 streamed: Path) -> None:
    # libcurl reads *_proxy for every transfer, so they are set in a child's
    # environment from its start. The child loads the library this process loaded.
    environment = python_env(DIRECTLINE_LIBRARY=directline._native.lib._name,
                             **{name: proxy.url for name in PROXY_VARIABLES})
    for name in ("no_proxy", "NO_PROXY"):
        environment.pop(name, None)  # it could exempt 127.0.0.1 and hide a regression
    child = subprocess.run([sys.executable, "-c", ENVIRONMENT_CHILD, emulator.url, SECRET, protocol,
                            str(streamed)], env=environment, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == [text for _, text, _ in expected_activities(streamed)]

    assert [(entry.method, entry.target) for entry in proxy.seen()] == [
        ("GET", emulator.url + "/_emulator/requests")], "only urllib's request may go through the proxy"
    received = emulator.requests()
    assert len(received) == 6
    assert [entry["headers"].get("user-agent") for entry in received] == [DEFAULT_AGENT] * 6


NO_PROXY_CHILD = r"""
import sys
import directline

endpoint, secret, protocol, proxy = sys.argv[1:5]
with directline.Client(endpoint, secret=secret, protocol=protocol, proxy=proxy, retry={"max_attempts": 1}) as client:
    with client.start_conversation() as conversation:
        conversation.send_text("user1", "through the proxy")
"""


def test_no_proxy_in_the_environment_does_not_bypass_the_configured_proxy(
        emulator: Any, protocol: str, proxy: RecordingProxy) -> None:
    # docs/json.md: "environment variables (`*_proxy`, `no_proxy`) are never read";
    # docs/security.md: an environment variable cannot "route around the configured one".
    environment = python_env(DIRECTLINE_LIBRARY=directline._native.lib._name,
                             no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    child = subprocess.run([sys.executable, "-c", NO_PROXY_CHILD, emulator.url, SECRET, protocol, proxy.url],
                           env=environment, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert [(entry.method, entry.target) for entry in proxy.seen()] == [
        (entry["method"], absolute(emulator.url, entry)) for entry in emulator.requests()]
    assert len(proxy.seen()) == 2


# ---- with "proxy": https through CONNECT ----------------------------------------------------

@AGENTS
def test_https_goes_through_a_connect_tunnel_that_carries_the_user_agent(
        tls_emulator: Any, certificates: Path, protocol: str, proxy: RecordingProxy, streamed: Path,
        agent: Optional[str]) -> None:
    result = exchange(tls_emulator.url, protocol, streamed,
                      **with_agent(agent, proxy=proxy.url, caFile=str(certificates / "ca.pem")))
    assert result["activities"] == expected_activities(streamed)

    expected = agent or DEFAULT_AGENT
    seen = proxy.seen()
    assert seen, "nothing went through the proxy"
    authority = urlsplit(tls_emulator.url).netloc
    for entry in seen:
        assert (entry.method, entry.target) == ("CONNECT", authority)
        assert entry.values("User-Agent") == [expected]
        # The credential goes inside the tunnel only, never to the proxy.
        assert entry.values("Authorization") == []
        assert SECRET not in repr(entry.headers)
    received = tls_emulator.emulator.log.as_json()
    assert len(received) == 6
    assert [entry["headers"].get("user-agent") for entry in received] == [expected] * 6
    assert streamed_upload_arrived_whole(received, streamed)


def test_the_stream_goes_through_a_connect_tunnel_too(tls_emulator: Any, certificates: Path,
                                                      proxy: RecordingProxy) -> None:
    config = {"endpoint": tls_emulator.url, "secret": SECRET, "protocol": "3.0", "proxy": proxy.url,
              "caFile": str(certificates / "ca.pem")}
    with directline.Client.from_config(config) as client, client.start_conversation() as conversation:
        stream_url = urlsplit(str(conversation.start_result["streamUrl"]))
        assert stream_url.scheme == "wss"
        got = streamed_exchange(conversation, tls_emulator, USER, "tunnelled")
        assert [item["type"] for item in got] == ["typing", "message"]
    tunnels = [entry.target for entry in proxy.seen() if entry.method == "CONNECT"]
    assert stream_url.netloc in tunnels, "the stream's upgrade went through the proxy"
    assert all(entry.values("Authorization") == [] for entry in proxy.seen())


# ---- a proxy that refuses connections -------------------------------------------------------

def every_call(client: Any, conversation: Any, protocol: str,
               streamed: Optional[Path] = None) -> dict[str, Callable[[], Any]]:
    """One call of each kind that goes to the service, by name (with `streamed`, a
    streamed upload too)."""
    calls: dict[str, Callable[[], Any]] = {
        "start": client.start_conversation,
        "send_text": lambda: conversation.send_text(USER, "hi"),
        "send_activity": lambda: conversation.send_activity(text_activity(protocol, "hi")),
        "upload_bytes": lambda: conversation.upload_bytes(USER, SMALL, content_type="text/plain"),
    }
    if streamed is not None:
        calls["upload_file"] = lambda: conversation.upload_file(USER, streamed,
                                                                content_type="application/octet-stream")
    calls["get_activities"] = conversation.get_activities
    return calls


def assert_each_fails_unsent(calls: dict[str, Callable[[], Any]], attempts: int,
                             message: Optional[str] = None) -> None:
    """Every call is DL_ERR_NETWORK with nothing sent, after `attempts` attempts, its
    message matching `message` when given, and no secret in the error."""
    for name, call in calls.items():
        with pytest.raises(directline.NetworkError) as caught:
            call()
        error = caught.value
        assert (error.status, error.name) == (Status.ERR_NETWORK, "DL_ERR_NETWORK"), name
        assert error.delivery == "not_sent", name
        assert error.http_status is None, name
        assert error.attempts == attempts, name
        if message is not None:
            assert re.search(message, error.message), (name, error.message)
        assert SECRET not in str(error), name
        assert SECRET not in json.dumps(error.detail), name


def test_a_proxy_that_refuses_connections_is_a_network_error_and_nothing_is_sent(
        emulator: Any, protocol: str) -> None:
    with socket.socket() as closed:
        # Bound but never listening: connections to it are refused, and no
        # other process can take the port while the test runs.
        closed.bind(("127.0.0.1", 0))
        refusing = f"http://127.0.0.1:{closed.getsockname()[1]}"
        # Two attempts without delay: a refused connection provably sent nothing, so it is retried.
        with directline.Client(emulator.url, secret=SECRET, protocol=protocol, proxy=refusing,
                               retry={"max_attempts": 2, "base_delay_ms": 0}) as client:
            conversation = client.open_conversation("opened-without-a-request")
            assert_each_fails_unsent(every_call(client, conversation, protocol), attempts=2)
            conversation.close()
    assert emulator.requests() == [], "nothing may reach the service"


# ---- a proxy that refuses the tunnel --------------------------------------------------------

TUNNEL_RETRY = {"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 5}


# 403 and 407 are the proxy's final word; a 502 may pass, so it is retried.
@pytest.mark.parametrize("code", [403, 407, 502])
def test_a_proxy_that_refuses_the_tunnel_is_a_network_error_and_nothing_is_sent(
        tls_emulator: Any, certificates: Path, protocol: str, proxy: RecordingProxy, streamed: Path,
        code: int) -> None:
    proxy.refuse_connect = code
    attempts = TUNNEL_RETRY["maxAttempts"] if code >= 500 else 1
    config = {"endpoint": tls_emulator.url, "secret": SECRET, "protocol": protocol, "timeoutMs": 10_000,
              "retry": TUNNEL_RETRY, "proxy": proxy.url, "caFile": str(certificates / "ca.pem")}
    with directline.Client.from_config(config) as client:
        conversation = client.open_conversation("opened-without-a-request")
        calls = every_call(client, conversation, protocol, streamed)
        assert_each_fails_unsent(calls, attempts,
                                 rf"the proxy refused to open a tunnel to the service: HTTP {code}\b")
        conversation.close()

    # Each attempt is one CONNECT on a connection of its own, and no more.
    authority = urlsplit(tls_emulator.url).netloc
    assert [(entry.method, entry.target) for entry in proxy.seen()] == [("CONNECT", authority)] * (
        len(calls) * attempts)
    assert len({entry.connection for entry in proxy.seen()}) == len(calls) * attempts
    assert tls_emulator.emulator.log.as_json() == [], "nothing may reach the service"


# ---- which proxies a plain http:// endpoint may use -----------------------------------------

# Creating a client sends nothing, so nothing listens at these.
PLAIN_ENDPOINT = "http://127.0.0.1:9"
TLS_ENDPOINT = "https://127.0.0.1:9"
# What goes to these stays on this machine or inside TLS.
PRIVATE_PROXIES = ["http://127.0.0.1:3128", "localhost:3128", "http://[::1]:3128", "socks5://127.0.0.1:1080",
                   "https://proxy.example:443"]
# These would see the bearer credential of a plain http:// request in clear text.
REMOTE_PROXIES = ["http://10.1.2.3:3128", "proxy.example:8080", "socks5://[2001:db8::1]:1080",
                  "http://user:pw@10.0.0.1:3128", "HTTP://Proxy.Example:1",
                  # libcurl reads each of these as the remote host, whatever the text after it says
                  "http://proxy.example:3128#@127.0.0.1:3128", "http://proxy.example:3128/@127.0.0.1",
                  "http://proxy.example:3128?@127.0.0.1:3128", "proxy.example:3128#@localhost"]


def client_config(endpoint: str, proxy: str, **config: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "secret": SECRET, "proxy": proxy, **config}


@pytest.mark.parametrize("proxy_url", PRIVATE_PROXIES)
def test_a_plain_http_endpoint_may_use_a_loopback_or_https_proxy(proxy_url: str) -> None:
    with directline.Client.from_config(client_config(PLAIN_ENDPOINT, proxy_url)):
        pass


@pytest.mark.parametrize("proxy_url", REMOTE_PROXIES)
def test_a_plain_http_endpoint_refuses_a_proxy_on_another_machine_without_tls(proxy_url: str) -> None:
    with pytest.raises(directline.InvalidArgumentError) as caught:
        directline.Client.from_config(client_config(PLAIN_ENDPOINT, proxy_url))
    error = caught.value
    assert (error.status, error.name) == (Status.ERR_INVALID_ARGUMENT, "DL_ERR_INVALID_ARGUMENT")
    assert error.delivery == "not_sent"
    assert "allowInsecureHttp" in error.message
    written = json.dumps(error.detail)
    assert SECRET not in written
    assert "user:pw" not in written, "nor the proxy's own credential"


@pytest.mark.parametrize("proxy_url", REMOTE_PROXIES)
def test_allow_insecure_http_lets_a_plain_http_endpoint_use_a_remote_proxy(proxy_url: str) -> None:
    with directline.Client.from_config(client_config(PLAIN_ENDPOINT, proxy_url, allowInsecureHttp=True)):
        pass


@pytest.mark.parametrize("proxy_url", ["http://", "http://:3128", "://x", "http://[::1"])
def test_a_proxy_libcurl_cannot_read_is_refused(proxy_url: str) -> None:
    with pytest.raises(directline.InvalidArgumentError, match="config.proxy"):
        directline.Client.from_config(client_config(TLS_ENDPOINT, proxy_url))


@pytest.mark.parametrize("proxy_url", PRIVATE_PROXIES + REMOTE_PROXIES)
def test_an_https_endpoint_may_use_any_proxy(proxy_url: str) -> None:
    with directline.Client.from_config(client_config(TLS_ENDPOINT, proxy_url)):
        pass
