"""Fixtures: the binding on sys.path, a local Direct Line emulator and a recording proxy.

The emulator runs as a subprocess (`python3 -m emulator`) once per test
module and is reset before every test that uses it, so each test starts
with no conversations, no fault rules and an empty request log.
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

import pytest

from recording_proxy import RecordingProxy
from support import BINDINGS, PROTOCOLS, SECRET, Emulator, emulator_running

sys.path.insert(0, str(BINDINGS))


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Emulator]:
    with emulator_running() as url:
        yield Emulator(url)


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
