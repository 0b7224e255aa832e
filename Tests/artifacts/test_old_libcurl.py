"""The library with a libcurl that cannot stream: Debian 12's own 7.88.

The build uses libcurl 8.14 (bookworm-backports), but the shared object
must still load and work where only an older libcurl is installed: it looks
the WebSocket API up at run time and polls without it. scripts/common.sh
unpacks Debian 12's libcurl4 7.88 under .build/compat; these tests run the
library with it first on the library path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

OLD_LIBCURL = ROOT / ".build" / "compat" / "libcurl-7.88"
LIBRARY = ROOT / ".build" / "release" / "libdirectline.so"


def on_debian_12() -> bool:
    try:
        return "VERSION_CODENAME=bookworm" in Path("/etc/os-release").read_text()
    except OSError:
        return False


@pytest.fixture(scope="module")
def old_env() -> dict[str, str]:
    if not (OLD_LIBCURL / "libcurl.so.4").exists():
        if on_debian_12():
            pytest.fail("Debian 12's libcurl 7.88 is missing: run scripts/test.sh (scripts/common.sh fetches it)")
        pytest.skip("not Debian 12: no libcurl 7.88 package to test against")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(OLD_LIBCURL), env.get("LD_LIBRARY_PATH")]))
    env["DIRECTLINE_LIBRARY"] = str(LIBRARY)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bindings" / "python"), env.get("PYTHONPATH")]))
    return env


CONVERSATION = """
import ctypes, sys
import directline
curl = ctypes.CDLL("libcurl.so.4")
curl.curl_version.restype = ctypes.c_char_p
print(curl.curl_version().decode().split()[0])
with directline.Client(sys.argv[1], secret="emulator-secret") as client:
    with client.start_conversation() as conversation:
        conversation.send_text("user1", "hello")
        print([reply.get("text") for reply in conversation.wait(timeout=10)])
"""


def test_the_library_loads_and_polls_with_libcurl_7_88(old_env, emulator):
    run = subprocess.run([sys.executable, "-c", CONVERSATION, emulator.url], env=old_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    version, replies = run.stdout.splitlines()
    assert version.startswith("libcurl/7.88"), version
    assert replies == "['echo: hello']"


LISTENING = """
import sys, time
import directline
with directline.Client(sys.argv[1], secret="emulator-secret", protocol="3.0") as client:
    with client.start_conversation() as conversation:
        try:
            conversation.listen(mode="websocket")
        except directline.UnsupportedError as error:
            print(int(error.status), error.message)
        print(conversation.listen(poll_interval=0.1)["mode"])
        conversation.send_text("user1", "polled")
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = [item.get("text") for item in conversation.next(1)["activities"]]
        print(got)
"""


def test_listening_polls_and_websocket_is_unsupported_with_libcurl_7_88(old_env, emulator):
    run = subprocess.run([sys.executable, "-c", LISTENING, emulator.url], env=old_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    refusal, mode, replies = run.stdout.splitlines()
    assert refusal.startswith("22 ") and "(7.88.1)" in refusal and "8.11" in refusal, refusal
    assert mode == "polling", "auto falls back to polling"
    assert replies == "['echo: polled']"


def test_the_conversation_and_listening_suites_pass_with_libcurl_7_88(old_env):
    run = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "Tests" / "python" / "test_conversation.py"),
                          str(ROOT / "Tests" / "python" / "test_listen.py"),
                          "-q", "-p", "no:cacheprovider", "-m", "not slow"],
                         env=old_env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
