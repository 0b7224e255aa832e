"""Locust benchmark: 100, 500 and 1,000 DirectLineUsers in one worker (bench/locust.sh runs this).

    python3 bench/locust_bench.py [--users 100,500,1000] [--bot-delay 0.2] [--pacing 2] [--window 30]
                            [--quick] [--out FILE]

For each user count: a fresh emulator (`python3 -m emulator --port 0
--quiet --reply-delay DELAY --backlog 4096`: the send answered at once,
typing, then the reply DELAY seconds later), and one Locust process
(headless, no master: one worker) running bench/locustfile.py, whose users
each say "hello" every PACING seconds and wait for the reply over the
WebSocket. Once every user has spawned, and a few seconds more to settle,
a window of WINDOW seconds is measured:

  - the reply latency (from the start of the send to the bot's reply
    reaching the user) p50/p95/p99/max, against the configured bot delay;
    send and first typing p50/p99;
  - sends per second against the schedule (users / pacing): users that
    keep their think-time schedule make all of them;
  - the Locust process's CPU (user + system, % of one core) and RSS (and
    its peak), from /proc; the emulator's CPU and RSS the same way, to
    show which of the two limits.

Both processes are started here and stopped by their own PIDs. It prints a
Markdown table (figures and ratios; nothing is asserted) and writes every
figure as JSON to bench/results/locust.json (--quick: 20 and 50 users, a
10 s window, nothing written unless --out is given).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECRET = "emulator-secret"
BANNER = "directline-emulator listening on "
NOFILE = 65536
SETTLE = 5.0
SPAWN_RATE = 100


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NOFILE if hard == resource.RLIM_INFINITY else max(hard, NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))  # root may raise the hard limit
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Sampler(threading.Thread):
    """Reads a process's CPU ticks and RSS from /proc every 0.5 s: (time, cpu seconds, rss KiB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float, int]] = []
        self.peak_kib = 0
        self.stopping = threading.Event()
        self.ticks = os.sysconf("SC_CLK_TCK")

    def read(self) -> tuple[float, float, int] | None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self.ticks  # utime, stime
        values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(values["VmRSS"].split()[0])
        self.peak_kib = max(self.peak_kib, int(values.get("VmHWM", "0 kB").split()[0]))
        return time.time(), cpu, rss

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            sample = self.read()
            if sample is not None:
                self.samples.append(sample)

    def over(self, start: float, end: float) -> dict[str, float]:
        """CPU as % of one core, and RSS (MiB, at the end), between two wall-clock times."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < 2:
            return {"cpuPercent": float("nan"), "rssMiB": float("nan")}
        (t0, cpu0, _), (t1, cpu1, rss1) = inside[0], inside[-1]
        return {"cpuPercent": 100.0 * (cpu1 - cpu0) / (t1 - t0), "rssMiB": rss1 / 1024}


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_one(users: int, delay: float, pacing: float, window: float) -> dict[str, Any]:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--secret", SECRET, "--quiet",
         "--reply-delay", f"{delay:g}", "--backlog", "4096"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=raise_nofile)
    line = emulator.stdout.readline().strip() if emulator.stdout else ""
    if not line.startswith(BANNER):
        emulator.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    url = line[len(BANNER):]
    spawn_seconds = users / SPAWN_RATE
    run_time = int(spawn_seconds + SETTLE + window + 3)
    with tempfile.TemporaryDirectory() as folder:
        samples_path = Path(folder) / "samples.json"
        env = dict(os.environ, DIRECTLINE_SECRET=SECRET, BENCH_SAMPLES=str(samples_path),
                   BENCH_PACING=str(pacing),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "bindings" / "python"),
                                                            os.environ.get("PYTHONPATH")])))
        command = [sys.executable, "-m", "locust", "-f", str(BENCH / "locustfile.py"), "--host", url,
                   "--headless", "--users", str(users), "--spawn-rate", str(SPAWN_RATE),
                   "--run-time", f"{run_time}s", "--only-summary", "--loglevel", "WARNING"]
        log(f"{users} users: {' '.join(command[2:])}")
        locust = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, preexec_fn=raise_nofile)
        worker, server = Sampler(locust.pid), Sampler(emulator.pid)
        worker.start()
        server.start()
        try:
            output, _ = locust.communicate(timeout=run_time + 180)
        finally:
            worker.stopping.set()
            server.stopping.set()
            if locust.poll() is None:
                locust.kill()
                locust.wait()
            emulator.terminate()
            try:
                emulator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                emulator.kill()
                emulator.wait()
        if not samples_path.exists():
            raise RuntimeError(f"locust wrote no samples (exit {locust.returncode}):\n{output[-3000:]}")
        recorded = json.loads(samples_path.read_text())
    spawned = recorded["marks"].get("spawned")
    if spawned is None:
        raise RuntimeError(f"the users never all spawned:\n{output[-3000:]}")
    start, end = spawned + SETTLE, spawned + SETTLE + window
    inside = [sample for sample in recorded["samples"] if start <= sample[1] < end]

    def times(name: str) -> list[float]:
        return [sample[2] for sample in inside if sample[0] == name and sample[3]]

    replies, sends, typing = times("reply"), times("send"), times("first typing")
    failures = sum(1 for sample in inside if not sample[3])
    return {
        "users": users, "botDelayMs": delay * 1000, "pacingSeconds": pacing, "windowSeconds": window,
        "expectedSendsPerSecond": users / pacing,
        "sendsPerSecond": len(sends) / window,
        "repliesPerSecond": len(replies) / window,
        "replyMs": {"p50": percentile(replies, 0.50), "p95": percentile(replies, 0.95),
                    "p99": percentile(replies, 0.99), "max": max(replies, default=float("nan")),
                    "mean": statistics.fmean(replies) if replies else float("nan")},
        "sendMs": {"p50": percentile(sends, 0.50), "p99": percentile(sends, 0.99)},
        "firstTypingMs": {"p50": percentile(typing, 0.50), "p99": percentile(typing, 0.99)},
        "failures": failures,
        "worker": {**worker.over(start, end), "peakRssMiB": worker.peak_kib / 1024},
        "emulator": {**server.over(start, end), "peakRssMiB": server.peak_kib / 1024},
        "locustExit": locust.returncode,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| users | sends/s: schedule / done | reply p50 / p95 / p99 / max ms (bot delay) | p50 over the delay "
            "| send p50 / p99 ms | first typing p50 ms | failures | worker CPU (% of a core) | worker RSS / peak MiB "
            "| emulator CPU | emulator RSS MiB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        reply, send = result["replyMs"], result["sendMs"]
        rows.append(
            f"| {result['users']:,} | {result['expectedSendsPerSecond']:.0f} / {result['sendsPerSecond']:.0f} "
            f"({result['sendsPerSecond'] / result['expectedSendsPerSecond']:.2f}x) "
            f"| {reply['p50']:.0f} / {reply['p95']:.0f} / {reply['p99']:.0f} / {reply['max']:.0f} "
            f"({result['botDelayMs']:.0f}) | +{reply['p50'] - result['botDelayMs']:.0f} ms "
            f"({reply['p50'] / result['botDelayMs']:.2f}x) "
            f"| {send['p50']:.1f} / {send['p99']:.1f} | {result['firstTypingMs']['p50']:.1f} | {result['failures']} "
            f"| {result['worker']['cpuPercent']:.0f}% | {result['worker']['rssMiB']:.0f} / "
            f"{result['worker']['peakRssMiB']:.0f} | {result['emulator']['cpuPercent']:.0f}% "
            f"| {result['emulator']['rssMiB']:.0f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="100,500,1000", help="comma-separated user counts")
    parser.add_argument("--bot-delay", type=float, default=0.2, help="the emulator's reply delay, seconds")
    parser.add_argument("--pacing", type=float, default=2.0, help="seconds between one user's sends")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured once all users spawned")
    parser.add_argument("--quick", action="store_true", help="20 and 50 users, a 10 s window; writes nothing")
    parser.add_argument("--out", help="where to write the JSON (default bench/results/locust.json)")
    args = parser.parse_args()
    counts = [20, 50] if args.quick else [int(count) for count in args.users.split(",")]
    window = 10.0 if args.quick else args.window
    started = time.time()
    load_before = os.getloadavg()[0]
    results = [run_one(users, args.bot_delay, args.pacing, window) for users in counts]
    machine = {"cpus": os.cpu_count(), "cpu": cpu_model(),
               "kernel": platform.release(), "python": platform.python_version(),
               "locust": importlib.metadata.version("locust"), "loadBefore": load_before,
               "loadAfter": os.getloadavg()[0],
               "seconds": round(time.time() - started)}
    print(f"Locust users in one worker against the emulator ({machine['cpus']} CPUs, {machine['cpu']}, "
          f"load {load_before:.1f} "
          f"before / {machine['loadAfter']:.1f} after, Python {machine['python']}, Locust {machine['locust']}, "
          f"{machine['seconds']} s):\n")
    print(table(results))
    out = args.out or (None if args.quick else str(BENCH / "results" / "locust.json"))
    if out:
        Path(out).write_text(json.dumps({"machine": machine, "runs": results}, indent=2) + "\n")
        log(f"wrote {out}")
    return 0 if all(result["locustExit"] in (0, 1) for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
