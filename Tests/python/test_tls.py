"""TLS: certificates made with openssl at test time, served by the emulator.

A self-signed certificate, one from an unknown CA, one for another host and
an expired one must all fail with TLSError by default, with nothing reaching
the service; the CA file and the per-client insecure switch work, and the
switch does not leak to other clients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import directline
from support import REPO_ROOT, SECRET, streamed_exchange

sys.path.insert(0, str(REPO_ROOT))
from emulator.server import start_in_thread  # noqa: E402


def openssl(*arguments: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, and server certificates: good, for another host, expired, self-signed."""
    folder = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=libdirectline test CA", cwd=folder)
    (folder / "local.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (folder / "other.ext").write_text("subjectAltName=DNS:other.example\n")
    for name, extensions in (("good", "local.ext"), ("other", "other.ext")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", extensions, "-out", f"{name}.pem", cwd=folder)
    # `openssl ca` can date a certificate in the past: a minimal CA database.
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    (folder / "ca.cnf").write_text(
        "[ca]\ndefault_ca = test\n"
        "[test]\ndir = .\ndatabase = index.txt\nserial = serial\nnew_certs_dir = .\n"
        "certificate = ca.pem\nprivate_key = ca.key\ndefault_md = sha256\npolicy = anything\n"
        "copy_extensions = none\n"
        "[anything]\ncommonName = supplied\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "expired.key", "-out", "expired.csr",
            "-subj", "/CN=expired", cwd=folder)
    openssl("ca", "-batch", "-config", "ca.cnf", "-in", "expired.csr", "-out", "expired.pem",
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", "local.ext",
            cwd=folder)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out", "self.pem",
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", cwd=folder)
    return folder


@pytest.fixture
def serve(certificates: Path) -> Iterator[Any]:
    """Starts an https emulator with one of the certificates; stops them all afterwards."""
    handles = []

    def start(name: str) -> Any:
        handle = start_in_thread(secret=SECRET, tls_cert=str(certificates / f"{name}.pem"),
                                 tls_key=str(certificates / f"{name}.key"))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


def talk(url: str, **config: Any) -> str:
    """Starts a conversation and gets the echo of one message."""
    with directline.Client.from_config({"endpoint": url, "secret": SECRET, **config}) as client:
        with client.start_conversation() as conversation:
            conversation.send_text("user1", "over tls")
            replies = conversation.wait(timeout=10)
    return str(replies[0]["text"])


def refused(url: str, **config: Any) -> directline.TLSError:
    with pytest.raises(directline.TLSError) as caught:
        talk(url, **config)
    assert SECRET not in str(caught.value)
    assert caught.value.delivery == "not_sent"
    return caught.value


def requests_seen(handle: Any) -> int:
    return len(handle.server.emulator.log.as_json())


@pytest.mark.parametrize("certificate", ["self", "good", "other", "expired"])
def test_every_unverifiable_certificate_is_refused_by_default(serve: Any, certificate: str) -> None:
    # "good" is signed by a CA the system does not trust.
    handle = serve(certificate)
    refused(handle.url)
    assert requests_seen(handle) == 0, "nothing may reach the service over an unverified connection"


def test_a_ca_file_makes_the_right_certificate_trusted(serve: Any, certificates: Path) -> None:
    handle = serve("good")
    assert talk(handle.url, caFile=str(certificates / "ca.pem")) == "echo: over tls"


@pytest.mark.parametrize("certificate", ["other", "expired"])
def test_the_ca_file_does_not_excuse_a_wrong_host_or_an_expired_certificate(
        serve: Any, certificates: Path, certificate: str) -> None:
    handle = serve(certificate)
    refused(handle.url, caFile=str(certificates / "ca.pem"))
    assert requests_seen(handle) == 0


def test_the_insecure_switch_works_for_its_client_only(serve: Any) -> None:
    handle = serve("self")
    assert talk(handle.url, insecureSkipTlsVerify=True) == "echo: over tls"
    # Another client in the same process still verifies.
    refused(handle.url)


def test_a_missing_ca_file_is_a_tls_error_not_a_crash(serve: Any, tmp_path: Path) -> None:
    handle = serve("good")
    refused(handle.url, caFile=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed_and_credentials_never_leave_for_another_origin(status: int) -> None:
    with start_in_thread(secret=SECRET) as service, start_in_thread(secret="elsewhere") as elsewhere:
        with directline.Client(service.url, secret=SECRET) as client:
            conversation = client.start_conversation()
            with conversation:
                service.server.emulator.faults.add({
                    "method": "POST", "path": "/activities$", "count": 1, "action": "status",
                    "status": status, "location": f"{elsewhere.url}/v3/directline/conversations/x/activities"})
                with pytest.raises(directline.HTTPError) as caught:
                    conversation.send_text("user1", "hi")
        assert caught.value.http_status == status
        assert SECRET not in str(caught.value)
        assert elsewhere.server.emulator.log.as_json() == [], "the redirect was followed"


def test_the_stream_goes_over_wss_with_the_clients_ca_file(serve: Any, certificates: Path) -> None:
    """The emulator serves TLS on its stream too (a wss:// streamUrl); the
    client's caFile applies to the upgrade as to every request."""
    handle = serve("good")
    config = {"endpoint": handle.url, "secret": SECRET, "protocol": "3.0", "caFile": str(certificates / "ca.pem")}
    with directline.Client.from_config(config) as client, client.start_conversation() as conversation:
        assert str(conversation.start_result["streamUrl"]).startswith("wss://")
        got = streamed_exchange(conversation, handle, "user1", "over wss")
        # Typing comes only over the stream: it was the stream that spoke.
        assert [item["type"] for item in got] == ["typing", "message"]
        assert conversation.next(0)["state"] == "online"
