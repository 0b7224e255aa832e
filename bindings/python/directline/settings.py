"""Process-wide logging and per-thread timeouts.

``set_log_handler`` and ``log_to_logging`` install the C library's log
callback (``dl_set_log_callback``); ``timeouts`` bounds the calls made inside
a ``with`` block on the current thread (``dl_set_thread_timeouts``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Callable, Iterator

from . import _native
from ._native import _milliseconds, lib
from .errors import InvalidArgumentError


class LogLevel(enum.IntEnum):
    """``dl_log_level``: how much the library reports; each includes the ones above."""

    OFF = 0
    """Logging off (the default)."""
    ERROR = 1
    """Failed transfers, automatic refreshes that stopped."""
    WARN = 2
    """Retries and their delays; refreshes that will be tried again."""
    INFO = 3
    """One line per HTTP request: method, URL, status, time, sizes, attempt."""
    DEBUG = 4
    """libcurl's trace of each transfer: connections and headers (never bodies)."""


LogHandler = Callable[[LogLevel, str], None]
"""Called with a level and one line of text, from any thread."""

_lock = threading.Lock()
_installed: object | None = None  # the CFUNCTYPE object C holds; kept alive here


def set_log_handler(handler: LogHandler | None, level: LogLevel = LogLevel.INFO) -> None:
    """Sends the library's log lines at ``level`` or more severe to ``handler``.

    ``handler(level, message)`` may be called from any thread, several at
    once, including the library's token refresh thread. Credentials never
    reach it: ``Authorization`` values and ``t=`` query values arrive as
    ``[redacted]``. It must not call the library (such calls fail with
    ``ReentrantError``); an exception it raises is swallowed, since it cannot
    cross into C. ``None`` (or ``LogLevel.OFF``) turns logging off. When this
    returns, the previous handler is no longer running or called.
    """
    global _installed
    if handler is not None and not callable(handler):
        raise InvalidArgumentError.local(f"handler must be callable, not {type(handler).__name__}")
    try:
        level = LogLevel(level)
    except ValueError:
        raise InvalidArgumentError.local(f"level must be a LogLevel, not {level!r}") from None

    function: object
    if handler is None or level == LogLevel.OFF:
        function = _native.LOG_FN()
    else:
        def relay(_userdata: int | None, severity: int, message: bytes | None) -> None:
            try:
                handler(LogLevel(severity), (message or b"").decode("utf-8", "replace"))
            except BaseException:  # noqa: BLE001, S110 - nothing may propagate into C
                pass

        function = _native.LOG_FN(relay)
    with _lock:
        _native.call(lib.dl_set_log_callback, function, None, int(level))
        _installed = function


def log_to_logging(logger: logging.Logger | None = None, level: LogLevel = LogLevel.INFO) -> None:
    """Forwards the library's log lines to a ``logging.Logger``.

    The default logger is ``logging.getLogger("directline")``; DEBUG, INFO,
    WARN and ERROR map to the ``logging`` levels of the same names.
    """
    target = logger if logger is not None else logging.getLogger("directline")
    levels = {LogLevel.ERROR: logging.ERROR, LogLevel.WARN: logging.WARNING,
              LogLevel.INFO: logging.INFO, LogLevel.DEBUG: logging.DEBUG}

    def handler(severity: LogLevel, message: str) -> None:
        target.log(levels.get(severity, logging.INFO), "%s", message)

    set_log_handler(handler, level)


_overrides = threading.local()


_TIMEOUT_MS = (1, 86_400_000)
"""The timeouts ``dl_set_thread_timeouts`` accepts, in ms: refused here, before the call."""


def _apply(total: int | None, connect: int | None) -> None:
    options = {key: value for key, value in (("timeoutMs", total), ("connectTimeoutMs", connect))
               if value is not None}
    _native.call(lib.dl_set_thread_timeouts, _native.encode_json(options, "timeouts") if options else None)


@contextlib.contextmanager
def timeouts(total: float | None = None, connect: float | None = None) -> Iterator[None]:
    """Bounds every HTTP request this thread makes inside the block.

    ``total`` and ``connect`` are in seconds and override the client's
    ``timeoutMs`` and ``connectTimeoutMs`` for each request (and each
    automatic retry) on any client; ``None`` keeps the client's value, or an
    enclosing block's. Other threads are not affected. On leaving the block
    the previous limits return::

        with directline.timeouts(total=2.0):
            conversation.send_text("user1", "quick question")
    """
    total_ms = None if total is None else _milliseconds(total, "total", within_ms=_TIMEOUT_MS)
    connect_ms = None if connect is None else _milliseconds(connect, "connect", within_ms=_TIMEOUT_MS)
    stack: list[tuple[int | None, int | None]] = getattr(_overrides, "stack", [])
    _overrides.stack = stack
    outer = stack[-1] if stack else (None, None)
    current = (total_ms if total_ms is not None else outer[0], connect_ms if connect_ms is not None else outer[1])
    _apply(*current)
    stack.append(current)
    try:
        yield
    finally:
        stack.pop()
        _apply(*(stack[-1] if stack else (None, None)))
