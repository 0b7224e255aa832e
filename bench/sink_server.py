"""A minimal Direct Line 3.0 upload sink for benchmarks: it reads each
request body in 1 MiB chunks, discards it, and answers {"id": "..."}.
The emulator keeps every upload in memory and parses it, which would
measure the emulator, not the client.

    python3 bench/sink_server.py   # prints "listening on http://127.0.0.1:PORT"
"""
import http.server
import json
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        remaining = int(self.headers.get("Content-Length", "0"))
        received = 0
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
            received += len(chunk)
        body = json.dumps({"id": f"bench|{received}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
