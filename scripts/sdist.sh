#!/usr/bin/env bash
# `make sdist`: the Python package's source distribution, with the Swift
# package (Package.swift, Sources/) inside under libdirectline/, so that
# `pip install directline-VERSION.tar.gz` builds the library where Swift 6
# and libcurl's development files are installed; where Swift is not, the
# install stops and names the wheel (`make wheel`).
#
#   scripts/sdist.sh [OUTDIR]     default: dist/ at the top of the checkout
#
# Prints the sdist's path last.
set -euo pipefail
source "$(dirname "$0")/common.sh"

OUT="${1:-$ROOT/dist}"

ensure_wheel_tools
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch" "$ROOT/bindings/python/directline.egg-info"' EXIT

log "building the sdist"
python3 -m build --sdist --outdir "$scratch" "$ROOT/bindings/python" >"$scratch/build.log" 2>&1 \
    || { cat "$scratch/build.log" >&2; exit 1; }
mkdir -p "$OUT"
sdist="$(ls "$scratch"/*.tar.gz)"
mv -f "$sdist" "$OUT/"
echo "$OUT/$(basename "$sdist")"
