#!/usr/bin/env bash
# ThreadSanitizer pass: libdirectline.so built with Swift's -sanitize=thread
# (in .build/tsan), driven by C programs built with the toolchain's
# clang -fsanitize=thread, against the emulator:
#
#   1. Tests/c/test_threads.c: eight threads on one client and one
#      conversation calling every operation, with 2-second tokens so the
#      background refresher runs throughout, then the conversation and the
#      client freed under them (3.0 and 1.1);
#   2. the whole C suite, test_directline, from the files
#      Tests/c/suite_sources.txt lists (its own thread tests, wait
#      cancelled by free, refresh in flight, ...).
#
# Any ThreadSanitizer report, or any failed check, fails the run.
#
#   scripts/tsan.sh            both programs (about 1.5 min from a fresh clone, 1 min once built)
#   scripts/tsan.sh threads    only test_threads
#
# DL_TSAN_SECONDS sets how long each test_threads phase runs (default 4).
# Needs nothing built beforehand; see docs/testing.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$ROOT/Tests/sanitizers/sanitizers.sh"

which="${1:-all}"
case "$which" in
    all|threads) ;;
    *) echo "usage: $0 [all|threads]" >&2; exit 2 ;;
esac

ensure_dependencies
find_toolchain
build_sanitized_library tsan thread

work="$(mktemp -d)"
start_emulator
trap 'kill "$EMULATOR_PID" 2>/dev/null; rm -rf "$work" "$EMULATOR_LOG"' EXIT

log "compiling the C tests with -fsanitize=thread"
# Swift's Mutex hands the lock over in uninstrumented code under contention;
# this shim tells TSan about it (see the file). It is itself not instrumented.
"$TOOLCHAIN_CLANG" -std=c11 -O1 -g -c "$ROOT/Tests/sanitizers/tsan_swift_mutex.c" -o "$work/tsan_swift_mutex.o"
shim_exports=()
for symbol in '$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF' \
              '$s15Synchronization12_MutexHandleV11_unlockSlowyyF' \
              '$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF'; do
    shim_exports+=("-Wl,--export-dynamic-symbol=$symbol")
done
# The toolchain's TSan runtime carries libdispatch interceptors, hence
# -ldispatch -lBlocksRuntime from the Swift runtime folder.
link=("$work/tsan_swift_mutex.o" "${shim_exports[@]}"
      -L"$SANITIZED_LIBRARY_DIR" -ldirectline -Wl,-rpath,"$SANITIZED_LIBRARY_DIR"
      -L"$SWIFT_RUNTIME_DIR" -ldispatch -lBlocksRuntime -Wl,-rpath,"$SWIFT_RUNTIME_DIR"
      -lcurl -pthread -ldl)
compile() { # compile OUTPUT SOURCE...
    local output="$1"; shift
    "$TOOLCHAIN_CLANG" -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=thread -Wall -Werror \
        -I"$ROOT/include" -I"$ROOT/Tests/c" "$@" "${link[@]}" -o "$work/$output"
}
compile test_threads "${THREAD_TEST_SOURCES[@]}"
[ "$which" = threads ] || compile test_directline "${C_SUITE_SOURCES[@]}"

tsan_options="halt_on_error=0:exitcode=66:history_size=4"
[ ! -f "$ROOT/Tests/sanitizers/tsan.supp" ] || tsan_options+=":suppressions=$ROOT/Tests/sanitizers/tsan.supp"

failures=0
run() { # run NAME ARGS...: runs a test program, reports its races and result
    local name="$1"; shift
    log "$name under ThreadSanitizer"
    local started=$SECONDS status=0
    TSAN_OPTIONS="$tsan_options" "$work/$name" "$@" >"$work/$name.out" 2>&1 || status=$?
    local races
    races="$(grep -c '^WARNING: ThreadSanitizer' "$work/$name.out" || true)"
    grep -v '^  ' "$work/$name.out" | grep -v '^WARNING\|^SUMMARY\|^=\+$\|^$\|^ThreadSanitizer:' | tail -n 12 || true
    echo "$name: exit $status, $races ThreadSanitizer report(s), $((SECONDS - started)) s"
    if [ "$status" -ne 0 ] || [ "$races" -ne 0 ]; then
        failures=$((failures + 1))
        if [ "$races" -ne 0 ]; then
            echo "--- the reports (also summarised by location below) ---"
            sed -n '/^WARNING: ThreadSanitizer/,/^SUMMARY/p' "$work/$name.out" | head -n 400
            grep '^SUMMARY: ThreadSanitizer' "$work/$name.out" | sed 's/ in .*//' | sort | uniq -c | sort -rn
        else
            echo "--- its output ---"
            tail -n 80 "$work/$name.out"
        fi
    fi
}
run test_threads "$EMULATOR_URL" "${DL_TSAN_SECONDS:-4}"
[ "$which" = threads ] || run test_directline "$EMULATOR_URL"

if [ "$failures" -ne 0 ]; then
    log "ThreadSanitizer pass FAILED"
    exit 1
fi
log "ThreadSanitizer clean"
