"""Bot replies due later (`replyDelaySeconds`): one thread, one heap.

A load test keeps thousands of replies pending at once, so there is no
thread or Timer per reply: every pending reply is an entry in a heap ordered
by its due time, and one daemon thread (started at the first `schedule`)
sleeps until the earliest is due, runs it, and goes on. A job runs on that
thread, so it must be quick and must not block (the bot's jobs store one
activity through the store, whose listener hands it to the streams).
"""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
import time
import traceback
from typing import Callable


class ReplyScheduler:
    def __init__(self, name: str = "directline-emulator-replies") -> None:
        self._name = name
        self._wake = threading.Condition(threading.Lock())
        # (due on the monotonic clock, tie-break sequence, job)
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def schedule(self, delay: float, job: Callable[[], None]) -> bool:
        """Run `job` on the scheduler's thread `delay` seconds from now; False
        (and the job dropped) once the scheduler has stopped."""
        due = time.monotonic() + max(0.0, delay)
        with self._wake:
            if self._stopped:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (due, next(self._sequence), job))
            if self._heap[0][2] is job:
                self._wake.notify()  # due before what the thread sleeps for
            return True

    def running(self) -> bool:
        """Whether the thread is alive (it starts with the first `schedule`)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def pending(self) -> int:
        with self._wake:
            return len(self._heap)

    def clear(self) -> None:
        """Forget every pending job (a reset)."""
        with self._wake:
            self._heap.clear()

    def stop(self, timeout: float = 5) -> None:
        """Drop what is pending and end the thread; later `schedule`s are refused."""
        with self._wake:
            self._stopped = True
            self._heap.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        job = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            try:
                job()
            except Exception:  # an emulator bug: report it, keep serving the others
                traceback.print_exc(file=sys.stderr)
