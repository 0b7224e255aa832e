"""Listening benchmarks (bench/listen.sh builds the library, then runs this).

    python3 bench/listen.py [--library SO] [--quick] [--out FILE] [--only latency|scale]

Compiles bench/bench_listen.c against the library and runs it against the
emulator (`python3 -m emulator --port 0 --quiet`, a fresh one per run,
started here and stopped by its own PID, never by name):

  - delivery latency, from the start of dl_send_text to the reply handed
    out by dl_conversation_next (waiting on the descriptor with poll()),
    over the WebSocket and by polling every 1000 and 250 ms, with the
    requests the emulator logged per reply;
  - 1,000 conversations listening at once in one process, over the
    WebSocket and by polling every second: time to be online, threads, RSS
    and descriptors per conversation, CPU while idle, then one message on
    each and the time until every reply was handed out; and the emulator's
    own CPU over each phase, to tell when it is what limits.

It prints Markdown tables (figures and ratios; nothing is asserted) and
writes every figure as JSON (bench/results/listen.json; --quick, which
uses tiny counts to check that everything still runs, writes nothing unless
--out is given). The exit status is nonzero only when a run failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECRET = "emulator-secret"
BANNER = "directline-emulator listening on "

FULL = dict(rounds=200, lanes=4, conversations=1000, idle=20, senders=4)
QUICK = dict(rounds=8, lanes=2, conversations=20, idle=1, senders=2)
# (mode, pollIntervalMs, the longest random wait before each send, ms). A
# polled send lands at a random point of the poll cycle; the WebSocket does
# not care when, and gets a short wait so that lanes do not send in step.
LATENCY_RUNS = (("websocket", 0, 100), ("polling", 1000, 1000), ("polling", 250, 250))
SCALE_RUNS = (("websocket", 0), ("polling", 1000))
# Descriptors for the emulator: one per stream or keep-alive connection.
EMULATOR_NOFILE = 65536


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


# With --emulator-backlog: the emulator as `python3 -m emulator` runs it,
# with both listen queues (HTTP and stream, 128 each) set to BACKLOG. The
# emulator's sources are left as they are.
BACKLOG_LAUNCHER = """
import socket, sys
import emulator.server, emulator.stream
backlog = int(sys.argv.pop(1))
emulator.server.EmulatorServer.request_queue_size = backlog
create_server = socket.create_server
def create_server_with_backlog(*args, **kwargs):
    kwargs["backlog"] = backlog
    return create_server(*args, **kwargs)
