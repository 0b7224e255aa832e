"""A slow Direct Line 3.0 token service for bench_refresh: it answers
`POST /v3/directline/tokens/refresh` after a fixed delay, with many answers
in flight at once (asyncio), and counts the tokens that expired.

    python3 bench/token_service.py [--delay 1.0] [--lifetime 20]
    # prints "listening on http://127.0.0.1:PORT"

Tokens carry their conversation and expiry, "bench.<conversation>.<n>.<ms>"
(<ms>: the expiry, milliseconds since the epoch), so the service needs no
table to check them, and bench_refresh opens its conversations with tokens
it makes the same way. The service counts as expired:

  - a refresh that presents an expired token (answered 403 TokenExpired at
    once, as Direct Line does);
  - a conversation whose newest token lapses with no refresh of it arriving
    in time (a sweep every 100 ms; once per lapse).

`GET /_stats` answers {"refreshes", "expiredRefused", "lapsed",
"conversations", "inFlight", "maxInFlight", "connections" (open now),
"connectionsOpened"}; `POST
/_stats/reset` zeroes the counters. Standard library only; the emulator (one
thread per request) is not built for a thousand answers in flight.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time


class Service:
    def __init__(self, delay: float, lifetime: int) -> None:
        self.delay = delay
        self.lifetime = lifetime
        self.newest: dict[str, int] = {}  # conversation -> newest expiry (epoch ms)
        self.lapsed_now: set[str] = set()
        self.reset()
        self.in_flight = 0
        self.connections = 0
        self.connections_opened = 0

    def reset(self) -> None:
        self.refreshes = 0
        self.expired_refused = 0
        self.lapsed = 0
        self.max_in_flight = 0

    def stats(self) -> dict:
        return {"refreshes": self.refreshes, "expiredRefused": self.expired_refused, "lapsed": self.lapsed,
                "conversations": len(self.newest), "inFlight": self.in_flight,
                "maxInFlight": self.max_in_flight, "connections": self.connections,
                "connectionsOpened": self.connections_opened}

    async def refresh(self, authorization: str) -> tuple[int, dict]:
        token = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "bench" or not parts[2].isdigit() or not parts[3].isdigit():
            return 403, {"error": {"code": "BadArgument", "message": "Invalid token or secret"}}
        conversation, generation, expires = parts[1], int(parts[2]), int(parts[3])
        now = time.time() * 1000
        if now > expires:
            self.expired_refused += 1
            return 403, {"error": {"code": "TokenExpired", "message": "Token expired"}}
        self.newest[conversation] = max(self.newest.get(conversation, 0), expires)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        expires = int(time.time() * 1000) + self.lifetime * 1000
        self.newest[conversation] = max(self.newest[conversation], expires)
        self.lapsed_now.discard(conversation)
        self.refreshes += 1
        fresh = f"bench.{conversation}.{generation + 1}.{expires}"
        return 200, {"conversationId": conversation, "token": fresh, "expires_in": self.lifetime}

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.time() * 1000
            for conversation, expires in self.newest.items():
                if expires < now and conversation not in self.lapsed_now:
                    self.lapsed_now.add(conversation)
                    self.lapsed += 1

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.connections_opened += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                if method == "POST" and path == "/v3/directline/tokens/refresh":
                    status, body = await self.refresh(headers.get("authorization", ""))
                elif path == "/_stats" and method == "GET":
                    status, body = 200, self.stats()
                elif path == "/_stats/reset" and method == "POST":
                    self.reset()
                    status, body = 200, self.stats()
                else:
                    status, body = 404, {"error": {"code": "NotFound", "message": path}}
                data = json.dumps(body).encode()
                reason = {200: "OK", 403: "Forbidden", 404: "Not Found"}[status]
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self.connections -= 1
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before each refresh is answered")
    parser.add_argument("--lifetime", type=int, default=20, help="seconds a refreshed token lives")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    service = Service(args.delay, args.lifetime)
    server = await asyncio.start_server(service.serve, "127.0.0.1", 0, backlog=4096)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    sweeper = asyncio.ensure_future(service.sweep())
    async with server:
        await server.serve_forever()
    sweeper.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
