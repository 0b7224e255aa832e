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

run_python_benchmark "$0" locust_bench.py "$@"
