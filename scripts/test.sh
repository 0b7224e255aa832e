#!/usr/bin/env bash
# The whole test suite: the header check and the linters, Swift unit tests, then pytest over the emulator,
# the build artifacts (exports, header, the C suite and C examples, install,
# pip, the benchmark harness) and the Python binding, then the sanitizer
# passes (the C suite and part of the Python suite under ASan/UBSan and
# valgrind, the concurrency tests under ThreadSanitizer; docs/testing.md),
# then the libFuzzer target for 60 s. Installs what a fresh machine lacks.
# This is the full run CI does; scripts/check.sh (`make check`) is the fast
# tier for every change.
set -euo pipefail
source "$(dirname "$0")/common.sh"

ensure_dependencies
build_library

log "header up to date, linters"
python3 "$ROOT/scripts/generate_header.py" --check
make -C "$ROOT" --no-print-directory lint

log "Swift unit tests"
(cd "$ROOT" && swift test)

log "emulator, C and Python suites"
cd "$ROOT"
python3 -m pytest Tests -q -p no:cacheprovider

"$ROOT/scripts/memcheck.sh"

"$ROOT/scripts/tsan.sh"

"$ROOT/scripts/fuzz.sh" --time 60
