"""Command line: `python3 -m emulator [--port 3978] ...`."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading

try:
    from .server import DEFAULT_SECRET, create_server
except ModuleNotFoundError as missing:  # the stream's one dependency outside the standard library
    if missing.name != "websockets":
        raise
    sys.exit("directline-emulator: cannot start: the WebSocket stream needs the websockets package "
             "(python3 -m pip install 'websockets>=17,<18')")
from .state import DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_TOKEN_LIFETIME, MAX_REPLY_DELAY_SECONDS, ReplyDelay
from .stream import DEFAULT_BACKLOG


def _reply_delay(text: str) -> ReplyDelay:
    """`--reply-delay`: `SECONDS` or `MIN:MAX`, each from 0 to 3600, MIN <= MAX."""
    parts = text.split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        numbers = [float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not SECONDS or MIN:MAX: {text!r}") from None
    if not all(0 <= number <= MAX_REPLY_DELAY_SECONDS for number in numbers):  # NaN fails too
        raise argparse.ArgumentTypeError(f"seconds must be from 0 to {MAX_REPLY_DELAY_SECONDS:g}: {text!r}")
    if len(numbers) == 1:
        return numbers[0]
    if numbers[0] > numbers[1]:
        raise argparse.ArgumentTypeError(f"MIN must not be more than MAX: {text!r}")
    return numbers[0], numbers[1]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m emulator",
        description="Local Direct Line 3.0 + 1.1 service emulator with an echo bot.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=3978, help="port; 0 picks a free one")
    parser.add_argument("--stream-port", type=int, default=0,
                        help="port of the WebSocket stream (streamUrl); 0 (the default) picks a free one")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the Direct Line secret")
    parser.add_argument("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME,
                        metavar="SECONDS", help="lifetime of issued tokens")
    parser.add_argument("--max-upload-bytes", type=int, default=DEFAULT_MAX_UPLOAD_BYTES,
                        metavar="BYTES", help="largest accepted upload request body")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    parser.add_argument("--reply-delay", type=_reply_delay, default=0.0, metavar="SECONDS|MIN:MAX",
                        help="answer sends at once and store the bot's reply this many seconds later "
                             "(MIN:MAX: uniformly random per reply); the config replyDelaySeconds")
    parser.add_argument("--no-typing", action="store_true",
                        help="no typing activity before the bot's replies (config typingBeforeReply false)")
    parser.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG, metavar="N",
                        help=f"listen queue of the HTTP port and of the stream's (default {DEFAULT_BACKLOG})")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.token_lifetime < 1:
        parser.error("--token-lifetime must be at least 1")
    if args.max_upload_bytes < 0:
        parser.error("--max-upload-bytes must not be negative")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be from 0 to 65535")
    if not 0 <= args.stream_port <= 65535:
        parser.error("--stream-port must be from 0 to 65535")
    if not 1 <= args.backlog <= 65535:
        parser.error("--backlog must be from 1 to 65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        server = create_server(host=args.host, port=args.port, secret=args.secret,
                               token_lifetime=args.token_lifetime,
                               max_upload_bytes=args.max_upload_bytes,
                               tls_cert=args.tls_cert, tls_key=args.tls_key, quiet=args.quiet,
                               stream_port=args.stream_port, reply_delay_seconds=args.reply_delay,
                               typing_before_reply=not args.no_typing, backlog=args.backlog)
    except (OSError, ssl.SSLError) as error:
        print(f"directline-emulator: cannot start: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                               daemon=True)
    serving.start()
    print(f"directline-emulator listening on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    serving.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
