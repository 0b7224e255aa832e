"""The users of bench/locust_bench.py: each says "hello" every BENCH_PACING seconds and waits for the reply.

Each user starts a task every BENCH_PACING seconds whatever the task took
(from a random phase of its own), so N users that keep their schedule make
N / BENCH_PACING sends a second. Every request event is kept with its wall-clock start, and written
to BENCH_SAMPLES as JSON when Locust quits, with the moment the last user
was spawned: bench/locust_bench.py computes the percentiles over a window of its
own from the raw times, finer than Locust's rounded ones.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import events, task

from directline.locust import DirectLineUser

_samples: list[tuple[str, float, float, bool]] = []
_marks: dict[str, float] = {}


def _record(name: str, response_time: float, exception: BaseException | None = None,
            start_time: float | None = None, **_: Any) -> None:
    _samples.append((name, start_time if start_time is not None else time.time(), response_time, exception is None))


def _spawned(**_: Any) -> None:
    _marks.setdefault("spawned", time.time())


def _dump(**_: Any) -> None:
    with open(os.environ["BENCH_SAMPLES"], "w") as out:
        json.dump({"marks": _marks, "samples": _samples}, out)


events.request.add_listener(_record)  # type: ignore[no-untyped-call]
events.spawning_complete.add_listener(_spawned)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_dump)  # type: ignore[no-untyped-call]


PACING = float(os.environ.get("BENCH_PACING", "2"))


class BenchUser(DirectLineUser):
    """Says "hello" every PACING seconds, from a random phase of its own."""

    def on_start(self) -> None:
        super().on_start()
        # Locust spawns users in batches, and its constant_pacing counts from
        # each user's creation: users would send in step with their batch
        # (100 sends at one instant every PACING seconds), which no real
        # audience does. Each user keeps its own schedule instead.
        self.due = time.monotonic() + random.uniform(0, PACING)
        gevent.sleep(max(0.0, self.due - time.monotonic()))

    def wait_time(self) -> float:
        self.due += PACING
        return max(0.0, self.due - time.monotonic())

    @task
    def ask(self) -> None:
        self.say("hello")
