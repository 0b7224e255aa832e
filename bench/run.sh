#!/usr/bin/env bash
# Benchmarks libdirectline against raw libcurl and Python requests/urllib3
# on a local nginx that answers Direct Line 3.0 sends and uploads with fixed
# responses, and its automatic token refresh at scale against a slow token
# service (bench/token_service.py). Prints one table (ratios to the baselines, the issue's targets
# marked PASS/MISS) and writes bench/results/latest.json. See
# docs/performance.md and bench/harness.py.
#
#     bench/run.sh            # the full run, about 3 minutes on 2 cores
#     bench/run.sh --quick    # every benchmark with tiny counts (smoke test,
#                             # well under a minute); writes bench/results/quick.json
#
# Options: --no-build uses the existing .build/release/libdirectline.so (or
# $DIRECTLINE_LIBRARY); --out FILE writes the JSON elsewhere.
#
# It installs what a fresh Debian machine lacks (nginx, gcc, libcurl's
# headers, binutils; Python's requests and urllib3 from pip, else apt). A
# target missed is reported, never an error: the exit status is nonzero only
# when a benchmark could not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIBRARY="${DIRECTLINE_LIBRARY:-$ROOT/.build/release/libdirectline.so}"
quick=()
build=1
out=()
command_line="bench/run.sh${*:+ $*}"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --no-build) build=0 ;;
        --out) out=(--out "$2"); shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing $*"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_dependencies() {
    local packages=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
    command -v gcc >/dev/null || packages+=(gcc)
    command -v pkg-config >/dev/null || packages+=(pkg-config)
    pkg-config --exists libcurl 2>/dev/null || packages+=(libcurl4-openssl-dev)
    command -v strip >/dev/null || packages+=(binutils)
    if [ "${#packages[@]}" -gt 0 ]; then
        # nginx-light is enough; fall back to nginx where it does not exist.
        apt_install "${packages[@]}" || apt_install "${packages[@]/nginx-light/nginx}"
    fi
    if ! python3 -c 'import requests, urllib3' 2>/dev/null; then
        log "installing requests and urllib3"
        python3 -m pip install -q requests urllib3 2>/dev/null \
            || apt_install python3-requests python3-urllib3
    fi
}

ensure_dependencies
if [ "$build" -eq 1 ]; then
    log "building libdirectline.so (release, static Swift runtime)"
    make -C "$ROOT" --no-print-directory library >&2
fi
[ -f "$LIBRARY" ] || { echo "bench/run.sh: no library at $LIBRARY" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/dl-bench.XXXXXX")"
cleanup() {
    # The harness stops nginx itself; this catches an interrupted run.
    if [ -f "$work/nginx/nginx.pid" ]; then kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Measure a private copy: other builds may replace the original meanwhile.
mkdir "$work/lib"
for attempt in $(seq 30); do
    # A build running elsewhere may be rewriting the file: wait for a copy
    # that is whole (a readable ELF, equal to the original a second later).
    cp "$LIBRARY" "$work/lib/libdirectline.so"
    sleep 1
    if objdump -p "$work/lib/libdirectline.so" >/dev/null 2>&1 && cmp -s "$LIBRARY" "$work/lib/libdirectline.so"; then
        break
    fi
    [ "$attempt" -lt 30 ] || { echo "bench/run.sh: $LIBRARY keeps changing" >&2; exit 1; }
    log "$LIBRARY is being rewritten; waiting"
done
soname="$(objdump -p "$LIBRARY" | awk '$1 == "SONAME" {print $2}')"
if [ -n "$soname" ] && [ "$soname" != libdirectline.so ]; then ln -s libdirectline.so "$work/lib/$soname"; fi

log "compiling the benchmark programs"
cflags=(-O2 -std=c11 -Wall -Wextra -Werror)
gcc "${cflags[@]}" -I"$ROOT/include" "$ROOT/bench/bench_dl.c" -L"$work/lib" -ldirectline \
    -Wl,-rpath,"$work/lib" -lpthread -o "$work/bench_dl"
# shellcheck disable=SC2046 # pkg-config's flags are meant to split
gcc "${cflags[@]}" "$ROOT/bench/bench_curl.c" $(pkg-config --cflags --libs libcurl) -lpthread -o "$work/bench_curl"
gcc "${cflags[@]}" "$ROOT/bench/bench_cold.c" -ldl -o "$work/bench_cold"
# shellcheck disable=SC2046 # pkg-config's flags are meant to split
gcc "${cflags[@]}" -I"$ROOT/include" "$ROOT/bench/bench_refresh.c" -L"$work/lib" -ldirectline \
    -Wl,-rpath,"$work/lib" $(pkg-config --cflags --libs libcurl) -lpthread -o "$work/bench_refresh"

python3 "$ROOT/bench/harness.py" --work "$work" --library "$work/lib/libdirectline.so" \
    --library-origin "$LIBRARY" --command "$command_line" \
    "${quick[@]}" "${out[@]}"