emulator.stream.socket.create_server = create_server_with_backlog
from emulator.__main__ import main
sys.exit(main())
"""


class Emulator:
    """`python3 -m emulator` on a free port; stopped by its own PID."""

    backlog = 0  # 0: the emulator's own listen queues

    def __init__(self) -> None:
        def raise_limit() -> None:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            wanted = EMULATOR_NOFILE if hard == resource.RLIM_INFINITY else max(hard, EMULATOR_NOFILE)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))  # root only
            except (ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        launch = ["-m", "emulator"] if not Emulator.backlog else ["-c", BACKLOG_LAUNCHER, str(Emulator.backlog)]
        self.process = subprocess.Popen(
            [sys.executable, *launch, "--port", "0", "--secret", SECRET, "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=raise_limit)
        line = self.process.stdout.readline().strip() if self.process.stdout else ""
        if not line.startswith(BANNER):
            self.stop()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = line[len(BANNER):]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run(program: Path, arguments: list[str]) -> dict:
    """One run of bench_listen against a fresh emulator."""
    emulator = Emulator()
    try:
        command = [str(program), arguments[0], emulator.url, *arguments[1:], str(emulator.process.pid)]
        log(" ".join(command))
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        emulator.stop()


def compile_program(library: Path, work: Path) -> Path:
    out = work / "bench_listen"
    curl = subprocess.run(["pkg-config", "--cflags", "--libs", "libcurl"], capture_output=True, text=True,
                          check=True).stdout.split()
    subprocess.run(["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'include'}",
                    str(BENCH / "bench_listen.c"), f"-L{library.parent}", "-ldirectline",
                    f"-Wl,-rpath,{library.parent}", *curl, "-lpthread", "-o", str(out)], check=True)
    return out


def machine() -> dict:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break

    def output(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "libcurl": output(["pkg-config", "--modversion", "libcurl"]),
            "commit": output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])}


def ratio(a: float, b: float) -> str:
    return f"{a / b:,.0f}x" if b > 0 and a / b >= 10 else (f"{a / b:.2f}x" if b > 0 else "")


def latency_table(runs: list[dict]) -> str:
    ws = next((r for r in runs if r["mode"] == "websocket"), None)
    rows = ["| listening | p50 ms | p95 ms | p99 ms | max ms | p50 / p99 vs WebSocket | send alone p50 ms "
            "| listening requests per reply | per conversation-minute | emulator CPU ms per reply |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        name = "WebSocket" if r["mode"] == "websocket" else f"polling every {r['pollIntervalMs']} ms"
        versus = ("" if r is ws or ws is None
                  else f"{ratio(r['p50_ms'], ws['p50_ms'])} / {ratio(r['p99_ms'], ws['p99_ms'])}")
        rows.append(f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
                    f"| {versus} | {r['send_p50_ms']:.1f} | {r['listen_requests_per_reply']:.2f} "
                    f"| {r['listen_requests_per_conversation_minute']:.1f} | {r['emulator_cpu_ms_per_reply']:.1f} |")
    return "\n".join(rows)


def scale_table(runs: list[dict]) -> str:
    def percent(part: float, whole: float) -> str:
        return f"{100 * part / whole:.0f}%" if whole > 0 and part >= 0 else ""

    lines = [("conversations listening", lambda r: f"{r['conversations']:,}"),
             ("time until all online, s (per conversation p50 / p99, ms)",
              lambda r: f"{r['online_s']:.2f} ({r['online_p50_ms']:.0f} / {r['online_p99_ms']:.0f})"),
             ("threads: before / all online / idle / after the frees",
              lambda r: f"{r['threads_before']} / {r['threads_online']} / {r['threads_idle']} / "
                        f"{r['threads_after_free']}"),
             ("connections the emulator's full accept queue turned away (ListenOverflows)",
              lambda r: f"{r['listen_overflows']:,}"),
             ("descriptors before / all online (of which sockets)",
              lambda r: f"{r['fds_before']} / {r['fds_online']} ({r['sockets_online']})"),
             ("RSS per conversation (started and listening), KiB",
              lambda r: f"{r['rss_per_conversation_kib']:.1f}"),
             ("  of which listening, KiB", lambda r: f"{r['rss_per_listener_kib']:.1f}"),
             ("RSS before / all online, MiB",
              lambda r: f"{r['rss_before_kib'] / 1024:.1f} / {r['rss_online_kib'] / 1024:.1f}"),
             ("idle CPU over {idle} s: total s (% of one core)",
              lambda r: f"{r['idle_cpu_s']:.3f} ({r['idle_cpu_percent']:.2f}%)"),
             ("idle CPU per conversation, µs a second",
              lambda r: f"{r['idle_cpu_s'] * 1e6 / r['idle_s'] / r['conversations']:.2f}"),
             ("wake-ups a second while idle (context switches)", lambda r: f"{r['idle_wakeups_per_s']:.0f}"),
             ("hand-outs while idle (should be 0)", lambda r: f"{r['idle_handouts']}"),
             ("requests a second while idle", lambda r: f"{r['idle_requests_per_s']:.0f}"),
             ("one message on each: sends done / every reply handed out, s",
              lambda r: f"{r['burst_sent_s']:.2f} / {r['burst_all_replied_s']:.2f}"),
             ("  per conversation, send start → reply handed out, p50 / p99 / max ms",
              lambda r: f"{r['reply_p50_ms']:.0f} / {r['reply_p99_ms']:.0f} / {r['reply_max_ms']:.0f}"),
             ("  CPU of this process over it, s", lambda r: f"{r['burst_cpu_s']:.2f}"),
             ("emulator CPU while coming online (% of its wall time)",
              lambda r: f"{r['online_emulator_cpu_s']:.2f} s ({percent(r['online_emulator_cpu_s'], r['online_s'])})"),
             ("emulator CPU while idle", lambda r: f"{r['idle_emulator_cpu_s']:.2f} s "
                                                   f"({percent(r['idle_emulator_cpu_s'], r['idle_s'])})"),
             ("emulator CPU during the burst",
              lambda r: f"{r['burst_emulator_cpu_s']:.2f} s "
                        f"({percent(r['burst_emulator_cpu_s'], r['burst_all_replied_s'])})"),
             ("emulator threads / RSS MiB while idle",
              lambda r: f"{r['emulator_threads']} / {r['emulator_rss_kib'] / 1024:.0f}")]
    names = ["WebSocket" if r["mode"] == "websocket" else f"polling every {r['pollIntervalMs']} ms" for r in runs]
    rows = ["| figure | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(runs)]
    idle = runs[0]["idle_s"] if runs else 0
    for label, cell in lines:
        rows.append(f"| {label.format(idle=round(idle))} | " + " | ".join(cell(r) for r in runs) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, default=ROOT / ".build/release/libdirectline.so")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that it runs; figures mean nothing")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", choices=("latency", "scale"))
    parser.add_argument("--conversations", type=int, help="listeners in the scale runs (default 1,000)")
    parser.add_argument("--emulator-backlog", type=int, default=0,
                        help="the emulator's listen queues (its own: 128), to tell them from the library")
    args = parser.parse_args()
    Emulator.backlog = args.emulator_backlog
    counts = dict(QUICK if args.quick else FULL)
    if args.conversations:
        counts["conversations"] = args.conversations
    out = args.out or (None if args.quick else BENCH / "results/listen.json")
    if not args.library.exists():
        print(f"bench/listen.py: no library at {args.library}", file=sys.stderr)
        return 1
    started = time.time()
    load_before = os.getloadavg()
    report: dict = {"machine": machine(), "counts": counts, "emulator_backlog": args.emulator_backlog or 128,
                    "load_average_before": load_before}
    with tempfile.TemporaryDirectory(prefix="dl-listen.") as work:
        program = compile_program(args.library.resolve(), Path(work))
        try:
            if args.only in (None, "latency"):
                report["latency"] = [
                    run(program, ["latency", mode, str(interval or 1000), str(counts["rounds"]),
                                  str(counts["lanes"]), str(gap)])
                    for mode, interval, gap in LATENCY_RUNS]
            if args.only in (None, "scale"):
                report["scale"] = [
                    run(program, ["scale", mode, str(interval or 1000), str(counts["conversations"]),
                                  str(counts["idle"]), str(counts["senders"])])
                    for mode, interval in SCALE_RUNS]
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as error:
            print(f"bench/listen.py: {error}", file=sys.stderr)
            return 1
    report["load_average_after"] = os.getloadavg()
    report["duration_s"] = round(time.time() - started, 1)
    m = report["machine"]
    print(f"\n{m['cpus']} CPUs, {m['cpu']}, kernel {m['kernel']}, libcurl {m['libcurl']}, Python {m['python']}, "
          f"commit {m['commit']}; {report['duration_s']} s, load average "
          f"{load_before[0]:.1f} before, {report['load_average_after'][0]:.1f} after\n")
    if "latency" in report:
        report["latency_table"] = latency_table(report["latency"])
        print(report["latency_table"] + "\n")
    if "scale" in report:
        report["scale_table"] = scale_table(report["scale"])
        print(report["scale_table"])
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
