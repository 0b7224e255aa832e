#!/usr/bin/env bash
# Instructions per dl_send_activity, counted by callgrind: a figure that
# other jobs on the machine do not disturb, so a change to the send path
# can be compared with the one before it (docs/performance.md).
#
#   bench/callgrind.sh [LIBRARY]     default: .build/release/libdirectline.so
#
# It runs bench_dl's sequential sends twice under callgrind against the
# benchmark's nginx (bench/nginx.conf.in), 1,000 and 3,000 sends, and
# prints (I(3000) - I(1000)) / 2000, so that start-up cancels out. It also
# prints the part spent under curl_multi_perform (libcurl) and the part
# spent wiping freed blocks. Needs nginx, gcc and valgrind (bench/run.sh
# installs the first two).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LIBRARY="$(realpath "${1:-$ROOT/.build/release/libdirectline.so}")"
work="$(mktemp -d)"
nginx() { # start|stop: the benchmark's nginx in $work, as bench/harness.py runs it
    (cd "$ROOT/bench" && python3 -c '
import sys
from pathlib import Path
import harness
nginx = harness.Nginx(Path(sys.argv[2]))
if sys.argv[1] == "start":
    nginx.start()
    print(nginx.endpoint)
else:
    nginx.stop()
' "$1" "$work")
}
trap 'nginx stop >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

mkdir -p "$work/lib"
cp "$LIBRARY" "$work/lib/libdirectline.so"
soname="$(objdump -p "$LIBRARY" | awk '$1 == "SONAME" {print $2}')"
[ -z "$soname" ] || [ "$soname" = libdirectline.so ] || ln -s libdirectline.so "$work/lib/$soname"
gcc -O2 -g -std=c11 -I"$ROOT/include" "$ROOT/bench/bench_dl.c" -L"$work/lib" -ldirectline \
    -Wl,-rpath,"$work/lib" -lpthread -o "$work/bench_dl"
endpoint="$(nginx start)"

count() { # sends -> "total inside_perform"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" "$work/bench_dl" seq "$endpoint" "$1" 100 \
        >/dev/null 2>"$work/valgrind.$1"
    local total perform
    total="$(callgrind_annotate "$work/cg.$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); if (!done) print $1; done = 1}')"
    # libcurl's part: what runs under curl_multi_perform, where each
    # transfer runs (EasyHandle drives its own multi handle).
    perform="$(callgrind_annotate --inclusive=yes "$work/cg.$1" 2>/dev/null \
        | awk '/\?\?\?:curl_multi_perform / && !/=>/ {gsub(",", "", $1); if (!done) print $1; done = 1}')"
    wipe="$(callgrind_annotate --inclusive=yes "$work/cg.$1" 2>/dev/null \
        | awk '/dlwipe_free / && !/=>/ {gsub(",", "", $1); if (!done) print $1; done = 1}')"
    echo "$total ${perform:-0} ${wipe:-0}"
}
read -r small small_perform small_wipe < <(count 1000)
read -r large large_perform large_wipe < <(count 3000)
python3 - "$small" "$large" "$small_perform" "$large_perform" "$small_wipe" "$large_wipe" <<'EOF'
import sys
small, large, small_perform, large_perform, small_wipe, large_wipe = map(int, sys.argv[1:])
per_send = (large - small) / 2000
inside = (large_perform - small_perform) / 2000
wipe = (large_wipe - small_wipe) / 2000
print(f"instructions per send: {per_send / 1000:.1f}k "
      f"(inside curl_multi_perform {inside / 1000:.1f}k, own {(per_send - inside) / 1000:.1f}k; "
      f"wiping freed blocks {wipe / 1000:.1f}k)")
EOF
