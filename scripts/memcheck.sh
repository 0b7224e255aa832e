#!/usr/bin/env bash
# Memory-error passes over the C and Python suites, against the emulator
# (docs/testing.md says what each covers and how to run one alone):
#
#   asan-c         The C suite and the thread test (the files
#                  Tests/c/suite_sources.txt lists; Tests/c/test_threads.c),
#                  compiled with the Swift toolchain's clang
#                  -fsanitize=address,undefined, linked to libdirectline.so
#                  built with Swift's -sanitize=address (.build/asan): ASan
#                  checks our Swift code and the C tests, LeakSanitizer the
#                  whole process.
#   asan-python    Python suite files with that same ASan library, loaded into
#                  python3 through DIRECTLINE_LIBRARY with the ASan runtime
#                  LD_PRELOADed. detect_leaks=0: CPython's own allocations at
#                  exit are not ours (leaks are the valgrind pass's job).
#   valgrind-c     The C suite and the thread test under valgrind memcheck,
#                  with the release library (the one that ships).
#   valgrind-python  A subset of the Python suite under valgrind memcheck,
#                  release library; only errors whose stack passes through
#                  libdirectline.so count (Tests/sanitizers/valgrind_ours.py).
#
# Any invalid access, any undefined behaviour report, any definite leak in
# our code, or any failed test fails the run. (The Swift runtime's metadata
# caches live for the whole process; valgrind counts them as "possibly
# lost", which is not a leak of ours.)
#
#   scripts/memcheck.sh                     every pass (about 5 min on 2 cores)
#   scripts/memcheck.sh asan-c valgrind-c   only those passes
#
# Run by scripts/test.sh; on its own it builds what it needs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$ROOT/Tests/sanitizers/sanitizers.sh"

all_passes=(asan-c asan-python valgrind-c valgrind-python)
passes=("$@")
[ "${#passes[@]}" -gt 0 ] || passes=("${all_passes[@]}")
for pass in "${passes[@]}"; do
    case " ${all_passes[*]} " in
        *" $pass "*) ;;
        *) echo "usage: $0 [asan-c] [asan-python] [valgrind-c] [valgrind-python]" >&2; exit 2 ;;
    esac
