#!/usr/bin/env python3
"""Generate include/directline.h from the Swift sources.

The Swift compiler emits C declarations for the `@c` functions and enums
(-emit-clang-header-path); this script keeps only those declarations and
their doc comments, rewrites compiler-specific spellings into plain C99,
gives the opaque handles their own types, and wraps it all in a header
with version macros and the library's conventions.

    python3 scripts/generate_header.py            # rewrite include/directline.h
    python3 scripts/generate_header.py --check    # fail if it is out of date
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.join(ROOT, "Sources", "DirectLine")
HEADER = os.path.join(ROOT, "include", "directline.h")

# Parameter names whose C type the compiler cannot know (handles are
# OpaquePointer, callbacks are spelled out), and the type each one gets.
TYPED_PARAMETERS = {
    "progress": "dl_progress_fn ",
    "log": "dl_log_fn ",
    "client": "dl_client *",
    "out_client": "dl_client **",
    "conversation": "dl_conversation *",
    "out_conversation": "dl_conversation **",
}


def swift_sources():
    found = []
    for folder, _, files in os.walk(SOURCES):
        found += [os.path.join(folder, f) for f in files if f.endswith(".swift")]
    return sorted(found)


def emit_raw_header():
    with tempfile.TemporaryDirectory() as scratch:
        raw = os.path.join(scratch, "raw.h")
        command = ["swiftc", "-typecheck", "-parse-as-library", "-module-name", "DirectLine",
                   "-I", os.path.join(ROOT, "Sources", "CCurl"),
                   "-I", os.path.join(ROOT, "Sources", "CWipe", "include"),
                   "-I", os.path.join(ROOT, "Sources", "CSystem", "include"),
                   *swift_sources(),
                   "-emit-clang-header-path", raw]
        subprocess.run(command, check=True)
        with open(raw, encoding="utf-8") as f:
            return f.read()


def library_version():
    with open(os.path.join(SOURCES, "Support", "LibraryVersion.swift"), encoding="utf-8") as f:
        text = f.read()
    parts = [int(re.search(rf"static let {name} = (\d+)", text).group(1)) for name in ("major", "minor", "patch")]
    return tuple(parts)


DOC_BLOCK = r"((?:[ \t]*///.*\n)*)"


def source_docs():
    """Doc comments as written in the Swift sources, keyed by C name, and the
    exported functions in the order the sources declare them."""
    docs, order = {}, []
    for path in swift_sources():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for block, name in re.findall(DOC_BLOCK + r"@c public func (dl_\w+)", text):
            docs[name] = block
            order.append(name)
        for block, name in re.findall(DOC_BLOCK + r"@c public enum (dl_\w+)", text):
            docs[name] = block
        for block, name in re.findall(DOC_BLOCK + r"[ \t]*case (DL_\w+) = ", text):
            docs[name] = block
    return docs, order


def doc_lines(block, indent=""):
    return [indent + line.strip() for line in block.splitlines()]


def c_block(raw):
    start = raw.index('extern "C" {\n#endif\n') + len('extern "C" {\n#endif\n')
    end = raw.index('#if defined(__cplusplus)\n} // extern "C"', start)
    return raw[start:end]


def split_items(block):
    """Yields (doc comment lines, declaration lines) for each declaration."""
    items, docs, decl = [], [], []
    for line in block.splitlines():
        if not line.strip():
            if decl:
                items.append((docs, decl))
                docs, decl = [], []
            continue
        if line.startswith("///") and not decl:
            docs.append(line)
        else:
            decl.append(line)
    if decl:
        items.append((docs, decl))
    return items


def rewrite_parameter(parameter):
    parameter = re.sub(r"\*\s+\*", "**", parameter.strip())
    pointer_to_function = re.search(r"\(\*\s*(\w+)\)\(", parameter)
    name = pointer_to_function.group(1) if pointer_to_function else re.search(r"(\w+)$", parameter).group(1)
    if name in TYPED_PARAMETERS:
        return TYPED_PARAMETERS[name] + name
    return re.sub(r"\s*(\*+)\s*(\w+)$", r" \1\2", parameter)


def rewrite_function(declaration):
    declaration = re.sub(r"\s*SWIFT_NOEXCEPT|\s*SWIFT_WARN_UNUSED_RESULT", "", declaration)
    declaration = declaration.replace("SWIFT_EXTERN ", "")
    declaration = re.sub(r" _Nullable| _Nonnull", "", declaration)
    declaration = declaration.replace("char const *", "const char *").replace("void const *", "const void *")
    head, params = re.match(r"(.*?\w+)\((.*)\);$", declaration).groups()
    if params != "void":
        params = ", ".join(rewrite_parameter(p) for p in split_parameters(params))
    head = re.sub(r"\* (\w+)$", r"*\1", head)
    return f"{head}({params});"


def split_parameters(params):
    parts, depth, current = [], 0, ""
    for ch in params:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def rewrite_enum(lines, docs):
    name = re.match(r"typedef SWIFT_ENUM\(int32_t, (\w+), closed\) \{", lines[0]).group(1)
    body = []
    for line in lines[1:-1]:
        if line.startswith("///"):
            continue
        case = re.match(rf"^\s*{name}(\w+) = (-?\d+),$", line)
        if not case:
            raise SystemExit(f"unexpected enum line in the compiler's header: {line}")
        body += doc_lines(docs.get(case.group(1), ""), "    ")
        body.append(f"    {case.group(1)} = {case.group(2)},")
    return doc_lines(docs.get(name, "")) + [f"typedef enum {name} {{", *body, f"}} {name};"]


def generate():
    raw = emit_raw_header()
    major, minor, patch = library_version()
    docs, order = source_docs()
    enums, functions = [], {}
    for _, decl in split_items(c_block(raw)):
        text = " ".join(decl)
        if decl[0].startswith("typedef SWIFT_ENUM"):
            enums.append(rewrite_enum(decl, docs))
        elif text.startswith("SWIFT_EXTERN"):
            name = re.search(r"(dl_\w+)\(", text).group(1)
            functions[name] = doc_lines(docs.get(name, "")) + [rewrite_function(text)]
        else:
            raise SystemExit(f"unexpected declaration in the compiler's header: {text}")
    missing = set(order) ^ set(functions)
    if missing:
        raise SystemExit(f"exports and emitted declarations disagree: {sorted(missing)}")

    top = HEADER_TOP
    for token, value in (("MAJOR", major), ("MINOR", minor), ("PATCH", patch),
                         ("NUMBER", major * 10000 + minor * 100 + patch)):
        top = top.replace(f"@{token}@", str(value))
    out = [top]
    for enum in enums:
        out.append("\n".join(enum) + "\n")
    for name in order:
        out.append("\n".join(functions[name]) + "\n")
    out.append(HEADER_BOTTOM)
    return "\n".join(out)


HEADER_TOP = """\
/* libdirectline: a Direct Line (Microsoft Bot Framework) client.
 *
 * GENERATED by scripts/generate_header.py from Sources/DirectLine; do not
 * edit. Conventions (docs/conventions.md):
 *
 *  - Every operation returns a dl_status (int32_t); DL_OK is 0.
 *  - `char **out_json`, always last, receives the result JSON on DL_OK and
 *    the error JSON otherwise: {"error": {"status", "name", "message",
 *    "httpStatus", "serviceCode", "serviceMessage", "retryAfterMs",
 *    "attempts", "delivery"}}. It is always written (NULL when there is
 *    nothing); free it with dl_string_free(). Passing NULL drops the result.
 *  - Strings in are NUL-terminated UTF-8; JSON in must be well-formed.
 *  - Handles are opaque; a freed, forged or wrong-kind handle is refused
 *    with DL_ERR_INVALID_HANDLE. *_free(NULL) is a no-op.
 *  - Every function may be called from any thread, and one client or
 *    conversation may be used from many threads at once.
 */
