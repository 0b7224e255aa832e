#!/usr/bin/env bash
# The main job: build libdirectline, start the bundled Direct Line emulator,
# and talk to its echo bot from C and from Python.
set -euo pipefail
source "$(dirname "$0")/common.sh"

ensure_dependencies
build_library
start_emulator
log "emulator listening on $EMULATOR_URL"

export DIRECTLINE_ENDPOINT="$EMULATOR_URL" DIRECTLINE_SECRET="emulator-secret"
export DIRECTLINE_LIBRARY="$LIBRARY"
demo_dir="$(mktemp -d)"

log "C: examples/c/quickstart.c"
gcc -std=c99 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/examples/c/quickstart.c" \
    -L"$ROOT/.build/release" -ldirectline -Wl,-rpath,"$ROOT/.build/release" -o "$demo_dir/quickstart"
"$demo_dir/quickstart"

log "Python: examples/python/quickstart.py"
PYTHONPATH="$ROOT/bindings/python" python3 "$ROOT/examples/python/quickstart.py"

rm -rf "$demo_dir"
log "demo finished"