done
wants() { case " ${passes[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# The Python files each pass runs (those that exist: some are new). test_cli,
# test_packaging and test_tls start other processes or servers and test no
# more of the library; test_lifecycle spends its 45 s waiting for tokens to
# expire, which the C suite covers under both tools. valgrind runs CPython
# about 30 times slower, so it takes the files that cover the most binding
# code per second (docs/testing.md).
asan_python_files=(test_bad_input test_errors test_uploads test_conversation test_native test_confirm test_listen test_listen_stream
                   test_settings test_hostile_matrix test_fault_matrix)
valgrind_python_files=(test_bad_input test_native test_conversation test_errors test_uploads)
# How long each test_threads phase runs here (it needs more than the 2 s token lifetime).
thread_seconds=3

ensure_dependencies
command -v valgrind >/dev/null || {
    log "installing valgrind"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind >/dev/null
}
find_toolchain
[ -f "$LIBRARY" ] || build_library
if wants asan-c || wants asan-python; then
    build_sanitized_library asan address
    ASAN_LIBRARY_DIR="$SANITIZED_LIBRARY_DIR"
fi

work="$(mktemp -d)"
start_emulator
trap 'kill "$EMULATOR_PID" 2>/dev/null; rm -rf "$work" "$EMULATOR_LOG"' EXIT

# The real interpreter: valgrind must start it, not a wrapper script (pyenv's
# shims are bash scripts, and valgrind does not follow exec by default).
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
# Plugins installed on the machine (hypothesis, benchmark) are not used by
# these files and cost a minute to import under valgrind.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1

python_files() { # the existing Tests/python/NAME.py of the names given
    local name
    for name in "$@"; do
        [ ! -f "$ROOT/Tests/python/$name.py" ] || echo "$ROOT/Tests/python/$name.py"
    done
}

timed() { # timed LABEL COMMAND...: runs it, prints how long it took
    local label="$1" started=$SECONDS status=0
    shift
    "$@" || status=$?
    echo "  ($label: $((SECONDS - started)) s)"
    return "$status"
}

if wants asan-c; then
    log "asan-c: C suite and thread test, ASan+UBSan, ASan-instrumented library"
    # The toolchain's clang: its ASan runtime is the one the Swift code was
    # instrumented for. Its lld if it has one: gold warns about every
    # __asan_* helper (harmlessly, but 150 lines of it).
    asan_cc=("$TOOLCHAIN_CLANG" -std=c11 -g -O1 -fno-omit-frame-pointer
             -fsanitize=address,undefined -fno-sanitize-recover=undefined -I"$ROOT/include")
    [ ! -x "$(dirname "$TOOLCHAIN_CLANG")/ld.lld" ] || asan_cc+=(-fuse-ld=lld)
    asan_link=(-L"$ASAN_LIBRARY_DIR" -ldirectline -Wl,-rpath,"$ASAN_LIBRARY_DIR" -lcurl -pthread)
    "${asan_cc[@]}" "${C_SUITE_SOURCES[@]}" "${asan_link[@]}" -o "$work/test_asan"
    "${asan_cc[@]}" "${THREAD_TEST_SOURCES[@]}" "${asan_link[@]}" -o "$work/threads_asan"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=97
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    timed test_directline "$work/test_asan" "$EMULATOR_URL"
    timed test_threads "$work/threads_asan" "$EMULATOR_URL" "$thread_seconds"
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if wants asan-python; then
    mapfile -t files < <(python_files "${asan_python_files[@]}")
    log "asan-python: ${#files[@]} Python files with the ASan-instrumented library"
    asan_runtime="$CLANG_RUNTIME_DIR/libclang_rt.asan-x86_64.so"
    # Child processes the tests start (the emulator; CLI and fork tests)
    # inherit LD_PRELOAD, harmlessly: the runtime only intercepts malloc there.
    # pytest captures file descriptor 2 while a test runs, so a report
    # written there dies with the process: ASan writes to files instead.
    status=0
    timed pytest env LD_PRELOAD="$asan_runtime" DIRECTLINE_LIBRARY="$ASAN_LIBRARY_DIR/libdirectline.so" \
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=97:log_path=$work/asan-python" \
        "$PYTHON" -m pytest "${files[@]}" -q -p no:cacheprovider || status=$?
    if compgen -G "$work/asan-python.*" >/dev/null; then
        cat "$work"/asan-python.*
        echo "AddressSanitizer reported the errors above (pytest exit $status)"
        exit 1
    fi
    [ "$status" -eq 0 ]
fi

if wants valgrind-c; then
    log "valgrind-c: C suite and thread test under valgrind memcheck, release library"
    plain_link=(-L"$ROOT/.build/release" -ldirectline -Wl,-rpath,"$ROOT/.build/release" -lcurl -pthread)
    gcc -std=c11 -g -I"$ROOT/include" "${C_SUITE_SOURCES[@]}" "${plain_link[@]}" -o "$work/test_plain"
    gcc -std=c11 -g -I"$ROOT/include" "${THREAD_TEST_SOURCES[@]}" "${plain_link[@]}" -o "$work/threads_plain"
    memcheck=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
              --show-leak-kinds=definite)
    timed test_directline "${memcheck[@]}" "$work/test_plain" "$EMULATOR_URL"
    timed test_threads "${memcheck[@]}" "$work/threads_plain" "$EMULATOR_URL" "$thread_seconds"
fi

if wants valgrind-python; then
    mapfile -t files < <(python_files "${valgrind_python_files[@]}")
    log "valgrind-python: ${#files[@]} Python files under valgrind memcheck, release library"
    # PYTHONMALLOC=malloc: every Python object through malloc, so valgrind
    # sees them (pymalloc's arenas would hide them and trip false reports).
    # --child-silent-after-fork: the emulator is started with fork+exec.
    status=0
    timed pytest env PYTHONMALLOC=malloc DIRECTLINE_LIBRARY="$LIBRARY" \
        valgrind -q --child-silent-after-fork=yes --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --xml=yes --xml-file="$work/python.xml" \
        "$PYTHON" -m pytest "${files[@]}" -q -p no:cacheprovider || status=$?
    python3 "$ROOT/Tests/sanitizers/valgrind_ours.py" "$work/python.xml"
    [ "$status" -eq 0 ]
fi
log "memcheck clean"
