"""Status codes and the exceptions raised for them.

Every failing call raises a ``DirectLineError`` subclass chosen by the C
status code. The exception carries the library's error JSON, parsed:
``detail`` is its inner ``"error"`` object, and the common fields are
attributes. Neither the message nor ``detail`` ever contains a secret or
token: the library never puts one there.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar


class Status(enum.IntEnum):
    """The C ``dl_status`` codes; a member's name is its C name without ``DL_``.

    Codes are only ever appended, never renumbered.
    """

    OK = 0
    ERR_INVALID_ARGUMENT = 1
    ERR_INVALID_HANDLE = 2
    ERR_TOO_LARGE = 3
    ERR_IO = 4
    ERR_NETWORK = 5
    ERR_TIMEOUT = 6
    ERR_TLS = 7
    ERR_BAD_REQUEST = 8
    ERR_UNAUTHORIZED = 9
    ERR_FORBIDDEN = 10
    ERR_TOKEN_EXPIRED = 11
    ERR_NOT_FOUND = 12
    ERR_CONFLICT = 13
    ERR_THROTTLED = 14
    ERR_BOT = 15
    ERR_SERVICE = 16
    ERR_HTTP = 17
    ERR_PROTOCOL = 18
    ERR_CANCELLED = 19
    ERR_REENTRANT = 20
    ERR_INTERNAL = 21
    ERR_UNSUPPORTED = 22

    @property
    def c_name(self) -> str:
        """The name in the C header, e.g. ``"DL_ERR_BOT"``."""
        return "DL_" + self.name


class DirectLineError(Exception):
    """Base class of every error this package raises for a failed call.

    Attributes:
        status: the C status code (an ``int``; a ``Status`` when known).
        name: the status's C name, e.g. ``"DL_ERR_BOT"``.
        message: the library's human-readable message (also ``str(error)``).
        http_status: the service's HTTP status, or None if none was received.
        service_code: the service's error code (e.g. ``"BotError"``), or None.
        service_message: the service's error message, or None.
        retry_after_ms: the wait the service asked for, or None.
        attempts: how many times the request was sent, or None.
        delivery: for sends, ``"not_sent"`` (provably never reached the
            service) or ``"unknown"`` (it may have: do not blindly resend).
        detail: the whole parsed error object, as the C library wrote it.
    """

    default_status: ClassVar[int] = -1

    def __init__(self, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})
        status = self.detail.get("status", self.default_status)
        self.status: int = _as_status(status if isinstance(status, int) else self.default_status)
        self.name: str = str(self.detail.get("name") or _c_name(self.status))
        self.http_status: int | None = self.detail.get("httpStatus")
        self.service_code: str | None = self.detail.get("serviceCode")
        self.service_message: str | None = self.detail.get("serviceMessage")
        self.retry_after_ms: int | None = self.detail.get("retryAfterMs")
        self.attempts: int | None = self.detail.get("attempts")
        self.delivery: str | None = self.detail.get("delivery")

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.detail))

    @classmethod
    def local(cls, message: str) -> DirectLineError:
        """An error found by this package before calling the library; nothing was sent."""
        return cls(message, {"status": cls.default_status, "name": _c_name(cls.default_status),
                             "message": message, "delivery": "not_sent"})


def _as_status(value: int) -> int:
    try:
        return Status(value)
    except ValueError:
        return value


def _c_name(status: int) -> str:
    return status.c_name if isinstance(status, Status) else "DL_ERR_UNKNOWN"


class InvalidArgumentError(DirectLineError, ValueError):
    """A bad argument: NULL, bad UTF-8 or NUL, bad JSON or JSON shape, unknown option. Nothing was sent."""
    default_status = Status.ERR_INVALID_ARGUMENT


class InvalidHandleError(DirectLineError):
    """The library did not recognise the handle (freed, forged or of the wrong kind)."""
    default_status = Status.ERR_INVALID_HANDLE


class TooLargeError(DirectLineError):
    """Over the activity (262,144 bytes) or upload size limit; refused before sending."""
    default_status = Status.ERR_TOO_LARGE


class FileError(DirectLineError, OSError):
    """A local file could not be read."""
    default_status = Status.ERR_IO


class NetworkError(DirectLineError, ConnectionError):
    """DNS, connect, reset or proxy failure."""
    default_status = Status.ERR_NETWORK


class DirectLineTimeoutError(DirectLineError, TimeoutError):
    """The connect or request timeout expired (also a builtin ``TimeoutError``)."""
    default_status = Status.ERR_TIMEOUT


class TLSError(DirectLineError):
    """TLS handshake or certificate verification failed."""
    default_status = Status.ERR_TLS


class BadRequestError(DirectLineError):
    """HTTP 400: the service found the request malformed."""
    default_status = Status.ERR_BAD_REQUEST


class UnauthorizedError(DirectLineError):
    """HTTP 401: missing or malformed credentials."""
    default_status = Status.ERR_UNAUTHORIZED


class ForbiddenError(DirectLineError):
    """HTTP 403: not allowed."""
    default_status = Status.ERR_FORBIDDEN


class TokenExpiredError(ForbiddenError):
    """HTTP 403 with service code ``TokenExpired``: refresh the token or start anew."""
    default_status = Status.ERR_TOKEN_EXPIRED


class NotFoundError(DirectLineError):
    """HTTP 404: unknown path or conversation."""
    default_status = Status.ERR_NOT_FOUND


class ConflictError(DirectLineError):
    """HTTP 409: the conversation already exists."""
    default_status = Status.ERR_CONFLICT


class ThrottledError(DirectLineError):
    """HTTP 429, still after the retries allowed; see ``retry_after_ms``."""
    default_status = Status.ERR_THROTTLED


class BotError(DirectLineError):
    """The bot failed or timed out (502; 500 on a 1.1 send). Check ``delivery``."""
    default_status = Status.ERR_BOT


class ServiceError(DirectLineError):
    """Any other 5xx from the service."""
    default_status = Status.ERR_SERVICE


class HTTPError(DirectLineError):
    """Any other unexpected HTTP status."""
    default_status = Status.ERR_HTTP


class ProtocolError(DirectLineError):
    """The response is not what the Direct Line protocol says."""
    default_status = Status.ERR_PROTOCOL


class CancelledError(DirectLineError):
    """A progress callback asked to stop, or the conversation was closed (or stopped
    listening) during a ``wait``, ``replies``, ``next`` or ``stream``."""
    default_status = Status.ERR_CANCELLED


class ReentrantError(DirectLineError):
    """Called from inside one of this library's callbacks."""
    default_status = Status.ERR_REENTRANT


