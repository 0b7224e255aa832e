"""Fixtures: the binding on sys.path, a local Direct Line emulator and a recording proxy.

The emulator runs as a subprocess (`python3 -m emulator`) once per test
module and is reset before every test that uses it, so each test starts
with no conversations, no fault rules and an empty request log.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
from typing import Any, Iterator

import pytest

from recording_proxy import RecordingProxy
from support import BINDINGS, PROTOCOLS, REPO_ROOT, SECRET, Emulator

BANNER = "directline-emulator listening on "

sys.path.insert(0, str(BINDINGS))


def _read_banner(process: subprocess.Popen, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise RuntimeError(f"the emulator printed nothing within {timeout} s")
    line = process.stdout.readline().strip()
    if not line.startswith(BANNER):
        raise RuntimeError(f"unexpected first line from the emulator: {line!r}")
    return line[len(BANNER):]


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Emulator]:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--secret", SECRET, "--quiet"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield Emulator(_read_banner(process, timeout=15))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    """The module's emulator, reset to a clean state for this test."""
    emulator_process.reset()
    return emulator_process


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(emulator: Emulator, protocol: str) -> Iterator[Any]:
    """A client of the emulator speaking `protocol`, with no retries."""
    import directline

    with directline.Client(emulator.url, secret=SECRET, protocol=protocol,
                           timeout_ms=10_000, retry={"max_attempts": 1}) as made:
        yield made


@pytest.fixture
def conversation(client: Any) -> Iterator[Any]:
    with client.start_conversation() as started:
        yield started


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    """A recording proxy for this test; fails the test if it met anything it could not handle."""
    made = RecordingProxy()
    try:
        yield made
    finally:
        made.close()
    assert made.failures == [], "the test proxy could not handle what it received"
