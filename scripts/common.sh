# Shared by the scripts: installs what a fresh machine lacks, builds the
# library, and starts the emulator. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIBRARY="$ROOT/.build/release/libdirectline.so"

log() { printf '\n==> %s\n' "$*"; }

# have NAME: NAME is a command on PATH or in the system's sbin folders.
have() {
    command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# Debian packages and Python modules the build, the tests and the linters need.
ensure_dependencies() {
    local packages=()
    pkg-config --exists libcurl 2>/dev/null || packages+=(libcurl4-openssl-dev pkg-config)
    command -v pkg-config >/dev/null || packages+=(pkg-config)
    command -v gcc >/dev/null || packages+=(gcc)
    command -v g++ >/dev/null || packages+=(g++)
    command -v nm >/dev/null || packages+=(binutils)
    command -v make >/dev/null || packages+=(make)
    command -v openssl >/dev/null || packages+=(openssl)
    # Tests/python/test_http2.py serves h2 over TLS with it.
    have nginx || packages+=(nginx)
    # Tests/python/test_netns.py makes network namespaces and nftables rules,
    # which only root may; it is skipped for anyone else. Looked for in sbin
    # too, which is not on every user's PATH.
    if [ "$(id -u)" -eq 0 ]; then
        have ip || packages+=(iproute2)
        have nft || packages+=(nftables)
    fi
    if [ "${#packages[@]}" -gt 0 ]; then
        log "installing ${packages[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    if ! python3 -c 'import pytest' 2>/dev/null; then
        log "installing pytest"
        python3 -m pip install -q pytest
    fi
    # The emulator's WebSocket stream (emulator/stream.py) is built on it, and
    # Tests/emulator/test_stream.py is its client. Pinned to a major version:
    # the stream uses its asyncio server API as version 17 has it.
    if ! python3 -c 'import sys, websockets; sys.exit(websockets.__version__.split(".")[0] != "17")' \
            2>/dev/null; then
        log "installing websockets 17"
        python3 -m pip install -q "websockets>=17,<18"
    fi
    if ! python3 -m mypy --version >/dev/null 2>&1; then
        log "installing mypy"
        python3 -m pip install -q mypy
    fi
    # ruff.toml pins the version (ruff refuses to run with any other).
    local ruff_version
    ruff_version="$(sed -n 's/^required-version = "==\(.*\)"$/\1/p' "$ROOT/ruff.toml")"
    if [ "$(python3 -m ruff --version 2>/dev/null)" != "ruff $ruff_version" ]; then
        log "installing ruff $ruff_version"
        python3 -m pip install -q "ruff==$ruff_version"
    fi
}

# A release build with the Swift runtime linked in, so the .so loads in
# processes on machines without Swift.
build_library() {
    log "building libdirectline.so (release, static Swift runtime)"
    make -C "$ROOT" --no-print-directory library
}

# Starts the emulator on a free port; sets EMULATOR_URL and EMULATOR_PID.
# Its output goes to $EMULATOR_LOG, whose first line names the port.
start_emulator() {
    EMULATOR_LOG="$(mktemp)"
    (cd "$ROOT" && exec python3 -m emulator --port 0 --secret emulator-secret --quiet) >"$EMULATOR_LOG" 2>&1 &
    EMULATOR_PID=$!
    trap 'kill "$EMULATOR_PID" 2>/dev/null; rm -f "$EMULATOR_LOG"' EXIT
    local first_line="" waited=0
    while [ -z "$first_line" ] && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
        first_line="$(head -n 1 "$EMULATOR_LOG")"
    done
    EMULATOR_URL="${first_line##* }"
    case "$EMULATOR_URL" in
        http://127.0.0.1:*) ;;
        *) echo "the emulator did not start:" >&2; cat "$EMULATOR_LOG" >&2; return 1 ;;
    esac
}
