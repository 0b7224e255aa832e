#!/usr/bin/env bash
# Upload benchmark: a 256 MiB file (size in MiB as $1) streamed through
# dl_upload_file to a local sink; prints throughput and peak RSS growth.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
size_mib="${1:-256}"

ensure_dependencies
build_library
work="$(mktemp -d)"
log_file="$work/sink.log"
python3 "$ROOT/bench/sink_server.py" >"$log_file" 2>&1 &
sink=$!
trap 'kill "$sink" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$log_file" ] && break; sleep 0.1; done
endpoint="$(head -n 1 "$log_file" | awk '{print $3}')"

gcc -O2 -std=c99 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/bench/upload_rss.c" \
    -L"$ROOT/.build/release" -ldirectline -Wl,-rpath,"$ROOT/.build/release" -o "$work/upload_rss"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/upload.bin"
log "uploading ${size_mib} MiB to $endpoint"
"$work/upload_rss" "$endpoint" "$work/upload.bin"
