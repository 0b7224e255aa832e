"""The benchmark harness behind bench/run.sh (which installs what it needs,
builds the library and the C programs, then runs this).

    python3 bench/harness.py --work DIR --library SO [--quick] [--out FILE]

It starts nginx as a stand-in Direct Line 3.0 service (bench/nginx.conf.in),
records what libdirectline puts on the wire (capture_server.py) so that the
baselines send the same bytes, then measures in one run:

  - sequential sends from C (bench_dl) against raw libcurl (bench_curl),
    with the body from memory and, as the library sends it, through a
    read callback;
  - sequential sends from Python through the binding against
    requests.Session and urllib3.PoolManager (bench_python.py);
  - 1, 2, 4 and 8 threads sharing one client and one conversation, against
    raw libcurl with one easy handle per thread;
  - uploads of a 4 MiB file against raw libcurl (nginx logs every upload's
    length, and every byte is checked to have arrived);
  - cold start: dlopen + dl_client_new + first send in a fresh process
    (bench_cold), against dlopen libcurl + first POST;
  - the .so's size, as built and stripped, and the RSS of a process after
    1,000 and after 100,000 sends;
  - the automatic token refresh at scale (bench_refresh): 100,000
    dl_conversation_open with expiring tokens, and 10,000 conversations
    with 20-second tokens kept valid for 60 s through a token service
    (token_service.py) that answers each refresh after a second.

Implementations are interleaved run by run; each figure is the median of
the runs, and each ratio the median of the per-run ratios. Besides
throughput and latency, every rate benchmark reports the process's CPU time
per request, which a busy machine distorts much less. It prints one table
(Markdown) with the ratios to the baselines and the issue's targets marked
PASS or MISS, and writes everything as JSON.
A MISS is reported, never an error: the exit status is nonzero only when a
benchmark could not run (a request failed, nginx did not start, an upload
lost bytes).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
UPLOAD_BYTES = 4 * 1024 * 1024
MIB = 1024 * 1024

# (runs, sequential sends per run, Python sends per run, thread sends per
# run, uploads per run, cold-start processes, RSS first/second counts).
FULL = dict(runs=7, seq=3000, seq_warmup=300, py=1500, py_warmup=150, threads=6000, threads_warmup=300,
            uploads=20, cold=11, rss_first=1000, rss_second=100000,
            refresh_opens=100000, refresh_conversations=10000, refresh_lifetime=20, refresh_seconds=60)
QUICK = dict(runs=1, seq=200, seq_warmup=20, py=100, py_warmup=10, threads=400, threads_warmup=20,
             uploads=2, cold=3, rss_first=100, rss_second=1000,
             refresh_opens=2000, refresh_conversations=200, refresh_lifetime=4, refresh_seconds=4)
# The token service's answer time in the refresh benchmark, seconds.
REFRESH_DELAY = 1.0
THREADS = (1, 2, 4, 8)

TARGETS = {
    "c_seq": "≥ 0.90x libcurl",
    "python": "≥ 3x requests.Session",
    "threads_2": "≥ 1.6x one thread",
    "rss": "≤ 2 MiB growth 1k→100k",
    "size": "stripped < 12 MiB",
    "cold": "< 20 ms",
    "refresh_open": "100k opens < 2 s",
    "refresh_keepup": "0 tokens expired",
}


class HarnessError(Exception):
    pass


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def run_json(command: list[str], env: dict | None = None, timeout: float = 300) -> dict:
    """Runs one benchmark program and returns the JSON line it printed."""
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if completed.returncode != 0:
        raise HarnessError(f"{' '.join(command)} failed ({completed.returncode}):\n"
                           f"{completed.stderr}{completed.stdout}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise HarnessError(f"{' '.join(command)} printed no result:\n{completed.stdout}{completed.stderr}")
    return json.loads(lines[-1])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(numerators: list[dict], denominators: list[dict], key: str = "rps") -> float:
    """The median of the per-run ratios: run i of one side was measured right
    after run i of the other, so drifting load on a shared machine cancels
    out better than in a ratio of medians."""
    return median([a[key] / b[key] for a, b in zip(numerators, denominators)])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Nginx:
    """nginx in a private directory, on a free loopback port."""

    def __init__(self, work: Path):
        self.dir = work / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.port = 0
        self.pid: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upload_log(self) -> Path:
        return self.dir / "upload.log"

    def start(self) -> None:
        user = ""
        if os.geteuid() == 0:
            # Root's workers would otherwise run as nobody, who cannot use
            # this private directory.
            import grp
            import pwd
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        template = (BENCH / "nginx.conf.in").read_text()
        for attempt in range(5):
            self.port = free_port()
            config = (template.replace("@DIR@", str(self.dir)).replace("@PORT@", str(self.port))
                      .replace("@USER@", user))
            (self.dir / "nginx.conf").write_text(config)
            command = [self.binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                       "-c", str(self.dir / "nginx.conf")]
            started = subprocess.run(command, capture_output=True, text=True)
            if started.returncode == 0 and self.wait_ready():
                self.pid = int((self.dir / "nginx.pid").read_text())
                return
            self.stop()
            error_log = self.dir / "error.log"
            detail = started.stderr + (error_log.read_text() if error_log.exists() else "")
            if attempt == 4:
                raise HarnessError(f"nginx did not start:\n{detail}")

    def wait_ready(self) -> bool:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        pid_file = self.dir / "nginx.pid"
        pid = self.pid
        if pid is None and pid_file.exists():
            try:
                pid = int(pid_file.read_text())
            except ValueError:
                pid = None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.pid = None

    def check_routes(self) -> None:
        """The three routes answer what the library expects."""
        expected = {
            "/v3/directline/conversations": '"conversationId":"bench"',
            "/v3/directline/conversations/bench/activities": '"id":"x|0000001"',
            "/v3/directline/conversations/bench/upload?userId=u": '"id":"upload|0000001"',
        }
        for path, fragment in expected.items():
            request = urllib.request.Request(self.endpoint + path, data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read().decode()
                if response.status != 200 or fragment not in body:
                    raise HarnessError(f"nginx answered {path} with {response.status} {body}")
                if response.headers.get("Content-Type") != "application/json":
                    raise HarnessError(f"nginx answered {path} with {response.headers.get('Content-Type')}")
        self.upload_log.write_text("")  # forget the route check's upload

    def uploads_received(self) -> list[tuple[int, int]]:
        """(bytes received: request line + headers + body, Content-Length) of
        each upload answered 200."""
        uploads = []
        for line in self.upload_log.read_text().splitlines():
            status, received, declared = line.split()[:3]
            if status == "200":
                uploads.append((int(received), int(declared) if declared.isdigit() else -1))
        return uploads


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def output(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    versions = {}
    try:
        import requests
        import urllib3
        versions = {"requests": requests.__version__, "urllib3": urllib3.__version__}
    except ImportError:
        pass
    nginx_version = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"], capture_output=True,
                                   text=True).stderr.strip()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "libcurl": output(["curl-config", "--version"]),
        "nginx": nginx_version.replace("nginx version: ", ""),
        **versions,
        "git_commit": output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])),
    }


def rate_summary(results: list[dict]) -> dict:
    return {
        "rps": median([r["rps"] for r in results]),
        "p50_us": median([r["p50_us"] for r in results]),
        "p99_us": median([r["p99_us"] for r in results]),
        "cpu_us": median([r["cpu_us"] for r in results]),
        "runs": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="a scratch directory with the C programs")
    parser.add_argument("--library", required=True, type=Path, help="libdirectline.so (a private copy: "
                        "other builds may replace the original while this runs)")
    parser.add_argument("--library-origin", type=Path, help="where the copy came from, for the record")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that every benchmark runs")
    parser.add_argument("--out", type=Path, help="the JSON results (default bench/results/latest.json, "
                                                 "or quick.json with --quick)")
    parser.add_argument("--command", default="bench/run.sh", help="the command line, for the record")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    out = args.out or BENCH / "results" / ("quick.json" if args.quick else "latest.json")
    work = args.work.resolve()
    library = args.library.resolve()
    bench_dl, bench_curl, bench_cold = (str(work / name) for name in ("bench_dl", "bench_curl", "bench_cold"))
    bench_refresh = str(work / "bench_refresh")
    started = time.time()
    load_before = os.getloadavg()

    nginx = Nginx(work)
    try:
        log(f"starting nginx ({nginx.binary})")
        nginx.start()
        nginx.check_routes()
        endpoint = nginx.endpoint
        log(f"nginx answers on {endpoint}")
        results = measure(args, counts, work, library, nginx, bench_dl, bench_curl, bench_cold)
        results["refresh"] = measure_refresh(counts, bench_refresh)
    except (HarnessError, subprocess.TimeoutExpired) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        nginx.stop()

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": args.command,
        "quick": args.quick,
        "counts": counts,
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "duration_s": round(time.time() - started, 1),
        "library": str(args.library_origin or library),
        "library_sha256": hashlib.sha256(library.read_bytes()).hexdigest(),
        **results,
    }
    table, verdicts = render_table(report)
    report["table_markdown"] = table
    report["targets"] = verdicts
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    machine = report["machine"]
    print()
    print(table)
    print()
    print(f"{machine['nproc']} CPUs ({machine['cpu_model']}), kernel {machine['kernel']}; load average "
          f"{load_before[0]:.2f} before, {report['load_average_after'][0]:.2f} after; "
          f"{report['duration_s']} s{' (quick mode: tiny counts, figures meaningless)' if args.quick else ''}")
    missed = [name for name, verdict in verdicts.items() if verdict["result"] == "MISS"]
    print(f"targets missed: {', '.join(missed) if missed else 'none'} (reported, not an error)")
    print(f"results: {out}")
    return 0


def measure(args, counts, work: Path, library: Path, nginx: Nginx, bench_dl: str, bench_curl: str,
            bench_cold: str) -> dict:
    endpoint = nginx.endpoint
    runs = counts["runs"]

    # What the library sends, so the baselines send the same bytes.
    capture = work / "capture"
    capture.mkdir(exist_ok=True)
    upload_file = work / "upload.bin"
    upload_file.write_bytes(os.urandom(UPLOAD_BYTES))
    log("capturing the library's requests")
    server = subprocess.Popen([sys.executable, str(BENCH / "capture_server.py"), str(capture)],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("listening on "):
            raise HarnessError(f"capture_server.py did not start: {line!r}")
        capture_url = line.split()[-1]
        run_json_free([bench_dl, "capture", capture_url, str(upload_file)])
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    send_path = (capture / "send.path").read_text().strip()
    upload_path = (capture / "upload.path").read_text().strip()
    send_args = [endpoint + send_path, str(capture / "send.headers"), str(capture / "send.body")]

    # Sequential sends from C.
    log(f"C sequential sends: {runs} x {counts['seq']} each, libdirectline and libcurl interleaved")
    c_dl, c_curl, c_curl_readfn = [], [], []
    seq_counts = [str(counts["seq"]), str(counts["seq_warmup"])]
    for _ in range(runs):
        c_dl.append(run_json([bench_dl, "seq", endpoint, *seq_counts]))
        c_curl.append(run_json([bench_curl, "seq", *send_args, *seq_counts]))
        c_curl_readfn.append(run_json([bench_curl, "seq-readfn", *send_args, *seq_counts]))

    # Sequential sends from Python.
    log(f"Python sequential sends: {runs} x {counts['py']} each, binding, requests, urllib3 interleaved")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"), DIRECTLINE_LIBRARY=str(library))
    python: dict[str, list[dict]] = {"binding": [], "requests": [], "urllib3": []}
    for _ in range(runs):
        for impl in python:
            python[impl].append(run_json([sys.executable, str(BENCH / "bench_python.py"), impl, endpoint,
                                          str(capture), str(counts["py"]), str(counts["py_warmup"])], env=env))

    # Threads sharing one client and one conversation.
    log(f"threads {THREADS}: {runs} x {counts['threads']} sends each, libdirectline and libcurl interleaved")
    threads_dl: dict[int, list[dict]] = {t: [] for t in THREADS}
    threads_curl: dict[int, list[dict]] = {t: [] for t in THREADS}
    for _ in range(runs):
        for t in THREADS:
            threads_dl[t].append(run_json([bench_dl, "threads", endpoint, str(t), str(counts["threads"]),
                                           str(counts["threads_warmup"])]))
            threads_curl[t].append(run_json([bench_curl, "threads", *send_args, str(t), str(counts["threads"]),
                                             str(counts["threads_warmup"])]))

    # Uploads.
    log(f"uploads of {UPLOAD_BYTES // MIB} MiB: {runs} x {counts['uploads']} each")
    nginx.upload_log.write_text("")
    up_dl, up_curl = [], []
    for _ in range(runs):
        up_dl.append(run_json([bench_dl, "upload", endpoint, str(upload_file), str(counts["uploads"])]))
        up_curl.append(run_json([bench_curl, "upload", endpoint + upload_path, str(capture / "upload.headers"),
                                 str(upload_file), str(counts["uploads"])]))
    time.sleep(0.2)  # nginx writes the log line as each request ends
    received = nginx.uploads_received()
    expected_uploads = 2 * runs * (counts["uploads"] + 1)  # + each program's warm-up upload
    complete = [got for got, declared in received if declared == UPLOAD_BYTES and got > UPLOAD_BYTES]
    if len(received) != expected_uploads or len(complete) != expected_uploads:
        raise HarnessError(f"nginx logged {len(received)} uploads answered 200, {len(complete)} of them with all "
                           f"{UPLOAD_BYTES} bytes; expected {expected_uploads}")

    # Cold start.
    log(f"cold start: {counts['cold']} fresh processes each")
    libcurl = find_libcurl()
    cold_dl, cold_curl = [], []
    for _ in range(counts["cold"]):
        cold_dl.append(timed_process([bench_cold, "dl", str(library), endpoint]))
        cold_curl.append(timed_process([bench_cold, "curl", libcurl, *send_args]))

    # Size.
    stripped = work / "libdirectline.stripped.so"
    shutil.copyfile(library, stripped)
    subprocess.run(["strip", str(stripped)], check=True)
    size = {"bytes": library.stat().st_size, "stripped_bytes": stripped.stat().st_size}

    # RSS over many sends.
    log(f"RSS: {counts['rss_first']} then {counts['rss_second']} sends in one process")
    rss = run_json([bench_dl, "rss", endpoint, str(counts["rss_first"]), str(counts["rss_second"])], timeout=600)

    def cold_summary(results: list[dict]) -> dict:
        keys = ("total_ms", "dlopen_ms", "setup_ms", "first_send_ms", "second_send_ms", "cpu_ms", "process_ms")
        return {**{key: median([r[key] for r in results]) for key in keys}, "runs": results}

    return {
        "c_sequential": {
            "libdirectline": rate_summary(c_dl), "libcurl": rate_summary(c_curl),
            "libcurl_readfn": rate_summary(c_curl_readfn),
            "ratio": paired_ratio(c_dl, c_curl), "ratio_readfn": paired_ratio(c_dl, c_curl_readfn),
        },
        "python_sequential": {
            **{impl: rate_summary(values) for impl, values in python.items()},
            "ratio_requests": paired_ratio(python["binding"], python["requests"]),
            "ratio_urllib3": paired_ratio(python["binding"], python["urllib3"]),
        },
        "threads": {
            "libdirectline": {str(t): rate_summary(threads_dl[t]) for t in THREADS},
            "libcurl": {str(t): rate_summary(threads_curl[t]) for t in THREADS},
            # Per round: T threads over 1 thread, and libdirectline over libcurl.
            "scaling": {str(t): paired_ratio(threads_dl[t], threads_dl[1]) for t in THREADS},
            "scaling_libcurl": {str(t): paired_ratio(threads_curl[t], threads_curl[1]) for t in THREADS},
            "ratio": {str(t): paired_ratio(threads_dl[t], threads_curl[t]) for t in THREADS},
        },
        "upload": {
            "bytes": UPLOAD_BYTES,
            "uploads_verified": len(complete),
            "libdirectline": {"mib_s": median([r["mib_s"] for r in up_dl]),
                              "median_s": median([r["median_s"] for r in up_dl]), "runs": up_dl},
            "libcurl": {"mib_s": median([r["mib_s"] for r in up_curl]),
                        "median_s": median([r["median_s"] for r in up_curl]), "runs": up_curl},
            "ratio": paired_ratio(up_dl, up_curl, "mib_s"),
        },
        "cold_start": {"libdirectline": cold_summary(cold_dl), "libcurl": cold_summary(cold_curl),
                       "libcurl_path": libcurl},
        "size": size,
        "rss": rss,
    }


def measure_refresh(counts: dict, bench_refresh: str) -> dict:
    """The automatic refresh at scale (bench_refresh.c), against
    token_service.py (it needs no nginx)."""
    log(f"refresh: {counts['refresh_opens']:,} dl_conversation_open with expiring tokens")
    # The endpoint is never contacted: an open sends nothing.
    opens = run_json([bench_refresh, "open", "http://127.0.0.1:9", str(counts["refresh_opens"])], timeout=600)
    log(f"refresh: {counts['refresh_conversations']:,} conversations with {counts['refresh_lifetime']} s tokens, "
        f"a token service answering after {REFRESH_DELAY} s, {counts['refresh_seconds']} s")
    service = subprocess.Popen([sys.executable, str(BENCH / "token_service.py"), "--delay", str(REFRESH_DELAY),
                                "--lifetime", str(counts["refresh_lifetime"])], stdout=subprocess.PIPE, text=True)
    try:
        line = service.stdout.readline() if service.stdout else ""
        if not line.startswith("listening on "):
            raise HarnessError(f"token_service.py did not start: {line!r}")
        keepup = run_json([bench_refresh, "keepup", line.split()[-1], str(counts["refresh_conversations"]),
                           str(counts["refresh_lifetime"]), str(counts["refresh_seconds"])],
                          timeout=counts["refresh_lifetime"] + counts["refresh_seconds"] + 300)
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    return {"open": opens, "keepup": {**keepup, "service_delay_s": REFRESH_DELAY}}


def run_json_free(command: list[str]) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise HarnessError(f"{' '.join(command)} failed:\n{completed.stderr}")


def timed_process(command: list[str]) -> dict:
    """A cold-start run, plus the whole process's wall time (fork to exit)."""
    t0 = time.perf_counter()
    result = run_json(command, timeout=60)
    result["process_ms"] = (time.perf_counter() - t0) * 1e3
    return result


