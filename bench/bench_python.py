"""Python side of bench/run.sh: sequential sends through the libdirectline
binding, and the same request through requests.Session and
urllib3.PoolManager (the baselines), against the benchmark's local nginx.

    python3 bench/bench_python.py IMPL ENDPOINT CAPTURE_DIR N WARMUP

IMPL is "binding", "requests" or "urllib3". The baselines send the bytes
libdirectline sends (CAPTURE_DIR/send.{path,headers,body}, recorded by
capture_server.py) and parse the JSON answer, as the binding does. Prints
one JSON line: {"impl", "requests", "seconds", "rps", "p50_us", "p99_us",
"cpu_us"} (cpu_us: the process's CPU time per request).
Every answer is checked; a failure exits with status 1.
"""
import json
import os
import sys
import time

ACTIVITY = {"type": "message", "from": {"id": "bench-user"}, "text": "hello from the benchmark"}
EXPECTED_ID = "x|0000001"


def load_capture(directory):
    with open(os.path.join(directory, "send.path"), encoding="utf-8") as source:
        path = source.read().strip()
    headers = {}
    with open(os.path.join(directory, "send.headers"), encoding="utf-8") as source:
        for line in source:
            if ":" in line:
                name, value = line.rstrip("\n").split(":", 1)
                headers[name] = value.strip()
    with open(os.path.join(directory, "send.body"), "rb") as source:
        body = source.read()
    return path, headers, body


def binding_sender(endpoint, _capture):
    import directline

    client = directline.Client(endpoint, secret="bench-secret")
    conversation = client.start_conversation()

    def send():
        result = conversation.send_activity(ACTIVITY)
        if result.get("id") != EXPECTED_ID:
            raise SystemExit(f"unexpected answer: {result}")

    return send


def requests_sender(endpoint, capture):
    import requests

    path, headers, body = capture
    url = endpoint + path
    session = requests.Session()

    def send():
        response = session.post(url, data=body, headers=headers)
        if response.status_code != 200 or response.json().get("id") != EXPECTED_ID:
            raise SystemExit(f"unexpected answer: {response.status_code} {response.text}")

    return send


def urllib3_sender(endpoint, capture):
    import urllib3

    path, headers, body = capture
    url = endpoint + path
    pool = urllib3.PoolManager()

    def send():
        response = pool.request("POST", url, body=body, headers=headers)
        if response.status != 200 or json.loads(response.data).get("id") != EXPECTED_ID:
            raise SystemExit(f"unexpected answer: {response.status} {response.data!r}")

    return send


SENDERS = {"binding": binding_sender, "requests": requests_sender, "urllib3": urllib3_sender}


def quantile(samples, q):
    ordered = sorted(samples)
    rank = min(len(ordered), max(1, int(q * len(ordered) + 0.999999)))
    return ordered[rank - 1]


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in SENDERS:
        print(__doc__, file=sys.stderr)
        return 2
    impl, endpoint, capture_dir = sys.argv[1:4]
    count, warmup = int(sys.argv[4]), int(sys.argv[5])
    send = SENDERS[impl](endpoint, load_capture(capture_dir))
    for _ in range(warmup):
        send()
    latencies = [0] * count
    clock = time.perf_counter_ns
    cpu_start = time.process_time_ns()
    start = clock()
    for index in range(count):
        t0 = clock()
        send()
        latencies[index] = clock() - t0
    elapsed = (clock() - start) / 1e9
    cpu = time.process_time_ns() - cpu_start
    print(json.dumps({"impl": impl, "requests": count, "seconds": round(elapsed, 6),
                      "rps": round(count / elapsed, 1),
                      "p50_us": round(quantile(latencies, 0.50) / 1e3, 1),
                      "p99_us": round(quantile(latencies, 0.99) / 1e3, 1),
                      "cpu_us": round(cpu / 1e3 / count, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
