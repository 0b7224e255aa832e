"""Memory is bounded against a hostile service (the hostile audit's memory
cases): a huge page costs a small multiple of its size, and what one wait
holds is capped, with the rest left for the next call and nothing lost.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

import directline
from support import python_env

# 4,000,000 one-member objects in one activity: the shape that cost a tree
# fifteen times the page's size (60 MiB took 892 MiB).
MEMBERS = 4_000_000


def huge_page() -> bytes:
    members = ",".join(['{"a":1}'] * MEMBERS)
    return ('{"activities":[{"type":"message","id":"c|0000000","from":{"id":"bot"},'
            f'"channelData":[{members}]}}],"watermark":"1"}}').encode()


@pytest.fixture(scope="module")
def page_server() -> Iterator[tuple[str, int]]:
    """A service that answers every GET with one huge ActivitySet."""
    body = huge_page()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3/directline", len(body)
    finally:
        server.shutdown()
        server.server_close()


# Runs in its own process, so that its peak RSS is the library's doing.
READER = """
import ctypes, json, resource, sys
from directline import _native
path = next(str(candidate) for candidate in _native.library_candidates() if candidate.exists())
lib = ctypes.CDLL(path)
config = json.dumps({"endpoint": sys.argv[1], "secret": "s" * 40}).encode()
client, conversation, out = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_char_p()
assert lib.dl_client_new(config, ctypes.byref(client), None) == 0
state = json.dumps({"conversationId": "c", "token": "t" * 40}).encode()
assert lib.dl_conversation_open(client, state, ctypes.byref(conversation), None) == 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
status = lib.dl_get_activities(conversation, ctypes.byref(out))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": status, "length": len(out.value or b""), "growth": (after - before) * 1024}))
"""


def test_a_huge_page_costs_a_small_multiple_of_its_size(page_server):
    endpoint, size = page_server
    chosen = os.environ.get("DIRECTLINE_LIBRARY")
    env = python_env(**({"DIRECTLINE_LIBRARY": chosen} if chosen else {}))
    run = subprocess.run([sys.executable, "-c", READER, endpoint], capture_output=True, text=True, timeout=120,
                         env=env)
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    assert measured["status"] == 0
    assert measured["length"] == size  # the page as the service wrote it
    # The answer's bytes, the caller's copy, and slack for growth: a tree
    # took fifteen times the page.
    grown = measured["growth"]
    assert grown < 4 * size, f"reading a {size >> 20} MiB page grew the peak RSS by {grown >> 20} MiB"


def test_a_wait_stops_at_its_byte_bound_and_the_next_returns_the_rest(client, emulator, protocol):
    emulator.configure(pageSize=1)
    with client.start_conversation() as conversation:
        for number in range(6):
            conversation.send_text("user1", f"message {number}")
        seen: list[str] = []
        while True:
            # Each page holds one activity, and one page passes the bound.
            batch = conversation.wait(timeout=1.0, after_send=0, include_own=True, max_bytes=1)
            if not batch:
                break
            assert len(batch) == 1
            seen.extend(activity.get("text", "") for activity in batch)
    expected = [f"message {number}" for number in range(6)] + [f"echo: message {number}" for number in range(6)]
    assert Counter(seen) == Counter(expected)


def test_the_byte_bound_is_checked(conversation):
    for bad in (0, -1, 64 * 1024 * 1024 + 1):
        with pytest.raises(directline.InvalidArgumentError):
            conversation.wait(timeout=0, max_bytes=bad)
    with pytest.raises(directline.InvalidArgumentError):
        conversation.wait(timeout=0, max_bytes=True)
