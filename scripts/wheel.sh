#!/usr/bin/env bash
# `make wheel`: the Python package as a wheel that installs on any x86-64
# Linux with glibc 2.36 or later (Debian 12, Ubuntu 23.04, Fedora 37 and
# later), with or without Swift, libcurl or a compiler there.
#
#   scripts/wheel.sh [OUTDIR]     default: dist/ at the top of the checkout
#
# The release library (static Swift runtime) is stripped of what no caller
# needs (its dynamic symbols stay), packed by `python3 -m build --wheel`, and
# `auditwheel repair` copies the libcurl the build linked against and the
# libraries that libcurl needs into the wheel's directline.libs/, renamed,
# with the library's RPATH pointing there. auditwheel's own --strip is not
# used: it strips after patchelf has edited the files, which can leave them
# unloadable (pypa/auditwheel#716), and removes every symbol table besides.
# Prints the wheel's path last.
set -euo pipefail
source "$(dirname "$0")/common.sh"

OUT="${1:-$ROOT/dist}"
PLATFORM=manylinux_2_36_x86_64

ensure_wheel_tools
ensure_websocket_libcurl
# The bundled libcurl is the one that listens; one without WebSocket would
# make every installed copy poll.
curl_has_websocket || { echo "the build's libcurl has no WebSocket support: not packing it" >&2; exit 1; }
build_library

scratch="$(mktemp -d)"
cleanup() { rm -rf "$scratch" "$ROOT/bindings/python/build" "$ROOT/bindings/python/directline.egg-info"; }
trap cleanup EXIT
# setuptools reuses bindings/python/build/lib: a file left there by an
# earlier build would end up in this wheel.
rm -rf "$ROOT/bindings/python/build" "$ROOT/bindings/python/directline.egg-info"

log "stripping a copy of libdirectline.so"
cp "$LIBRARY" "$scratch/libdirectline.so"
strip --strip-unneeded "$scratch/libdirectline.so"

log "building the wheel"
DIRECTLINE_LIBRARY="$scratch/libdirectline.so" \
    python3 -m build --wheel --outdir "$scratch/plain" "$ROOT/bindings/python" >"$scratch/build.log" 2>&1 \
    || { cat "$scratch/build.log" >&2; exit 1; }

log "bundling libcurl and its libraries ($PLATFORM)"
PATH="$(wheel_tools_path):$PATH" python3 -m auditwheel repair --plat "$PLATFORM" --only-plat --wheel-dir "$scratch/repaired" "$scratch"/plain/*.whl

mkdir -p "$OUT"
wheel="$(ls "$scratch"/repaired/*.whl)"
mv -f "$wheel" "$OUT/"
wheel="$OUT/$(basename "$wheel")"
log "$(du -k "$wheel" | cut -f1) KiB"
echo "$wheel"
