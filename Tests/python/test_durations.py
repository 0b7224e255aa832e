"""Durations given in seconds reach the C side as whole milliseconds, through one helper.

Calls (``wait``, ``replies``, ``confirm``), ``timeouts`` and the command's
``--http-timeout`` all convert with ``_native._milliseconds``, so a bad
duration is refused the same way everywhere, before anything is sent.
"""

from __future__ import annotations

import math
import re

import pytest
from directline import InvalidArgumentError, _native, timeouts
from support import BINDINGS

PACKAGE = BINDINGS / "directline"
THREAD_TIMEOUTS_MS = (1, 86_400_000)


@pytest.mark.parametrize(("seconds", "milliseconds"), [
    (0, 0), (0.0, 0), (1, 1000), (1.5, 1500), (0.0004, 0), (0.0006, 1), (86400, 86_400_000),
])
def test_seconds_become_rounded_milliseconds(seconds, milliseconds):
    assert _native._milliseconds(seconds, "timeout") == milliseconds


@pytest.mark.parametrize("seconds", [True, "1", None, b"1", [1]])
def test_what_is_not_a_number_is_refused_by_its_type(seconds):
    expected = f"^timeout must be a number of seconds, not {type(seconds).__name__}$"
    with pytest.raises(InvalidArgumentError, match=expected):
        _native._milliseconds(seconds, "timeout")


@pytest.mark.parametrize("seconds", [-1, -0.0001, math.nan, math.inf, -math.inf])
def test_negative_and_non_finite_durations_are_refused(seconds):
    with pytest.raises(InvalidArgumentError, match="^interval must be a finite, non-negative number of seconds"):
        _native._milliseconds(seconds, "interval")


@pytest.mark.parametrize("seconds", [0, 0.0004, 86400.001, 1e9, -1, math.nan, math.inf])
def test_a_range_refuses_what_lies_outside_it_and_names_it_in_seconds(seconds):
    expected = f"^total must be from 0.001 to 86400 seconds, not {re.escape(repr(seconds))}$"
    with pytest.raises(InvalidArgumentError, match=expected):
        _native._milliseconds(seconds, "total", within_ms=THREAD_TIMEOUTS_MS)


@pytest.mark.parametrize("seconds", [0.001, 0.0006, 1, 86400])
def test_a_range_keeps_what_lies_inside_it(seconds):
    assert _native._milliseconds(seconds, "total", within_ms=THREAD_TIMEOUTS_MS) == round(seconds * 1000)


@pytest.mark.parametrize("argument", ["total", "connect"])
@pytest.mark.parametrize("seconds", [math.nan, math.inf])
def test_timeouts_refuses_non_finite_seconds_as_an_invalid_argument(argument, seconds):
    with pytest.raises(InvalidArgumentError, match=f"^{argument} must be from 0.001 to 86400 seconds"), \
            timeouts(**{argument: seconds}):
        pass


def test_the_package_converts_seconds_to_milliseconds_in_one_place():
    sources = {str(path.relative_to(PACKAGE)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}
    definitions = [name for name, text in sources.items()
                   for _ in re.finditer(r"^def _milliseconds\(", text, re.MULTILINE)]
    assert definitions == ["_native.py"]
    multiplications = [name for name, text in sources.items() for line in text.splitlines()
                       if re.search(r"\*\s*1000\b|\b1000\s*\*", line)]
    # directline.locust hands Locust float milliseconds for its statistics
    # (never a duration for the library), in one place: its _report.
    assert multiplications == ["_native.py", "locust.py"], "seconds turned into milliseconds outside _milliseconds"
    assert re.search(r"def _report\(.*\n(?:.*\n){0,6}.*elapsed \* 1000\.0", sources["locust.py"])
