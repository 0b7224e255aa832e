"""The ctypes layer: finding libdirectline.so and declaring its C ABI.

Everything that touches ctypes lives here. Every exported symbol is declared
once, in ``_DECLARATIONS``, next to its C prototype; binding a new C function
is one row there plus a method on ``Client`` or ``Conversation``.

Conventions of the C side (include/directline.h) that this module relies on:

- Every operation returns an ``int32_t`` status and writes its result or
  error JSON to ``char **out_json``. That string belongs to the library: it
  is read here as a ``c_void_p`` (so ctypes does not copy and lose the
  pointer), copied with ``ctypes.string_at`` and handed back to
  ``dl_string_free``.
- Handles are opaque pointers, kept as ``c_void_p`` values.
- ``dl_version`` and ``dl_status_name`` return static strings, which ctypes
  may copy as ``c_char_p``: they are never freed.
- The progress callback (``dl_progress_fn``) is a ``CFUNCTYPE`` object made by
  ``ProgressRelay``; the object must stay referenced for as long as C may
  call it, and no exception may escape it (ctypes would print and drop it).

ctypes releases the GIL around every call into a ``CDLL``, so a slow network
call in one thread never blocks the others.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import math
import os
import re
import threading
from collections.abc import Callable
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int32, c_size_t, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Any, Optional, Union

from .errors import InternalError, InvalidArgumentError, Status, error_from_status

LIBRARY_ENV = "DIRECTLINE_LIBRARY"
LIBRARY_NAME = "libdirectline.so"

_PACKAGE_DIR = Path(__file__).resolve().parent
# bindings/python/directline -> the repository root, where SwiftPM builds.
_REPO_ROOT = _PACKAGE_DIR.parent.parent.parent


class LibraryNotFoundError(ImportError):
    """libdirectline.so could not be found or loaded.

    The message names every place that was tried and why each failed. Set
    the ``DIRECTLINE_LIBRARY`` environment variable to the library's path to
    choose one explicitly.
    """


def library_candidates() -> list[Path]:
    """The places searched for the library, in order.

    When ``DIRECTLINE_LIBRARY`` is set it is the only candidate: an explicit
    choice that fails to load must not be silently replaced by another copy.
    Otherwise: next to this package, then the repository's release and debug
    build folders.
    """
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        return [Path(explicit)]
    return [
        _PACKAGE_DIR / LIBRARY_NAME,
        _REPO_ROOT / ".build" / "release" / LIBRARY_NAME,
        _REPO_ROOT / ".build" / "debug" / LIBRARY_NAME,
    ]


def _load_library() -> ctypes.CDLL:
    failures: list[str] = []
    for candidate in library_candidates():
        if not candidate.is_file():
            failures.append(f"  {candidate}: no such file")
            continue
        try:
            return ctypes.CDLL(str(candidate))
        except OSError as error:
            failures.append(f"  {candidate}: {error}")
    if os.environ.get(LIBRARY_ENV):
        hint = f"{LIBRARY_ENV} is set, so no other place was tried; fix or unset it."
    else:
        hint = (f"Build it (swift build -c release in the repository) or set "
                f"{LIBRARY_ENV} to its path.")
    raise LibraryNotFoundError(
        f"cannot load {LIBRARY_NAME}; looked in:\n" + "\n".join(failures) + "\n" + hint,
        name=LIBRARY_NAME)


_Handle = c_void_p
_HandleOut = POINTER(c_void_p)  # dl_client ** / dl_conversation **
_JSONOut = POINTER(c_void_p)    # char **out_json, read as a raw pointer

LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)
"""``typedef void (*dl_log_fn)(void *userdata, int32_t level, const char *message);``"""

PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, c_uint64, c_uint64)
"""``typedef int32_t (*dl_progress_fn)(void *userdata, uint64_t done, uint64_t total);``

