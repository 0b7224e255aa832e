"""The ctypes layer: finding libdirectline.so and declaring its C ABI.

Everything that touches ctypes lives here. Every exported symbol is declared
once, in ``_DECLARATIONS``, next to its C prototype; binding a new C function
is one row there plus a method in ``client.py``.

Conventions of the C side (include/directline.h) that this module relies on:

- Every operation returns an ``int32_t`` status and writes its result or
  error JSON to ``char **out_json``. That string belongs to the library: it
  is read here as a ``c_void_p`` (so ctypes does not copy and lose the
  pointer), copied with ``ctypes.string_at`` and handed back to
  ``dl_string_free``.
- Handles are opaque pointers, kept as ``c_void_p`` values.
- ``dl_version`` and ``dl_status_name`` return static strings, which ctypes
  may copy as ``c_char_p``: they are never freed.

ctypes releases the GIL around every call into a ``CDLL``, so a slow network
call in one thread never blocks the others.
"""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import POINTER, c_char_p, c_int32, c_uint32, c_void_p
from pathlib import Path
from typing import Any, Callable, Optional

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
    # int32_t dl_conversation_start(dl_client *client, const char *request_json,
    #                               dl_conversation **out_conversation, char **out_json);
    ("dl_conversation_start", c_int32, (_Handle, c_char_p, _HandleOut, _JSONOut)),
    # int32_t dl_conversation_open(dl_client *client, const char *state_json,
    #                              dl_conversation **out_conversation, char **out_json);
    ("dl_conversation_open", c_int32, (_Handle, c_char_p, _HandleOut, _JSONOut)),
    # int32_t dl_conversation_info(dl_conversation *conversation, char **out_json);
    ("dl_conversation_info", c_int32, (_Handle, _JSONOut)),
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


lib: ctypes.CDLL = _declare(_load_library())
"""The loaded library, every symbol declared. Raw access for tests and experts."""


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    text: bytes = lib.dl_version()
    return text.decode("ascii")


def status_name(status: int) -> str:
    """The C name of a status code, e.g. "DL_ERR_BOT"."""
    name: bytes = lib.dl_status_name(status)
    return name.decode("ascii")


def encode_string(value: Optional[str], what: str) -> bytes:
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


def take_string(pointer: c_void_p) -> Optional[str]:
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


def call_constructor(function: Callable[..., int], *args: Any) -> tuple[int, Any]:
    """Calls a constructor (``..., dl_x **out_handle, char **out_json``).

    Returns the new handle's address and the parsed result JSON.
    """
    out_handle = c_void_p()
    result = call(function, *args, ctypes.byref(out_handle))
    if not out_handle.value:
        raise error_from_status(Status.ERR_INTERNAL, None, "the library returned DL_OK without a handle")
    return out_handle.value, result
