"""The base of ``Client`` and ``Conversation``: owning one C handle.

A context manager with an idempotent ``close()``; ``__del__`` frees a handle
that was never closed, as a safety net only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import _native
from .errors import Status, error_from_status

if TYPE_CHECKING:
    from typing import Self  # only for annotations: Python 3.11 added it


# Handles whose free the library refused because it was asked from inside
# one of its own callbacks (the garbage collector finalising an object
# there): they are freed as soon as a call outside callbacks returns.
_deferred_frees: list[tuple[Callable[[int], int], int]] = []
_deferred_lock = threading.Lock()


def _free_deferred() -> None:
    """Frees the handles left by finalisers that ran inside a callback."""
    with _deferred_lock:
        if not _deferred_frees:
            return
        pending = list(_deferred_frees)
        _deferred_frees.clear()
    for free, handle in pending:
        if free(handle) == Status.ERR_REENTRANT:  # still inside a callback on this thread
            with _deferred_lock:
                _deferred_frees.append((free, handle))


class NativeObject:
    """Owns one C handle; frees it exactly once, never while a call is using it.

    Each call borrows the handle under a lock and counts itself in flight.
    ``close()`` marks the object closed at once; the handle is freed by
    whichever of ``close()`` or the last in-flight call comes later, so
    another thread's call can never receive a freed handle.

    The one exception is a call borrowed as ``interruptible`` (a wait that
    freeing the handle is meant to end, ``dl_conversation_wait``): it does
    not hold the handle back. The handle is freed as soon as only such calls
    are in flight, and they end with CancelledError (the library answers
    DL_ERR_CANCELLED, or DL_ERR_INVALID_HANDLE to a call that had not reached
    it yet: a freed handle's value is never reissued).
    """

    _kind = "object"

    def __init__(self, handle: int, free: Callable[[int], int]) -> None:
        self._lock = threading.Lock()
        self._handle: int | None = handle
        self._free = free
        self._closed = False
        # Every call in flight holds a ticket; tickets only ever increase.
        self._next_ticket = 0
        self._in_flight: set[int] = set()
        # The tickets of interruptible calls, which do not delay the free.
        self._interruptible: set[int] = set()
        # (last ticket that may use it, object): what C may still use.
        self._keepalive: list[tuple[int, object]] = []

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    @contextmanager
    def _borrow(self, *, interruptible: bool = False) -> Iterator[int]:
        with self._lock:
            if self._closed or self._handle is None:
                raise ValueError(f"operation on a closed {self._kind}")
            ticket = self._next_ticket
            self._next_ticket += 1
            self._in_flight.add(ticket)
            if interruptible:
                self._interruptible.add(ticket)
            handle = self._handle
        try:
            yield handle
        finally:
            with self._lock:
                self._in_flight.discard(ticket)
                self._interruptible.discard(ticket)
                oldest = min(self._in_flight, default=self._next_ticket)
                self._keepalive = [kept for kept in self._keepalive if kept[0] >= oldest]
                orphan = self._take_if_idle()
            self._release(orphan)
            _free_deferred()

    def _keep_while_busy(self, thing: object) -> None:
        """Keeps ``thing`` referenced until every call now in flight has returned.

        For what C may still use after this call is done with it: a progress
        callback that another thread's call picked up while it was set.
        """
        with self._lock:
            self._keepalive.append((self._next_ticket - 1, thing))

    def _take_if_idle(self) -> int | None:
        # Called with the lock held.
        if self._closed and self._in_flight <= self._interruptible and self._handle is not None:
            handle, self._handle = self._handle, None
            return handle
        return None

    def _release(self, handle: int | None) -> None:
        if handle is None:
            return
        status = self._free(handle)
        if status == Status.ERR_REENTRANT:
            # Freed from inside a library callback (a finaliser run by the
            # garbage collector there): free it once the call has returned.
            with _deferred_lock:
                _deferred_frees.append((self._free, handle))
            return
        if status != Status.OK:
            raise error_from_status(
                status, None, f"freeing a {self._kind} handle failed ({_native.status_name(status)})")

    def close(self) -> None:
        """Releases the C handle. Idempotent; later use raises ValueError.

        If another thread is inside a call on this object, that call
        finishes normally and the handle is released when it returns
        (``Conversation.wait`` and ``Conversation.replies`` excepted: see
        ``Conversation.close``).
        """
        with self._lock:
            self._closed = True
            handle = self._take_if_idle()
        self._release(handle)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A safety net only: a handle dropped without close() is freed here.
        # At interpreter shutdown module globals may already be gone.
        try:
            if getattr(self, "_handle", None) is not None:
                self.close()
        except Exception:  # noqa: BLE001, S110 - nothing may escape __del__
            pass
