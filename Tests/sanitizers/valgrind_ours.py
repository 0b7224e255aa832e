"""Counts the valgrind memcheck errors that involve libdirectline.so.

    python3 valgrind_ours.py VALGRIND_XML...

Under valgrind, CPython 3.11 itself reports "uninitialised value" errors in
its own code: _PyLong_New leaves ob_digit[0] of a zero-size int unset and
maybe_small_long reads it (int.from_bytes at start-up, long_bitwise, ...;
python/cpython#102509 and #119022, fixed in 3.12 only), and the Py_INCREF /
Py_DECREF / GC-traversal reports that follow use the value so read. None of
them passes through our library.
Rather than suppress CPython frame by frame (and risk hiding an error of ours
that happens inside a Python callback), this keeps every error whose stack,
or allocation stack for a leak, has a frame in libdirectline.so (which
contains the Swift runtime, linked statically), and ignores the others.
It prints each error kept in full and a count of both, and exits 1 if any
was kept, 2 if a file is not valgrind XML.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter

LIBRARY = "libdirectline.so"


def documents(path: str) -> list[ET.Element]:
    text = open(path, encoding="utf-8", errors="replace").read()
    found = re.findall(r"<valgrindoutput>.*?</valgrindoutput>", text, re.S)
    if not found:
        raise ValueError(f"{path}: no <valgrindoutput> document (did valgrind run?)")
    return [ET.fromstring(document) for document in found]


def frames(error: ET.Element) -> list[tuple[str, str, str]]:
    """(function, object, file:line) of every frame of every stack of an error."""
    result = []
    for stack in error.iter("stack"):
        for frame in stack.iter("frame"):
            location = frame.findtext("file") or ""
            if location and frame.findtext("line"):
                location += ":" + frame.findtext("line")
            result.append((frame.findtext("fn") or "???", frame.findtext("obj") or "", location))
    return result


def main(paths: list[str]) -> int:
    ours, others = [], Counter()
    try:
        for path in paths:
            for document in documents(path):
                for error in document.iter("error"):
                    kind = error.findtext("kind") or "?"
                    stack = frames(error)
                    if any(obj.rsplit("/", 1)[-1].startswith(LIBRARY) for _, obj, _ in stack):
                        ours.append(error)
                    else:
                        top = next((f"{fn} ({obj.rsplit('/', 1)[-1]})" for fn, obj, _ in stack), "?")
                        others[f"{kind} at {top}"] += 1
    except (OSError, ValueError, ET.ParseError) as problem:
        print(f"valgrind_ours: {problem}", file=sys.stderr)
        return 2
    for error in ours:
        what = error.findtext("what") or error.findtext("xwhat/text") or ""
        print(f"{error.findtext('kind')}: {what}")
        for fn, obj, location in frames(error)[:30]:
            print(f"    {fn}  {location or obj}")
    if others:
        print(f"{sum(others.values())} error(s) without a frame in {LIBRARY} (CPython's own), ignored:")
        for line, count in others.most_common(8):
            print(f"    {count} x {line}")
    print(f"{len(ours)} error(s) involving {LIBRARY}")
    return 1 if ours else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
