"""Records what libdirectline puts on the wire, so the raw baselines of
bench/run.sh (libcurl, requests, urllib3) send exactly the same bytes.

    python3 bench/capture_server.py OUT_DIR   # prints "listening on http://127.0.0.1:PORT"

It answers like the benchmark's nginx (a Conversation object for
POST /v3/directline/conversations, {"id"} for sends and uploads) and, for
each send or upload, writes OUT_DIR/<kind>.headers (one "Name: value" line
per header the client sent, Host and Content-Length left out: the
baselines' HTTP stacks add those themselves) and OUT_DIR/<kind>.body, where
<kind> is "send" or "upload". It exits after the first send and the first
upload have both been recorded, or after 60 s.
"""
import http.server
import json
import os
import sys
import threading

SKIPPED = {"host", "content-length"}


class Capture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    out_dir = "."
    seen: set = set()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path == "/v3/directline/conversations":
            answer = {"conversationId": "bench", "token": "t", "expires_in": 1800}
        elif path.endswith("/activities"):
            answer = {"id": "x|0000001"}
            self.record("send", body)
        elif path.endswith("/upload"):
            answer = {"id": "upload|0000001"}
            self.record("upload", body)
        else:
            self.send_error(404)
            return
        payload = json.dumps(answer, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if {"send", "upload"} <= Capture.seen:
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def record(self, kind, body):
        if kind in Capture.seen:
            return
        lines = [f"{name}: {value}" for name, value in self.headers.items() if name.lower() not in SKIPPED]
        with open(os.path.join(self.out_dir, f"{kind}.headers"), "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        with open(os.path.join(self.out_dir, f"{kind}.body"), "wb") as out:
            out.write(body)
        with open(os.path.join(self.out_dir, f"{kind}.path"), "w", encoding="utf-8") as out:
            out.write(self.path + "\n")
        Capture.seen.add(kind)

    def log_message(self, *args):
        pass


def main():
    Capture.out_dir = sys.argv[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Timer(60, server.shutdown).start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