#ifndef DIRECTLINE_H
#define DIRECTLINE_H

#include <stddef.h>
#include <stdint.h>

#define DL_VERSION_MAJOR @MAJOR@
#define DL_VERSION_MINOR @MINOR@
#define DL_VERSION_PATCH @PATCH@
#define DL_VERSION_STRING "@MAJOR@.@MINOR@.@PATCH@"
/** MAJOR*10000 + MINOR*100 + PATCH; equals dl_version_number() at run time. */
#define DL_VERSION_NUMBER @NUMBER@

#ifdef __cplusplus
extern "C" {
#endif

/** A configured client: endpoint, credential, transport. Thread-safe. */
typedef struct dl_client dl_client;
/** One conversation: its id, its own token, the watermark read so far. Thread-safe. */
typedef struct dl_conversation dl_conversation;

/** Progress of a send or upload: `done` of `total` body bytes have gone out.
 *  Return 0 to go on, nonzero to cancel (see dl_conversation_set_progress). */
typedef int32_t (*dl_progress_fn)(void *userdata, uint64_t done, uint64_t total);

/** A log line at `level` (a dl_log_level), one line of UTF-8 without a
 *  newline, valid only during the call; secrets already redacted
 *  (see dl_set_log_callback). */
typedef void (*dl_log_fn)(void *userdata, int32_t level, const char *message);
"""

HEADER_BOTTOM = """\
#ifdef __cplusplus
}
#endif

#endif /* DIRECTLINE_H */
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when include/directline.h is out of date")
    args = parser.parse_args()
    header = generate()
    if args.check:
        with open(HEADER, encoding="utf-8") as f:
            if f.read() != header:
                sys.exit("include/directline.h is out of date: run python3 scripts/generate_header.py")
        print("include/directline.h is up to date")
        return
    with open(HEADER, "w", encoding="utf-8") as f:
        f.write(header)
    print(f"wrote {os.path.relpath(HEADER, ROOT)}")


if __name__ == "__main__":
    main()
