#!/usr/bin/env bash
# Fuzzes the C API with libFuzzer for a bounded time (docs/fuzzing.md).
#
#   scripts/fuzz.sh                 60 s, as CI runs it
#   scripts/fuzz.sh --time 3600     longer, locally
#   scripts/fuzz.sh --keep          keep the work directory (its corpus holds
#                                   the inputs found, to merge: see the doc)
#   scripts/fuzz.sh -- -jobs=2      anything after -- goes to libFuzzer
#
# Builds the library with coverage and AddressSanitizer into .build/fuzz
# (the normal .build/release is untouched), links Tests/fuzz/fuzz_api.c
# with libFuzzer, ASan and UBSan, and fuzzes a temporary copy of
# Tests/fuzz/corpus, so the checkout stays clean. Fails on any crash,
# broken invariant, leak, timeout, out-of-memory or sanitizer report, and
# prints the input and the command that reproduces it.
set -euo pipefail
source "$(dirname "$0")/common.sh"

seconds=60
keep=0
extra=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --time) seconds="${2:?--time needs a number of seconds}"; shift 2 ;;
        --time=*) seconds="${1#--time=}"; shift ;;
        --keep) keep=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "usage: scripts/fuzz.sh [--time SECONDS] [--keep] [-- LIBFUZZER_ARGS...]" >&2; exit 2 ;;
    esac
done
case "$seconds" in ''|*[!0-9]*) echo "--time takes whole seconds, not '$seconds'" >&2; exit 2 ;; esac

ensure_dependencies

# The sanitizer and fuzzer runtimes must be those of the compiler that
# instruments the Swift code: use the clang that ships with the toolchain.
swift_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
CLANG="${CLANG:-$swift_bin/clang}"
[ -x "$CLANG" ] || { echo "no clang next to swift ($CLANG); set CLANG" >&2; exit 1; }
linker=()
[ -x "$(dirname "$CLANG")/ld.lld" ] && linker=(-fuse-ld=lld)
probe="$(mktemp -d)"
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; return (int)(n & 0); }\n' >"$probe/probe.c"
if ! "$CLANG" "${linker[@]}" -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" 2>"$probe/log"; then
    cat "$probe/log" >&2
    echo "$CLANG cannot link a libFuzzer target (its fuzzer, asan or ubsan runtime is missing)" >&2
    rm -rf "$probe"
    exit 1
fi
rm -rf "$probe"

BUILD="$ROOT/.build/fuzz"
TARGET="$BUILD/fuzz_api"

log "building libdirectline.so for fuzzing (release, coverage + AddressSanitizer) in .build/fuzz"
# -sanitize=fuzzer adds libFuzzer's coverage (inline 8-bit counters, PC
# table, comparison tracing) without linking libFuzzer into the library.
# Sources edited during the build make SwiftPM give up: try again once.
build() {
    (cd "$ROOT" && swift build -c release --build-path "$BUILD" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -g)
}
build || { log "build failed; trying once more"; build; }
ln -sf libdirectline.so "$BUILD/release/libdirectline.so.0"

log "building the fuzz target (libFuzzer + ASan + UBSan)"
"$CLANG" "${linker[@]}" -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Werror ${FUZZ_CFLAGS:-} -I"$ROOT/include" "$ROOT/Tests/fuzz/fuzz_api.c" \
    -L"$BUILD/release" -ldirectline -Wl,-rpath,"$BUILD/release" -o "$TARGET"

work="$(mktemp -d "${TMPDIR:-/tmp}/dl-fuzz.XXXXXX")"
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp "$ROOT"/Tests/fuzz/corpus/* "$work/corpus/"
seeds="$(ls "$work/corpus" | wc -l)"

# SWIFT_BACKTRACE: the Swift runtime's crash handler would catch an abort
# and hang under ASan (the target sets it too). The fixtures the target
# makes (fz-fixtures/) land in the work directory.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
symbolizer="$(dirname "$CLANG")/llvm-symbolizer"
[ -x "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH="$symbolizer"

log "fuzzing for ${seconds}s from $seeds seeds (log: $work/fuzz.log)"
status=0
(cd "$work" && "$TARGET" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -dict="$ROOT/Tests/fuzz/fuzz_api.dict" -artifact_prefix="$work/artifacts/" \
    -print_final_stats=1 -detect_leaks=1 "${extra[@]}" "$work/corpus") >"$work/fuzz.log" 2>&1 &
fuzzer=$!
# Progress without the NEW/REDUCE lines of every input found.
tail -n +1 -f --pid="$fuzzer" "$work/fuzz.log" | grep --line-buffered -E 'INITED|pulse|DONE' || true
wait "$fuzzer" || status=$?

artifacts=("$work"/artifacts/*)
if [ "$status" -ne 0 ] || [ -e "${artifacts[0]}" ] ||
    grep -qE '^==[0-9]+==ERROR|runtime error:|==fuzz_api== INVARIANT' "$work/fuzz.log"; then
    keep=1
    echo
    grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE)' "$work/fuzz.log" | tail -n 80
    mkdir -p "$BUILD/artifacts"
    echo
    echo "FUZZING FAILED (libFuzzer exit status $status). Full log: $work/fuzz.log"
    for input in "${artifacts[@]}"; do
        [ -e "$input" ] || continue
        cp "$input" "$BUILD/artifacts/"
        echo "  input:     $BUILD/artifacts/$(basename "$input")"
        echo "  reproduce: (cd $work && $TARGET $BUILD/artifacts/$(basename "$input"))"
        echo "  minimise:  (cd $work && $TARGET -minimize_crash=1 -runs=20000 $BUILD/artifacts/$(basename "$input"))"
    done
    exit 1
fi

grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$work/fuzz.log" || true
last="$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -n 1)"
log "fuzzing clean: $last"
[ "$keep" = 1 ] && echo "work directory kept: $work (corpus: $work/corpus)"
exit 0
