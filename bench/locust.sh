#!/usr/bin/env bash
# Locust benchmark: 100, 500 and 1,000 DirectLineUsers (directline.locust)
# in one worker against the emulator with a 200 ms bot: reply latency
# p50/p95/p99 against the bot's delay, sends against the users' schedule,
# the worker's and the emulator's CPU and RSS. Prints a Markdown table and
# writes bench/results/locust.json. See docs/performance.md and bench/locust_bench.py.
#
#     bench/locust.sh              # the full run, about 3 minutes on 2 cores
#     bench/locust.sh --quick      # 20 and 50 users, ~40 s: checks that it runs; writes nothing
#     bench/locust.sh --no-build   # use the existing .build/release/libdirectline.so
#
# Other options go to bench/locust_bench.py (--users 100,500,1000, --bot-delay 0.2,
# --pacing 2, --window 30, --out FILE).
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"

build=1
arguments=()
for argument in "$@"; do
    case "$argument" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) arguments+=("$argument") ;;
    esac
done

ensure_dependencies
[ "$build" -eq 0 ] || build_library
exec python3 "$ROOT/bench/locust_bench.py" "${arguments[@]}"
