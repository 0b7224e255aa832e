"""Service errors and the JSON error body every endpoint answers with."""

from __future__ import annotations

DEFAULT_CODES = {
    400: "BadArgument",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestTooLarge",
    415: "BadArgument",
    429: "Throttled",
    500: "ServiceError",
    501: "NotSupported",
    502: "BotError",
    503: "ServiceUnavailable",
    504: "BotTimeout",
}


def default_code(status: int) -> str:
    """The service's error code for a status when none is given."""
    if status in DEFAULT_CODES:
        return DEFAULT_CODES[status]
    if 400 <= status < 500:
        return "BadArgument"
    if status >= 500:
        return "ServiceError"
    return "Unknown"


def size_limit_message(limit: int) -> str:
    """The real service's wording, e.g. "... limit of 262,144 bytes"."""
    return f"request content length exceeded limit of {limit:,} bytes"


class ApiError(Exception):
    """An error answered to the client as `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str | None, message: str,
                 headers: list[tuple[str, str]] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or default_code(status)
        self.message = message
        self.headers = list(headers or [])
        self.close = close


def error_body(status: int, code: str, message: str, legacy: bool) -> dict:
    """The error document; Direct Line 1.1 also carries `statusCode`."""
    error: dict = {"code": code, "message": message}
    if legacy:
        error["statusCode"] = status
    return {"error": error}


def bad_argument(message: str) -> ApiError:
    return ApiError(400, "BadArgument", message)


def missing_property(message: str) -> ApiError:
    return ApiError(400, "MissingProperty", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)
