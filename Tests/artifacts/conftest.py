"""Fixtures the artifact tests share: the emulator, in this process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from emulator.server import start_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """An emulator in a thread of this process, for the module, with the C tests' secret."""
    handle = start_in_thread(secret="emulator-secret")
    yield handle
    handle.stop()