def find_libcurl() -> str:
    """The libcurl.so.4 libdirectline is linked against."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if "libcurl.so.4 " in line and "=>" in line:
            return line.split("=>")[-1].strip()
    return "libcurl.so.4"


def render_table(report: dict) -> tuple[str, dict]:
    """One Markdown table, and the targets' verdicts."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    verdicts: dict[str, dict] = {}

    def verdict(name: str, value: float, passed: bool) -> str:
        result = "PASS" if passed else "MISS"
        verdicts[name] = {"target": TARGETS[name], "value": round(value, 3), "result": result}
        return result

    c = report["c_sequential"]
    dl, curl, readfn = c["libdirectline"], c["libcurl"], c["libcurl_readfn"]
    ratio = c["ratio"]
    rows.append(("C sequential send_activity, req/s", f"{dl['rps']:,.0f}", f"{curl['rps']:,.0f} (libcurl)",
                 f"{ratio:.2f}x", TARGETS["c_seq"], verdict("c_seq", ratio, ratio >= 0.90)))
    rows.append(("C sequential send_activity, req/s", f"{dl['rps']:,.0f}",
                 f"{readfn['rps']:,.0f} (libcurl, body via read callback like the library)",
                 f"{c['ratio_readfn']:.2f}x", "", ""))
    rows.append(("C latency p50 / p99, µs", f"{dl['p50_us']:.0f} / {dl['p99_us']:.0f}",
                 f"{curl['p50_us']:.0f} / {curl['p99_us']:.0f} (libcurl)",
                 f"{dl['p50_us'] / curl['p50_us']:.2f}x / {dl['p99_us'] / curl['p99_us']:.2f}x", "", ""))
    rows.append(("C CPU time per send (user + sys), µs", f"{dl['cpu_us']:.1f}", f"{curl['cpu_us']:.1f} (libcurl)",
                 f"{dl['cpu_us'] / curl['cpu_us']:.2f}x", "", ""))

    py = report["python_sequential"]
    binding = py["binding"]
    ratio = py["ratio_requests"]
    rows.append(("Python send_activity, req/s", f"{binding['rps']:,.0f}",
                 f"{py['requests']['rps']:,.0f} (requests.Session)", f"{ratio:.2f}x", TARGETS["python"],
                 verdict("python", ratio, ratio >= 3.0)))
    rows.append(("Python send_activity, req/s", f"{binding['rps']:,.0f}",
                 f"{py['urllib3']['rps']:,.0f} (urllib3.PoolManager)",
                 f"{py['ratio_urllib3']:.2f}x", "", ""))
    rows.append(("Python latency p50 / p99, µs", f"{binding['p50_us']:.0f} / {binding['p99_us']:.0f}",
                 f"{py['requests']['p50_us']:.0f} / {py['requests']['p99_us']:.0f} (requests)",
                 f"{binding['p50_us'] / py['requests']['p50_us']:.2f}x / "
                 f"{binding['p99_us'] / py['requests']['p99_us']:.2f}x", "", ""))
    rows.append(("Python CPU time per send (user + sys), µs", f"{binding['cpu_us']:.1f}",
                 f"{py['requests']['cpu_us']:.1f} (requests) / {py['urllib3']['cpu_us']:.1f} (urllib3)",
                 f"{binding['cpu_us'] / py['requests']['cpu_us']:.2f}x", "", ""))

    threads = report["threads"]
    for t in THREADS:
        key = str(t)
        dl_t = threads["libdirectline"][key]
        curl_t = threads["libcurl"][key]
        scaling = threads["scaling"][key]
        rows.append((f"{t} thread{'s' if t > 1 else ''}, one client + conversation, req/s",
                     f"{dl_t['rps']:,.0f} ({scaling:.2f}x of 1 thread)",
                     f"{curl_t['rps']:,.0f} ({threads['scaling_libcurl'][key]:.2f}x) (libcurl, handle per thread)",
                     f"{threads['ratio'][key]:.2f}x",
                     TARGETS["threads_2"] if t == 2 else "",
                     verdict("threads_2", scaling, scaling >= 1.6) if t == 2 else ""))
    cpu = {impl: " / ".join(f"{threads[impl][str(t)]['cpu_us']:.0f}" for t in THREADS)
           for impl in ("libdirectline", "libcurl")}
    rows.append((f"CPU time per send with {' / '.join(map(str, THREADS))} threads, µs", cpu["libdirectline"],
                 f"{cpu['libcurl']} (libcurl)", "", "", ""))

    up = report["upload"]
    rows.append((f"upload {up['bytes'] // MIB} MiB (dl_upload_file), MiB/s", f"{up['libdirectline']['mib_s']:,.0f}",
                 f"{up['libcurl']['mib_s']:,.0f} (libcurl)",
                 f"{up['ratio']:.2f}x",
                 f"all bytes received ({up['uploads_verified']} uploads)", ""))

    cold = report["cold_start"]
    cdl, ccurl = cold["libdirectline"], cold["libcurl"]
    rows.append(("cold start: dlopen → first send returns, ms", f"{cdl['total_ms']:.1f}",
                 f"{ccurl['total_ms']:.1f} (dlopen libcurl → first POST)",
                 f"{cdl['total_ms'] / ccurl['total_ms']:.2f}x", TARGETS["cold"],
                 verdict("cold", cdl["total_ms"], cdl["total_ms"] < 20)))
    rows.append(("  of which dlopen / setup / first send, ms",
                 f"{cdl['dlopen_ms']:.1f} / {cdl['setup_ms']:.1f} / {cdl['first_send_ms']:.1f}",
                 f"{ccurl['dlopen_ms']:.1f} / {ccurl['setup_ms']:.1f} / {ccurl['first_send_ms']:.1f}", "", "", ""))
    rows.append(("  CPU time over it / whole process wall time, ms", f"{cdl['cpu_ms']:.1f} / {cdl['process_ms']:.1f}",
                 f"{ccurl['cpu_ms']:.1f} / {ccurl['process_ms']:.1f}", "", "", ""))

    size = report["size"]
    stripped_mib = size["stripped_bytes"] / MIB
    rows.append(("libdirectline.so size, MiB (as built / stripped)",
                 f"{size['bytes'] / MIB:.2f} / {stripped_mib:.2f}", "", "", TARGETS["size"],
                 verdict("size", stripped_mib, stripped_mib < 12)))

    rss = report["rss"]
    growth_mib = rss["growth_kib"] / 1024
    rows.append((f"RSS after {rss['sends_first']:,} / {rss['sends_second']:,} sends, KiB",
                 f"{rss['rss_first_kib']:,} / {rss['rss_second_kib']:,} (+{rss['growth_kib']:,} KiB)", "", "",
                 TARGETS["rss"], verdict("rss", growth_mib, growth_mib <= 2)))

    refresh = report["refresh"]
    opens, keepup = refresh["open"], refresh["keepup"]
    per_100k = opens["seconds"] * 100000 / opens["opens"]
    rows.append((f"{opens['opens']:,} dl_conversation_open with expiring tokens, s (slowest one, ms)",
                 f"{opens['seconds']:.2f} ({opens['slowest_open_ms']:.1f})", "", "", TARGETS["refresh_open"],
                 verdict("refresh_open", per_100k, per_100k < 2)))
    rows.append((f"{keepup['conversations']:,} conversations, {keepup['lifetime_s']} s tokens, refreshes answered "
                 f"after {keepup['service_delay_s']:g} s, {keepup['seconds']:.0f} s: tokens expired "
                 f"(refreshes; most in flight)",
                 f"{keepup['expired']} ({keepup['refreshes']:,}; {keepup['max_in_flight']:,})", "", "",
                 TARGETS["refresh_keepup"],
                 verdict("refresh_keepup", keepup["expired"], keepup["expired"] == 0 and keepup["stopped"] == 0)))

    header = ("benchmark", "libdirectline", "baseline", "vs baseline", "target", "result")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines), verdicts


if __name__ == "__main__":
    sys.exit(main())
