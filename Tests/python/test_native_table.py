"""The ctypes declaration table in directline/_native.py agrees with include/directline.h.

Each row's restype and argtypes are checked against the types of the header's
prototype, not only its name: ctypes believes the table, so a wrong row
passes or reads the wrong width, or loses a returned pointer, with no error.
The header is parsed here, so the check holds whatever the header becomes.
"""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, c_char_p, c_int32, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any

import pytest
from directline import _native
from support import BINDINGS, REPO_ROOT

HEADER = (REPO_ROOT / "include" / "directline.h").read_text()
NATIVE_SOURCE = (BINDINGS / "directline" / "_native.py").read_text()


def c_code(text: str) -> str:
    """The header without comments and preprocessor lines, whitespace collapsed."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.MULTILINE)
    return re.sub(r"\s+", " ", text)


def c_type(declaration: str) -> str:
    """The type of a parameter declaration (``const char *name`` -> ``const char*``)."""
    spelled = re.sub(r"\s*\*\s*", "*", declaration.strip())
    match = re.fullmatch(r"(.*?[\w*])\s*\b\w+", spelled)
    assert match, f"cannot read the parameter {declaration!r}"
    return match.group(1).strip()


def c_parameters(text: str) -> list[str]:
    """The parameter types of a parameter list; ``(void)`` has none."""
    text = text.strip()
    return [] if text == "void" else [c_type(parameter) for parameter in text.split(",")]


CODE = c_code(HEADER)

# int32_t dl_send_text(dl_conversation *conversation, ...);
PROTOTYPES: dict[str, tuple[str, list[str]]] = {
    name: (re.sub(r"\s*\*\s*", "*", returned).strip(), c_parameters(parameters))
    for returned, name, parameters in re.findall(
        r"(?:^|(?<=[;{}]))\s*((?:const )?\w+[\s*]*?)\s*\b(dl_\w+)\s*\(([^()]*)\)\s*;", CODE)
}

# typedef int32_t (*dl_progress_fn)(void *userdata, uint64_t done, uint64_t total);
FUNCTION_POINTERS: dict[str, tuple[str, list[str]]] = {
    name: (re.sub(r"\s*\*\s*", "*", returned).strip(), c_parameters(parameters))
    for returned, name, parameters in re.findall(
        r"\btypedef ((?:const )?\w+[\s*]*?)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^()]*)\)\s*;", CODE)
}

# typedef struct dl_client dl_client;
OPAQUE_HANDLES = set(re.findall(r"\btypedef struct (\w+) \1;", CODE))

# The ctypes type the binding's conventions (see _native's docstring) call for.
SCALARS: dict[str, Any] = {
    "int32_t": c_int32,
    "uint32_t": c_uint32,
    "uint64_t": c_uint64,
    "size_t": c_size_t,
    "void*": c_void_p,
    "const void*": c_void_p,
    # A string in, or a static string out: ctypes may convert it.
    "const char*": c_char_p,
    # A string the library allocated, handed back to be freed: the raw pointer.
    "char*": c_void_p,
    # out_json: read as a raw pointer, so that it can be handed to dl_string_free.
    "char**": POINTER(c_void_p),
    # An int the library writes (dl_conversation_fd's out_fd).
    "int32_t*": POINTER(c_int32),
}


def expected(spelled: str, *, returned: bool = False) -> Any:
    """What a row must say for the C type ``spelled``; function pointers as (restype, argtypes)."""
    if spelled == "void" and returned:
        return None
    if spelled in SCALARS:
        return SCALARS[spelled]
    if spelled.rstrip("*") in OPAQUE_HANDLES:
        stars = len(spelled) - len(spelled.rstrip("*"))
        # A handle is an opaque pointer; dl_x ** is where a constructor writes one.
        return {1: c_void_p, 2: POINTER(c_void_p)}.get(stars, f"unexpected {spelled}")
    if spelled in FUNCTION_POINTERS:
        result, parameters = FUNCTION_POINTERS[spelled]
        return ("CFUNCTYPE", expected(result, returned=True), tuple(expected(each) for each in parameters))
    return f"no ctypes type is known for the C type {spelled!r}"


CDECL_FLAGS = ctypes.CFUNCTYPE(None)._flags_


def described(ctype: Any) -> Any:
    """A ctypes type as ``expected`` spells it: a C function pointer type as (restype, argtypes)."""
    if isinstance(ctype, type) and hasattr(ctype, "_argtypes_"):
        if ctype._flags_ != CDECL_FLAGS:
            return f"a function pointer type that is not CFUNCTYPE: {ctype!r}"
        return ("CFUNCTYPE", described(ctype._restype_), tuple(described(each) for each in ctype._argtypes_))
    return ctype


ROWS = {name: (restype, argtypes) for name, restype, argtypes in _native._DECLARATIONS}


def test_the_header_was_read():
    assert len(PROTOTYPES) >= 20
    assert PROTOTYPES["dl_send_text"] == ("int32_t", ["dl_conversation*", "const char*", "const char*", "char**"])
    assert PROTOTYPES["dl_version"] == ("const char*", [])
    assert FUNCTION_POINTERS["dl_log_fn"] == ("void", ["void*", "int32_t", "const char*"])
    assert OPAQUE_HANDLES == {"dl_client", "dl_conversation"}


def test_every_header_function_has_one_row_and_every_row_a_header_function():
    names = [name for name, _, _ in _native._DECLARATIONS]
    assert len(names) == len(set(names)), "a function is declared twice"
    assert sorted(set(PROTOTYPES) - set(names)) == [], "functions of the header with no row"
    assert sorted(set(names) - set(PROTOTYPES)) == [], "rows with no function in the header"


@pytest.mark.parametrize("name", sorted(PROTOTYPES))
def test_the_row_has_the_ctypes_types_of_the_prototype(name):
    assert name in ROWS, f"{name} has no row"
    returned, parameters = PROTOTYPES[name]
    restype, argtypes = ROWS[name]
    assert described(restype) == expected(returned, returned=True), f"{name}: restype for {returned}"
    assert len(argtypes) == len(parameters), f"{name}: {len(argtypes)} argtypes for {len(parameters)} parameters"
    for index, (argtype, parameter) in enumerate(zip(argtypes, parameters)):
        assert described(argtype) == expected(parameter), f"{name}: argument {index} ({parameter})"


# The prototype comment above each row: "# int32_t dl_x(...);", possibly over several lines.
COMMENTED_ROWS = re.findall(r"((?:^[ \t]*#[^\n]*\n)+)[ \t]*\(\"(dl_\w+)\",", NATIVE_SOURCE, flags=re.MULTILINE)


def test_every_row_carries_the_headers_prototype_as_its_comment():
    assert len(COMMENTED_ROWS) == len(_native._DECLARATIONS)
    header_prototypes = set(re.findall(r"[^;{}]*\bdl_\w+\s*\([^()]*\)\s*;", CODE))
    header_prototypes = {prototype.strip() for prototype in header_prototypes}
    for comment, name in COMMENTED_ROWS:
        prototype = " ".join(re.sub(r"^[ \t]*#", "", comment, flags=re.MULTILINE).split())
        assert prototype.replace("( ", "(") in header_prototypes, f"the comment of {name} is not the header's"
