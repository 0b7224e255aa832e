#!/usr/bin/env bash
# The C suite under AddressSanitizer + UndefinedBehaviorSanitizer and under
# valgrind memcheck, against the emulator. Any invalid access, any
# undefined behaviour report and any definite leak fails the run. (The Swift
# runtime's metadata caches live for the whole process; valgrind counts
# them as "possibly lost", which is not a leak of ours.)
# Run by scripts/test.sh; on its own it needs the library built (make).
set -euo pipefail
source "$(dirname "$0")/common.sh"

command -v valgrind >/dev/null || {
    log "installing valgrind"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind >/dev/null
}
[ -f "$LIBRARY" ] || build_library

work="$(mktemp -d)"
start_emulator
trap 'kill "$EMULATOR_PID" 2>/dev/null; rm -rf "$work" "$EMULATOR_LOG"' EXIT

sources=("$ROOT/Tests/c/test_directline.c" "$ROOT/Tests/c/emulator_control.c")
link=(-L"$ROOT/.build/release" -ldirectline -Wl,-rpath,"$ROOT/.build/release" -lcurl -pthread)

log "C suite under AddressSanitizer and UndefinedBehaviorSanitizer"
gcc -std=c99 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I"$ROOT/include" "${sources[@]}" "${link[@]}" -o "$work/test_asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=97 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$work/test_asan" "$EMULATOR_URL" | tail -n 1

log "C suite under valgrind memcheck"
gcc -std=c99 -g -I"$ROOT/include" "${sources[@]}" "${link[@]}" -o "$work/test_plain"
valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite "$work/test_plain" "$EMULATOR_URL" | tail -n 1
log "memcheck clean"
