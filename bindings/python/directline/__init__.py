"""libdirectline for Python: a Direct Line (Microsoft Bot Framework) client.

A thin, typed ctypes binding over the C library ``libdirectline.so``::

    import directline

    with directline.Client("https://directline.botframework.com", secret=SECRET) as client:
        with client.start_conversation() as conversation:
            conversation.send_text("user1", "hello")
            print(conversation.get_activities()["activities"])

Failures raise ``DirectLineError`` subclasses, one per C status code. The
library is loaded at the first call that needs it, not at import: found via
``DIRECTLINE_LIBRARY``, then next to this package, then the repository's build
folders; ``LibraryNotFoundError`` (an ImportError) names every place it looked.
"""

from ._native import LibraryNotFoundError
from ._native import package_version as _package_version
from .client import Client
from .conversation import Conversation
from .errors import (
    BadRequestError,
    BotError,
    CancelledError,
    ConflictError,
    DirectLineError,
    DirectLineTimeoutError,
    FileError,
    ForbiddenError,
    HTTPError,
    InternalError,
    InvalidArgumentError,
    InvalidHandleError,
    NetworkError,
    NotFoundError,
    ProtocolError,
    ReentrantError,
    ServiceError,
    Status,
    ThrottledError,
    TLSError,
    TokenExpiredError,
    TooLargeError,
    UnauthorizedError,
    UnsupportedError,
    error_class,
)
from .settings import LogLevel, log_to_logging, set_log_handler, timeouts

__version__: str = _package_version()
"""The package's version, "MAJOR.MINOR.PATCH": that of the C library it was built with.
Importing loads no library; ``directline._native.version()`` is the loaded one's."""

__all__ = [
    "BadRequestError",
    "BotError",
    "CancelledError",
    "Client",
    "ConflictError",
    "Conversation",
    "DirectLineError",
    "DirectLineTimeoutError",
    "FileError",
    "ForbiddenError",
    "HTTPError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "LibraryNotFoundError",
    "LogLevel",
    "NetworkError",
    "NotFoundError",
    "ProtocolError",
    "ReentrantError",
    "ServiceError",
    "Status",
    "TLSError",
    "ThrottledError",
    "TokenExpiredError",
    "TooLargeError",
    "UnauthorizedError",
    "UnsupportedError",
    "__version__",
    "error_class",
    "log_to_logging",
    "set_log_handler",
    "timeouts",
]
