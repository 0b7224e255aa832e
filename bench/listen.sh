#!/usr/bin/env bash
# Listening benchmarks: delivery latency over the WebSocket against polling
# (1000 and 250 ms), and 1,000 conversations listening in one process
# (threads, RSS, idle CPU, time to online, one message on each), against
# the emulator. Prints Markdown tables and writes bench/results/listen.json.
# See docs/performance.md and bench/listen.py.
#
#     bench/listen.sh              # the full run, about 3 minutes on 2 cores
#     bench/listen.sh --quick      # tiny counts (smoke test, ~15 s); writes nothing
#     bench/listen.sh --no-build   # use the existing .build/release/libdirectline.so
#
# Other options go to bench/listen.py (--only latency|scale, --out FILE,
# --library SO).
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"

run_python_benchmark "$0" listen.py "$@"
