"""Fixtures the emulator's test files share: one emulator per module, in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from emulator.server import start_in_thread  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_stream import Api  # noqa: E402


@pytest.fixture(scope="module")
def handle():
    """An emulator serving on free ports in a thread of this process, for the module's tests."""
    running = start_in_thread()
    yield running
    running.stop()


@pytest.fixture
def api(handle) -> Api:
    """The module's emulator through its HTTP API, reset for this test."""
    made = Api(handle)
    made.control("POST", "reset")
    return made