class InternalError(DirectLineError):
    """A bug in libdirectline; please report it."""
    default_status = Status.ERR_INTERNAL


class UnsupportedError(DirectLineError):
    """Not possible here: e.g. a WebSocket stream on Direct Line 1.1 or without libcurl support."""
    default_status = Status.ERR_UNSUPPORTED


ERROR_CLASSES: Mapping[int, type[DirectLineError]] = {
    cls.default_status: cls
    for cls in (InvalidArgumentError, InvalidHandleError, TooLargeError, FileError,
                NetworkError, DirectLineTimeoutError, TLSError, BadRequestError,
                UnauthorizedError, ForbiddenError, TokenExpiredError, NotFoundError,
                ConflictError, ThrottledError, BotError, ServiceError, HTTPError,
                ProtocolError, CancelledError, ReentrantError, InternalError, UnsupportedError)
}
"""Status code -> exception class; a status not listed maps to DirectLineError."""


def error_class(status: int) -> type[DirectLineError]:
    """The exception class for a status code (DirectLineError when unknown)."""
    return ERROR_CLASSES.get(status, DirectLineError)


def error_from_status(status: int, document: Any, fallback_message: str) -> DirectLineError:
    """The exception for a failed call, from its status and parsed error JSON."""
    detail = document.get("error") if isinstance(document, dict) else None
    if not isinstance(detail, dict):
        detail = {"status": status, "message": fallback_message}
    detail.setdefault("status", status)
    message = detail.get("message")
    if not isinstance(message, str) or not message:
        message = fallback_message
    return error_class(status)(message, detail)