Return 0 to go on, nonzero to cancel. An instance must stay referenced for
as long as the library may call it.
"""

# (name, restype, argtypes): one row per exported symbol.
_DECLARATIONS: tuple[tuple[str, Any, tuple[Any, ...]], ...] = (
    # const char *dl_version(void);
    ("dl_version", c_char_p, ()),
    # uint32_t dl_version_number(void);
    ("dl_version_number", c_uint32, ()),
    # const char *dl_status_name(int32_t status);
    ("dl_status_name", c_char_p, (c_int32,)),
    # void dl_string_free(char *string);
    ("dl_string_free", None, (c_void_p,)),
    # int32_t dl_client_new(const char *config_json, dl_client **out_client, char **out_json);
    ("dl_client_new", c_int32, (c_char_p, _HandleOut, _JSONOut)),
    # int32_t dl_client_free(dl_client *client);
    ("dl_client_free", c_int32, (_Handle,)),
    # int32_t dl_token_generate(dl_client *client, const char *request_json, char **out_json);
    ("dl_token_generate", c_int32, (_Handle, c_char_p, _JSONOut)),
    # int32_t dl_token_refresh(dl_client *client, const char *token, char **out_json);
    ("dl_token_refresh", c_int32, (_Handle, c_char_p, _JSONOut)),
    # int32_t dl_conversation_start(dl_client *client, const char *request_json,
    #                               dl_conversation **out_conversation, char **out_json);
    ("dl_conversation_start", c_int32, (_Handle, c_char_p, _HandleOut, _JSONOut)),
    # int32_t dl_conversation_open(dl_client *client, const char *state_json,
    #                              dl_conversation **out_conversation, char **out_json);
    ("dl_conversation_open", c_int32, (_Handle, c_char_p, _HandleOut, _JSONOut)),
    # int32_t dl_conversation_info(dl_conversation *conversation, char **out_json);
    ("dl_conversation_info", c_int32, (_Handle, _JSONOut)),
    # int32_t dl_conversation_state(dl_conversation *conversation, char **out_json);
    ("dl_conversation_state", c_int32, (_Handle, _JSONOut)),
    # int32_t dl_conversation_refresh(dl_conversation *conversation, char **out_json);
    ("dl_conversation_refresh", c_int32, (_Handle, _JSONOut)),
    # int32_t dl_conversation_free(dl_conversation *conversation);
    ("dl_conversation_free", c_int32, (_Handle,)),
    # int32_t dl_send_activity(dl_conversation *conversation, const char *activity_json,
    #                          char **out_json);
    ("dl_send_activity", c_int32, (_Handle, c_char_p, _JSONOut)),
    # int32_t dl_send_text(dl_conversation *conversation, const char *user_id,
    #                      const char *text, char **out_json);
    ("dl_send_text", c_int32, (_Handle, c_char_p, c_char_p, _JSONOut)),
    # int32_t dl_get_activities(dl_conversation *conversation, char **out_json);
    ("dl_get_activities", c_int32, (_Handle, _JSONOut)),
    # int32_t dl_conversation_wait(dl_conversation *conversation, const char *options_json,
    #                              char **out_json);
    ("dl_conversation_wait", c_int32, (_Handle, c_char_p, _JSONOut)),
    # int32_t dl_conversation_confirm(dl_conversation *conversation, const char *client_activity_id,
    #                                 const char *options_json, char **out_json);
    ("dl_conversation_confirm", c_int32, (_Handle, c_char_p, c_char_p, _JSONOut)),
    # int32_t dl_conversation_end(dl_conversation *conversation, const char *user_id,
    #                             char **out_json);
    ("dl_conversation_end", c_int32, (_Handle, c_char_p, _JSONOut)),
    # int32_t dl_conversation_listen(dl_conversation *conversation, const char *options_json,
    #                                char **out_json);
    ("dl_conversation_listen", c_int32, (_Handle, c_char_p, _JSONOut)),
    # int32_t dl_conversation_next(dl_conversation *conversation, int32_t timeout_ms, char **out_json);
    ("dl_conversation_next", c_int32, (_Handle, c_int32, _JSONOut)),
    # int32_t dl_conversation_fd(dl_conversation *conversation, int32_t *out_fd, char **out_json);
    ("dl_conversation_fd", c_int32, (_Handle, POINTER(c_int32), _JSONOut)),
    # int32_t dl_conversation_unlisten(dl_conversation *conversation, char **out_json);
    ("dl_conversation_unlisten", c_int32, (_Handle, _JSONOut)),
    # int32_t dl_upload_file(dl_conversation *conversation, const char *user_id, const char *path,
    #                        const char *content_type, const char *filename, char **out_json);
    ("dl_upload_file", c_int32, (_Handle, c_char_p, c_char_p, c_char_p, c_char_p, _JSONOut)),
    # int32_t dl_upload_bytes(dl_conversation *conversation, const char *user_id, const void *data,
    #                         size_t length, const char *content_type, const char *filename,
    #                         char **out_json);
    ("dl_upload_bytes", c_int32, (_Handle, c_char_p, c_void_p, c_size_t, c_char_p, c_char_p, _JSONOut)),
    # int32_t dl_upload_multipart(dl_conversation *conversation, const char *user_id,
    #                             const char *upload_json, char **out_json);
    ("dl_upload_multipart", c_int32, (_Handle, c_char_p, c_char_p, _JSONOut)),
    # int32_t dl_conversation_set_progress(dl_conversation *conversation, dl_progress_fn progress,
    #                                      void *userdata);
    ("dl_conversation_set_progress", c_int32, (_Handle, PROGRESS_FN, c_void_p)),
    # int32_t dl_set_log_callback(dl_log_fn log, void *userdata, int32_t level, char **out_json);
    ("dl_set_log_callback", c_int32, (LOG_FN, c_void_p, c_int32, _JSONOut)),
    # int32_t dl_set_thread_timeouts(const char *options_json, char **out_json);
    ("dl_set_thread_timeouts", c_int32, (c_char_p, _JSONOut)),
)


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    for name, restype, argtypes in _DECLARATIONS:
        try:
            function = getattr(library, name)
        except AttributeError:
            raise ImportError(
                f"{library._name} does not export {name}: it is older than this binding "
                f"(found version {library.dl_version_number()})") from None
        function.restype = restype
        function.argtypes = argtypes
    return library


class _LazyLibrary:
    """The library, loaded and declared at the first attribute read.

    ``import directline`` loads nothing, so the package imports (and the
    command's ``--help`` runs) where the library is missing or cannot load;
    the first call that needs it raises LibraryNotFoundError then, and again
    at every later attempt until one succeeds. Loading happens once, under a
    lock: threads that race to the first call all see the same library.
    """

    __slots__ = ("_library", "_lock")

    def __init__(self) -> None:
        self._library: ctypes.CDLL | None = None
        self._lock = threading.Lock()

    def loaded(self) -> ctypes.CDLL:
        """The library, loading and declaring it first if no call has yet."""
        library = self._library
        if library is None:
            with self._lock:
                library = self._library
                if library is None:
                    library = self._library = _declare(_load_library())
        return library

    @property
    def is_loaded(self) -> bool:
        """Whether a call has loaded the library yet (never loads it)."""
        return self._library is not None

    def __getattr__(self, name: str) -> Any:
        if name in _LazyLibrary.__slots__:  # not set yet (an instance made without __init__): no recursion
            raise AttributeError(name)
        return getattr(self.loaded(), name)


lib = _LazyLibrary()
"""The library, every symbol declared; loaded at the first attribute read.
Raw access for tests and experts: ``lib.dl_version()``, ``lib._name``."""


def package_version() -> str:
    """This package's version, "MAJOR.MINOR.PATCH", found without loading the library.

    An installed package has it in ``_version.py``, which setup.py writes into
    the build; a checkout has it in the library's one version source,
    Sources/DirectLine/Support/LibraryVersion.swift; else it is the loaded
    library's.
    """
    try:
        written = importlib.import_module(f"{__package__}._version")
    except ImportError:
        pass
    else:
        value = getattr(written, "version", None)
        if isinstance(value, str):
            return value
    try:
        text = (_REPO_ROOT / "Sources" / "DirectLine" / "Support" / "LibraryVersion.swift").read_text(
            encoding="utf-8")
    except OSError:
        return version()
    parts = [re.search(rf"^ *static let {name} = (\d+)$", text, re.MULTILINE) for name in ("major", "minor", "patch")]
    numbers = [part.group(1) for part in parts if part]
    return ".".join(numbers) if len(numbers) == 3 else version()


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    text: bytes = lib.dl_version()
    return text.decode("ascii")


def status_name(status: int) -> str:
    """The C name of a status code, e.g. "DL_ERR_BOT"."""
    name: bytes = lib.dl_status_name(status)
    return name.decode("ascii")


def encode_string(value: str | None, what: str) -> bytes:
    """A Python str as the NUL-terminated UTF-8 the C side takes.

    Raises InvalidArgumentError for what C could not represent faithfully
    (an embedded NUL would silently cut the string short) or what is not
    valid UTF-8 (a lone surrogate). The message names the argument, never
    its value, which may be a secret.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError.local(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgumentError.local(f"{what} contains a NUL character")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError.local(f"{what} is not valid Unicode (lone surrogate)") from None


def encode_json(value: Any, what: str) -> bytes:
    """A JSON-serializable value as UTF-8 JSON text for the C side."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError.local(f"{what} is not JSON-serializable: {error}") from None
    return encode_string(text, what)


def encode_optional_string(value: str | None, what: str) -> bytes | None:
    """As ``encode_string``, but None stays None (NULL: the library's default)."""
    return None if value is None else encode_string(value, what)


def encode_path(path: str | os.PathLike[str] | os.PathLike[bytes] | bytes, what: str) -> bytes:
    """A file system path as the bytes the OS uses for it (``os.fsencode``).

    An embedded NUL raises InvalidArgumentError here; the library refuses a
    name that is not UTF-8 the same way.
    """
    try:
        encoded = os.fsencode(path)
    except TypeError:
        raise InvalidArgumentError.local(
            f"{what} must be a str, bytes or os.PathLike, not {type(path).__name__}") from None
    if b"\0" in encoded:
        raise InvalidArgumentError.local(f"{what} contains a NUL character")
    return encoded


def _milliseconds(seconds: float, what: str, *, within_ms: tuple[int, int] | None = None) -> int:
    """A duration in seconds as the whole milliseconds the C side takes.

    Raises InvalidArgumentError, naming ``what``, for anything but an int or
    a float (a bool included) and for a negative or non-finite number; with
    ``within_ms`` (lowest, highest), also for one whose milliseconds fall
    outside that range, with a message that gives the range in seconds.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidArgumentError.local(f"{what} must be a number of seconds, not {type(seconds).__name__}")
    valid = math.isfinite(seconds) and seconds >= 0
    milliseconds = round(seconds * 1000) if valid else 0
    if within_ms is not None:
        lowest, highest = within_ms
        if not valid or not lowest <= milliseconds <= highest:
            raise InvalidArgumentError.local(
                f"{what} must be from {lowest / 1000:g} to {highest / 1000:g} seconds, not {seconds!r}")
    elif not valid:
        raise InvalidArgumentError.local(f"{what} must be a finite, non-negative number of seconds")
    return milliseconds


Bytes = Union[bytes, bytearray, memoryview]  # noqa: UP007 - evaluated at run time: X | Y needs Python 3.10


def byte_buffer(data: Bytes, what: str) -> tuple[Any, int]:
    """The (pointer argument, length) of a bytes-like object for a ``const void *``.

    ``bytes`` and writable contiguous buffers are passed without copying
    (a bytearray cannot be resized while it is borrowed); anything else
    is copied once.
    """
    if isinstance(data, bytes):
        return data, len(data)
    if not isinstance(data, (bytearray, memoryview)):
        raise InvalidArgumentError.local(
            f"{what} must be bytes, bytearray or memoryview, not {type(data).__name__}")
    view = memoryview(data)
    if view.readonly or not view.c_contiguous:
        copy = view.tobytes()
        return copy, len(copy)
    flat = view.cast("B")
    return (ctypes.c_char * flat.nbytes).from_buffer(flat), flat.nbytes


def take_string(pointer: c_void_p) -> str | None:
    """Copies a library-owned string out of an out_json slot, then frees it."""
    if not pointer.value:
        return None
    try:
        return ctypes.string_at(pointer.value).decode("utf-8")
    finally:
        lib.dl_string_free(pointer)
        pointer.value = None


def call(function: Callable[..., int], *args: Any) -> Any:
    """Calls an operation whose last parameter is ``char **out_json``.

    Returns the parsed result JSON (None when the library wrote none) or
    raises the DirectLineError subclass for the status.
    """
    out_json = c_void_p()
    status = function(*args, ctypes.byref(out_json))
    text = take_string(out_json)
    try:
        document = json.loads(text) if text else None
    except ValueError:
        raise InternalError.local(f"the library returned malformed JSON (status {status})") from None
    if status != Status.OK:
        raise error_from_status(status, document, status_name(status))
    return document


def call_with_int_out(function: Callable[..., int], *args: Any) -> tuple[int, Any]:
    """Calls an operation that writes an ``int32_t *`` before ``char **out_json``.

    Returns that integer and the parsed result JSON.
    """
    value = c_int32(-1)
    result = call(function, *args, ctypes.byref(value))
    return value.value, result


def call_constructor(function: Callable[..., int], *args: Any) -> tuple[int, Any]:
    """Calls a constructor (``..., dl_x **out_handle, char **out_json``).

    Returns the new handle's address and the parsed result JSON.
    """
    out_handle = c_void_p()
    result = call(function, *args, ctypes.byref(out_handle))
    if not out_handle.value:
        raise error_from_status(Status.ERR_INTERNAL, None, "the library returned DL_OK without a handle")
    return out_handle.value, result


ProgressCallable = Callable[[int, int], Optional[bool]]  # noqa: UP045 - evaluated at run time: X | None needs 3.10
"""``progress(done, total)``: return False to cancel, anything else to go on."""


class ProgressRelay:
    """Adapts a Python progress callable to ``dl_progress_fn`` for one call.

    ``function`` is the C function pointer; keep the relay referenced while
    the library may call it. An exception raised by the callable (any
    BaseException, KeyboardInterrupt included) cancels the transfer and is
    kept in ``error``, for the caller to re-raise once the C call has
    returned. The library snapshots a conversation's callback when each
    send starts, so another thread's send that began while this relay was
    set may call it too: those calls are not this transfer's progress, and
    are answered "go on" without calling the callable.
    """

    def __init__(self, progress: ProgressCallable) -> None:
        self._progress = progress
        self._thread = threading.get_ident()
        self.error: BaseException | None = None
        self.function = PROGRESS_FN(self._relay)

    def _relay(self, _userdata: int | None, done: int, total: int) -> int:
        if threading.get_ident() != self._thread:
            return 0
        if self.error is not None:
            return 1
        try:
            verdict = self._progress(done, total)
        except BaseException as error:  # noqa: BLE001 - re-raised by the caller after the C call
            self.error = error
            return 1
        return 1 if verdict is False else 0


NO_PROGRESS = PROGRESS_FN()
"""The NULL ``dl_progress_fn``: removes a conversation's progress callback."""
