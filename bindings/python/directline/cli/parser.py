"""The ``directline`` command line: its options, its help and its exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from .. import __version__
from .commands import (
    SECRET_ENV,
    TOKEN_ENDPOINT_ENV,
    TOKEN_ENV,
    UsageError,
    run_send,
    run_tail,
    run_token_generate,
    run_token_refresh,
    run_upload,
)
from .output import PROG, print_json_error

DEFAULT_ENDPOINT = "https://directline.botframework.com"
ENDPOINT_ENV = "DIRECTLINE_ENDPOINT"
PROTOCOL_ENV = "DIRECTLINE_PROTOCOL"

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_USAGE = 2
EXIT_STATUS_BASE = 10
EXIT_STATUS_MAX = 125
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

# Options that would take a credential as a value: refused before argparse
# sees them, so that argparse cannot echo the value (or take "--secret" as an
# abbreviation of "--secret-file").
_CREDENTIAL_OPTIONS = ("--secret", "--token")

EPILOG = f"""\
credentials:
  The bot's secret is read from ${SECRET_ENV} or --secret-file FILE,
  a token from ${TOKEN_ENV} or --token-file FILE ("-": standard input).
  They are never accepted as an option value, where they would be kept in
  your shell history and be visible to other users in `ps`. Nothing printed
  contains them (except the output of `token`, which prints a token).
  A token endpoint, a URL that hands out tokens (a bot's token service, or
  Copilot Studio's .../directline/token?api-version=...), is no secret: give
  it as --token-endpoint URL or ${TOKEN_ENDPOINT_ENV}. With a Copilot
  Studio URL no --endpoint is needed: its regional settings name the host.
  One of --secret-file, --token-file and --token-endpoint at most; with none,
  the environment is read: the secret first, then the token, then the
  token endpoint.

environment:
  {ENDPOINT_ENV}   the default --endpoint (else the public service,
                        {DEFAULT_ENDPOINT}, or with a Copilot Studio
                        token endpoint the host its region names)
  {PROTOCOL_ENV}   the default --protocol (else 3.0)

exit codes:
  0        success (tail: the conversation ended, or its idle --timeout passed)
  1        send/upload: no reply arrived within --timeout
  2        usage error: bad options, no credential, unreadable credential file
  10+N     the library's error with status N, e.g.
           11 DL_ERR_INVALID_ARGUMENT (also a bad --activity or --state file)
           14 DL_ERR_IO (a file that cannot be read)   15 DL_ERR_NETWORK
           16 DL_ERR_TIMEOUT   19 DL_ERR_UNAUTHORIZED   20 DL_ERR_FORBIDDEN
           21 DL_ERR_TOKEN_EXPIRED   22 DL_ERR_NOT_FOUND   24 DL_ERR_THROTTLED
           25 DL_ERR_BOT   26 DL_ERR_SERVICE
           32 DL_ERR_UNSUPPORTED (tail --mode websocket where impossible)
           (full table: docs/cli.md)
  130      interrupted (Ctrl-C)
  141      standard output was closed early (broken pipe)

See docs/cli.md for examples and the --json output shapes.
"""


def exit_code_for_status(status: int) -> int:
    """The exit code for a library error of status ``status``: 10 + status (capped at 125)."""
    return min(EXIT_STATUS_BASE + max(int(status), 0), EXIT_STATUS_MAX)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors follow ``--json``, and that never abbreviates options."""

    json_errors = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if kwargs.get("description"):
            kwargs["description"] = textwrap.fill(kwargs["description"], 79)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if Parser.json_errors:
            print_json_error(sys.stderr, {"name": "USAGE", "message": message, "exitCode": EXIT_USAGE})
            sys.exit(EXIT_USAGE)
        super().error(message)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0: {text!r}")
    return value


POLL_INTERVAL_MIN = 0.05
POLL_INTERVAL_MAX = 3600.0
"""The range of ``tail --poll-interval``, in seconds: the library's ``pollIntervalMs``."""


def _poll_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not POLL_INTERVAL_MIN <= value <= POLL_INTERVAL_MAX:
        raise argparse.ArgumentTypeError(
            f"must be from {POLL_INTERVAL_MIN:g} to {POLL_INTERVAL_MAX:g} seconds: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _header(text: str) -> tuple[str, str]:
    """``--header 'NAME: VALUE'`` as (NAME, VALUE): split at the first ':', the value's
    surrounding spaces stripped. The text is never echoed: a header may carry a key."""
    name, colon, value = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError("expected 'NAME: VALUE' (no ':' in the value given)")
    return name, value.strip()


def _add_common(parser: argparse.ArgumentParser, *, user_id: bool = True) -> None:
    """Options every subcommand takes."""
    group = parser.add_argument_group("connection")
    group.add_argument("--endpoint", metavar="URL", default=os.environ.get(ENDPOINT_ENV) or None,
                       help=f"the Direct Line service (default: ${ENDPOINT_ENV}, else {DEFAULT_ENDPOINT})")
    group.add_argument("--protocol", choices=("3.0", "1.1"), default=None,
                       help=f"Direct Line protocol version (default: ${PROTOCOL_ENV}, else 3.0)")
    group.add_argument("--http-timeout", metavar="SECONDS", type=_positive_float, default=None,
                       help="time limit of each HTTP request (library default: 30)")
    group.add_argument("--retries", metavar="N", type=_positive_int, default=None,
                       help="attempts per request that provably was not processed (library default: 4)")
    group.add_argument("--ca-file", metavar="FILE", default=None,
                       help="PEM bundle to verify the service's certificate with")
    group.add_argument("--bot-agent", metavar="TEXT", default=None,
                       help="identify the application in the x-ms-bot-agent header of every request "
                            "(printable ASCII, no parentheses or backslash)")
    group.add_argument("--header", metavar="'NAME: VALUE'", action="append", dest="headers", type=_header,
                       default=None,
                       help="send this header with every Direct Line request (repeatable); headers the "
                            "library sets itself, such as Authorization, are refused")
    group.add_argument("--regional-settings-endpoint", metavar="URL", default=None,
                       help="read the Direct Line host from this regional channel settings URL "
                            "(not with --endpoint)")
    credentials = parser.add_argument_group(
        "credentials (secrets and tokens never as an option value: see below)").add_mutually_exclusive_group()
    credentials.add_argument("--secret-file", metavar="FILE",
                             help=f"read the bot's secret from FILE ('-': stdin) instead of ${SECRET_ENV}")
    credentials.add_argument("--token-file", metavar="FILE",
                             help=f"read a token from FILE ('-': stdin) instead of ${TOKEN_ENV}")
    credentials.add_argument("--token-endpoint", metavar="URL",
                             help=f"get a token from this URL for each new conversation, instead of "
                                  f"${TOKEN_ENDPOINT_ENV} (e.g. Copilot Studio's token endpoint)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print one JSON object per line (results and replies); errors as JSON on stderr")
    if user_id:
        parser.add_argument("--user-id", metavar="ID", default="user",
                            help="the user the messages come from (default: user)")


def _add_conversation(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """--state/--conversation/--save-state, for commands that talk in a conversation."""
    group = parser.add_argument_group("conversation" + ("" if required else " (default: start a new one)"))
    which = group.add_mutually_exclusive_group(required=required)
    which.add_argument("--state", metavar="FILE",
                       help="resume the conversation saved in FILE (by --save-state or Conversation.state())")
    which.add_argument("--conversation", metavar="ID",
                       help=f"use conversation ID, with the token from ${TOKEN_ENV}/--token-file "
                            "(or the secret)")
    group.add_argument("--watermark", metavar="W",
                       help="with --conversation: read the activities after W (default: "
                            + ("from the start" if required else "only those after this command's send")
                            + ")")
    group.add_argument("--save-state", metavar="FILE",
                       help="afterwards, write the conversation's state to FILE (mode 0600: it holds the token)")
    if not required:
        group.add_argument("--locale", metavar="TAG",
                           help="3.0: the user's language as a BCP 47 tag (e.g. fr-FR), sent when starting "
                                "the new conversation (not with --state or --conversation)")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replies")
    group.add_argument("--no-wait", dest="wait", action="store_false",
                       help="do not wait for the bot's replies")
    group.add_argument("--timeout", metavar="SECONDS", type=_positive_float, default=10.0,
                       help="wait at most this long for a reply (default: 10)")
    group.add_argument("--linger", metavar="SECONDS", type=_positive_float, default=0.5,
                       help="after a reply, keep printing further replies until this long passes "
                            "without one (default: 0.5)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``directline`` command."""
    parser = Parser(
        prog=PROG, epilog=EPILOG,
        description="Talk to a bot over Direct Line (Microsoft Bot Framework) with libdirectline.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    send = commands.add_parser(
        "send", epilog=EPILOG, help="send a text or an activity, and print the bot's replies",
        description="Send a text, or an activity (3.0) / message (1.1) from a JSON file, then print the "
                    "bot's replies.")
    send.add_argument("text", nargs="?", help="the text to send (quote it if it has spaces)")
    send.add_argument("--activity", metavar="FILE",
                      help="send the JSON object in FILE ('-': stdin); a missing type is \"message\" "
                           "and a missing from is --user-id")
    _add_common(send)
    _add_conversation(send, required=False)
    _add_wait(send)
    send.set_defaults(run=run_send)

    upload = commands.add_parser(
        "upload", epilog=EPILOG, help="upload files, and print the bot's replies",
        description="Upload one or more files as attachments, then print the bot's replies. One file "
                    "without --text is the raw body of one request; otherwise one multipart request "
                    "carries the files and, with --text, the message.")
    upload.add_argument("files", nargs="+", metavar="FILE", help="the files to upload")
    upload.add_argument("--text", help="the text of the message carrying the files")
    upload.add_argument("--content-type", metavar="TYPE",
                        help="the MIME type of every file (default: guessed from each file name)")
    upload.add_argument("--max-upload-bytes", metavar="N", type=_positive_int, default=None,
                        help="the largest request body allowed (library default: 4194304)")
    progress = upload.add_argument_group("progress").add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="draw a progress bar on stderr (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never draw the progress bar")
    _add_common(upload)
    _add_conversation(upload, required=False)
    _add_wait(upload)
    upload.set_defaults(run=run_upload)

    tail = commands.add_parser(
        "tail", epilog=EPILOG, help="print a conversation's activities as they arrive, until Ctrl-C",
        description="Print the activities of a conversation as they arrive, through the conversation's "
                    "listener (the 3.0 WebSocket stream where the library can, else polling): the bot's "
                    "replies, with --include-own the messages of --user-id too, with --typing the typing "
                    "indicators. Runs until Ctrl-C (exit 130), the end of the conversation (exit 0), or "
                    "--timeout seconds with nothing printed (exit 0).")
    receiving = tail.add_argument_group("receiving")
    receiving.add_argument("--mode", choices=("auto", "websocket", "polling"), default="auto",
                           help="how to receive: auto (the WebSocket stream on 3.0 where the library "
                                "can, else polling), websocket (fails with exit 32 where impossible), "
                                "or polling (default: auto)")
    receiving.add_argument("--poll-interval", metavar="SECONDS", type=_poll_interval, default=1.0,
                           help=f"while polling, the time between polls that bring nothing "
                                f"({POLL_INTERVAL_MIN:g} to {POLL_INTERVAL_MAX:g}, default: 1)")
    receiving.add_argument("--include-own", action="store_true",
                           help="also print the messages of --user-id, as 'USER-ID: TEXT'")
    receiving.add_argument("--typing", action="store_true",
                           help="also print typing indicators, as 'NAME is typing\u2026' (they come "
                                "over the WebSocket stream only)")
    receiving.add_argument("--timeout", metavar="SECONDS", type=_positive_float, default=None,
                           help="stop (exit 0) once this long passes with nothing printed, counted "
                                "from the listener's first read (default: never)")
    _add_common(tail)
    _add_conversation(tail, required=True)
    tail.set_defaults(run=run_tail)

    token = commands.add_parser("token", epilog=EPILOG, help="generate or refresh a token",
                                description="Generate a token from the secret, or refresh a token.")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    generate = token_commands.add_parser(
        "generate", epilog=EPILOG, help="exchange the secret for a token (or get one from a token endpoint)",
        description="Exchange the bot's secret for a token for a new conversation, without starting "
                    "it, and print the token (with --json: the service's answer). With a token endpoint "
                    "instead of the secret, print the token it hands out.")
    generate.add_argument("--user-id", metavar="ID",
                          help="3.0: the user id embedded in the token (must start with dl_)")
    generate.add_argument("--user-name", metavar="NAME", help="3.0: the user's display name")
    generate.add_argument("--trusted-origin", metavar="URL", action="append", dest="trusted_origins",
                          help="3.0: an origin allowed to use the token (repeatable)")
    _add_common(generate, user_id=False)
    generate.set_defaults(run=run_token_generate)
    refresh = token_commands.add_parser(
        "refresh", epilog=EPILOG, help=f"renew the token in ${TOKEN_ENV} or --token-file",
        description=f"Renew the token read from ${TOKEN_ENV} or --token-file and print the new one "
                    "(with --json: the service's answer). 1.1 renews through the token's "
                    "conversation, which is started first if need be.")
    _add_common(refresh, user_id=False)
    refresh.set_defaults(run=run_token_refresh)
    return parser


def refuse_credential_arguments(argv: Sequence[str]) -> None:
    for argument in argv:
        if argument == "--":
            return
        name = argument.split("=", 1)[0]
        if name in _CREDENTIAL_OPTIONS:
            kind = name[2:]
            env = SECRET_ENV if kind == "secret" else TOKEN_ENV
            raise UsageError(f"{name} is not accepted: a {kind} is never taken on the command line, where "
                             f"shell history and `ps` would show it; set {env} or use {name}-file FILE")


def unrecognized(extras: Iterable[str]) -> str:
    """The message for unrecognized arguments, naming options but not showing values."""
    extras = list(extras)
    options = [argument.split("=", 1)[0] for argument in extras if argument.startswith("-") and argument != "-"]
    others = len(extras) - len(options)
    parts = [" ".join(options)] if options else []
    if others:
        parts.append(f"{others} other argument(s) (not shown; quote a text with spaces)")
    return "unrecognized arguments: " + ", ".join(parts)
