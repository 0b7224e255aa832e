"""The ``directline`` command: talk to a bot over Direct Line from a shell.

Run as ``python3 -m directline`` or, once installed with pip, ``directline``.
Subcommands: ``send``, ``upload``, ``tail`` and ``token generate|refresh``;
``directline COMMAND --help`` describes each, docs/cli.md has examples.

Secrets and tokens are read from the environment (``DIRECTLINE_SECRET``,
``DIRECTLINE_TOKEN``) or from files (``--secret-file``, ``--token-file``),
never from an argument value, which would end up in shell history and in
``ps``. Nothing this command prints contains them, except ``token`` output,
whose purpose is to print a token.

Exit codes: 0 success; 1 no reply arrived within ``--timeout``; 2 usage
(bad options, no credential); 10 + the library's status for its errors
(``DL_ERR_INVALID_ARGUMENT`` = 1 gives 11, ``DL_ERR_BOT`` = 15 gives 25);
130 interrupted (Ctrl-C); 141 standard output closed early.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import textwrap
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, NoReturn

from . import __version__
from ._native import _milliseconds
from .client import Client, Conversation
from .errors import DirectLineError, FileError, InvalidArgumentError

PROG = "directline"
DEFAULT_ENDPOINT = "https://directline.botframework.com"

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_USAGE = 2
EXIT_STATUS_BASE = 10
EXIT_STATUS_MAX = 125
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

SECRET_ENV = "DIRECTLINE_SECRET"
TOKEN_ENV = "DIRECTLINE_TOKEN"
ENDPOINT_ENV = "DIRECTLINE_ENDPOINT"
PROTOCOL_ENV = "DIRECTLINE_PROTOCOL"

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

environment:
  {ENDPOINT_ENV}   the default --endpoint (else the public service,
                        {DEFAULT_ENDPOINT})
  {PROTOCOL_ENV}   the default --protocol (else 3.0)

exit codes:
  0        success
  1        send/upload: no reply arrived within --timeout
  2        usage error: bad options, no credential, unreadable credential file
  10+N     the library's error with status N, e.g.
           11 DL_ERR_INVALID_ARGUMENT (also a bad --activity or --state file)
           14 DL_ERR_IO (a file that cannot be read)   15 DL_ERR_NETWORK
           16 DL_ERR_TIMEOUT   19 DL_ERR_UNAUTHORIZED   20 DL_ERR_FORBIDDEN
           21 DL_ERR_TOKEN_EXPIRED   22 DL_ERR_NOT_FOUND   24 DL_ERR_THROTTLED
           25 DL_ERR_BOT   26 DL_ERR_SERVICE   (full table: docs/cli.md)
  130      interrupted (Ctrl-C)
  141      standard output was closed early (broken pipe)

See docs/cli.md for examples and the --json output shapes.
"""


class UsageError(Exception):
    """A mistake in how the command was called: exit code 2."""


class NoReply(Exception):
    """Nothing came back from the bot within --timeout: exit code 1."""


def exit_code_for_status(status: int) -> int:
    """The exit code for a library error of status ``status``: 10 + status (capped at 125)."""
    return min(EXIT_STATUS_BASE + max(int(status), 0), EXIT_STATUS_MAX)


# ---- argument parsing ----------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors follow ``--json``, and that never abbreviates options."""

    json_errors = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if kwargs.get("description"):
            kwargs["description"] = textwrap.fill(kwargs["description"], 79)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            _print_json_error(sys.stderr, {"name": "USAGE", "message": message, "exitCode": EXIT_USAGE})
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


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
    credentials = parser.add_argument_group(
        "credentials (never as an option value: see below)").add_mutually_exclusive_group()
    credentials.add_argument("--secret-file", metavar="FILE",
                             help=f"read the bot's secret from FILE ('-': stdin) instead of ${SECRET_ENV}")
    credentials.add_argument("--token-file", metavar="FILE",
                             help=f"read a token from FILE ('-': stdin) instead of ${TOKEN_ENV}")
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
    parser = _Parser(
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
    send.set_defaults(run=_run_send)

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
    upload.set_defaults(run=_run_upload)

    tail = commands.add_parser(
        "tail", epilog=EPILOG, help="print the bot's replies as they come, until Ctrl-C",
        description="Print the bot's activities in a conversation as they arrive (those not from "
                    "--user-id), until Ctrl-C or --timeout seconds bring nothing new.")
    tail.add_argument("--timeout", metavar="SECONDS", type=_positive_float, default=None,
                      help="stop once this long passes with nothing new (default: never)")
    _add_common(tail)
    _add_conversation(tail, required=True)
    tail.set_defaults(run=_run_tail)

    token = commands.add_parser("token", epilog=EPILOG, help="generate or refresh a token",
                                description="Generate a token from the secret, or refresh a token.")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    generate = token_commands.add_parser(
        "generate", epilog=EPILOG, help="exchange the secret for a token",
        description="Exchange the bot's secret for a token for a new conversation, without starting "
                    "it, and print the token (with --json: the service's answer).")
    generate.add_argument("--user-id", metavar="ID",
                          help="3.0: the user id embedded in the token (must start with dl_)")
    generate.add_argument("--user-name", metavar="NAME", help="3.0: the user's display name")
    generate.add_argument("--trusted-origin", metavar="URL", action="append", dest="trusted_origins",
                          help="3.0: an origin allowed to use the token (repeatable)")
    _add_common(generate, user_id=False)
    generate.set_defaults(run=_run_token_generate)
    refresh = token_commands.add_parser(
        "refresh", epilog=EPILOG, help=f"renew the token in ${TOKEN_ENV} or --token-file",
        description=f"Renew the token read from ${TOKEN_ENV} or --token-file and print the new one "
                    "(with --json: the service's answer). 1.1 renews through the token's "
                    "conversation, which is started first if need be.")
    _add_common(refresh, user_id=False)
    refresh.set_defaults(run=_run_token_refresh)
    return parser


# ---- output -------------------------------------------------------------------------------

def _print_json_error(stream: IO[str], error: Mapping[str, Any]) -> None:
    stream.write(json.dumps({"error": dict(error)}) + "\n")
    stream.flush()


def _printable(text: str) -> str:
    """``text`` with control characters (terminal escapes, ``\\r``) shown as escapes; newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(repr(char)[1:-1] if unicodedata.category(char) == "Cc" and char not in "\n\t" else char
                   for char in text)


def _size(count: float) -> str:
    """A byte count for people: ``512 B``, ``3.0 MiB``."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            break
    return f"{count:.1f} {unit}"


class Output:
    """Where results and replies go: lines for people, or one JSON object per line."""

    def __init__(self, as_json: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def _line(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def event(self, event: str, human: str | None, **fields: Any) -> None:
        """One result: ``{"event": event, **fields}`` with --json, else ``human`` (if any)."""
        if self.as_json:
            self._line(json.dumps({"event": event, **fields}))
        elif human is not None:
            self._line(_printable(human))

    def reply(self, activity: Mapping[str, Any]) -> None:
        """One activity (3.0) or message (1.1) from the bot."""
        if self.as_json:
            self._line(json.dumps({"event": "reply", "activity": activity}))
            return
        kind = activity.get("type", "message")
        words = [] if kind == "message" else [f"[{kind}]"]
        text = activity.get("text")
        if isinstance(text, str) and text:
            words.append(text)
        lines = [_printable(" ".join(["bot:", *words]))]
        attachments = activity.get("attachments")
        for attachment in attachments if isinstance(attachments, list) else []:
            if isinstance(attachment, Mapping):
                name = attachment.get("name") or "(unnamed)"
                content_type = attachment.get("contentType")
                suffix = f" ({content_type})" if content_type else ""
                lines.append(_printable(f"  attachment: {name}{suffix}"))
        self._line("\n".join(lines))

    def error(self, code: int, name: str, message: str, detail: Mapping[str, Any] | None = None) -> None:
        """An error on stderr: ``directline: error: ...``, or a JSON object with --json."""
        if self.as_json:
            error = dict(detail or {})
            error.setdefault("name", name)
            error["message"] = message
            error["exitCode"] = code
            _print_json_error(self.stderr, error)
        else:
            self.stderr.write(f"{PROG}: error: {_printable(message)}\n")
            self.stderr.flush()


class ProgressBar:
    """An upload's progress on a terminal, one line redrawn in place with ``\\r``.

    Shows the bytes done and in all, the percentage and the mean rate. It is
    redrawn when the percentage changes, or every quarter of a second, and
    always for the final ``(total, total)``; ``finish()`` ends the line.
    """

    WIDTH = 20

    def __init__(self, stream: IO[str], label: str) -> None:
        self._stream = stream
        self._label = label if len(label) <= 16 else label[:15] + "~"
        self._started: float | None = None
        self._last_draw = 0.0
        self._last_percent = -1
        self._last_length = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        final = done >= total
        if not final and percent == self._last_percent and now - self._last_draw < 0.25:
            return
        self._last_percent, self._last_draw = percent, now
        filled = percent * self.WIDTH // 100
        elapsed = now - self._started
        rate = f"{_size(done / elapsed)}/s" if elapsed > 0 and done > 0 else "-"
        line = (f"{self._label} [{'#' * filled}{' ' * (self.WIDTH - filled)}] {percent:3d}%  "
                f"{_size(done)} / {_size(total)}  {rate}")
        padding = " " * max(0, self._last_length - len(line))
        self._last_length = len(line)
        self._stream.write("\r" + line + padding)
        self._stream.flush()

    def finish(self) -> None:
        """Ends the line, if anything was drawn."""
        if self._last_length:
            self._stream.write("\n")
            self._stream.flush()
            self._last_length = 0


# ---- credentials, files and the client -------------------------------------------------------

def _source(path: str, what: str) -> str:
    """How messages name the file ``path`` holding ``what``."""
    return f"the {what} on standard input" if path == "-" else f"the {what} file {path}"


def _read_credential_file(path: str, what: str) -> str:
    """The first line of ``path`` (or stdin), stripped; never echoed in messages."""
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.readline()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise UsageError(f"cannot read {_source(path, what)}: {reason}") from None
    value = text.strip()
    if not value:
        raise UsageError(f"{_source(path, what)} is empty")
    return value


class Credentials:
    """The secret and token this command may use, from files or the environment."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.secret: str | None = None
        self.token: str | None = None
        if args.secret_file is not None:
            self.secret = _read_credential_file(args.secret_file, "secret")
        elif args.token_file is not None:
            self.token = _read_credential_file(args.token_file, "token")
        else:
            self.secret = os.environ.get(SECRET_ENV) or None
            self.token = os.environ.get(TOKEN_ENV) or None

    def for_client(self, fallback_token: str | None = None) -> dict[str, str]:
        """``secret=`` or ``token=`` for Client(); the secret wins when both are set."""
        if self.secret is not None:
            return {"secret": self.secret}
        token = self.token or fallback_token
        if token is not None:
            return {"token": token}
        raise UsageError(f"no credential: set {SECRET_ENV} (the bot's Direct Line secret) or "
                         f"{TOKEN_ENV}, or pass --secret-file FILE or --token-file FILE")


def _make_client(args: argparse.Namespace, credential: Mapping[str, str]) -> Client:
    options: dict[str, Any] = {}
    if args.http_timeout is not None:
        options["timeout_ms"] = max(1, _milliseconds(args.http_timeout, "--http-timeout"))
    if args.retries is not None:
        options["retry"] = {"max_attempts": args.retries}
    if args.ca_file is not None:
        options["ca_file"] = args.ca_file
    if getattr(args, "max_upload_bytes", None) is not None:
        options["max_upload_bytes"] = args.max_upload_bytes
    return Client(args.endpoint, protocol=args.protocol, **credential, **options)


def _read_text_file(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise FileError.local(f"cannot read {_source(path, what)}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise InvalidArgumentError.local(f"{_source(path, what)} is not UTF-8 text") from None


def _read_json_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` ('-': stdin); InvalidArgumentError if it is not one."""
    text = _read_text_file(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        # The position only, never the text: it may hold a token.
        raise InvalidArgumentError.local(
            f"{_source(path, what)} is not valid JSON (line {error.lineno}, column {error.colno})") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError.local(f"{_source(path, what)} must hold a JSON object, "
                                         f"not {type(value).__name__}")
    return value


def write_state(path: str, state: Mapping[str, Any]) -> None:
    """Writes ``state`` to ``path`` atomically, the file readable by its owner only (0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=".directline-state-", suffix=".tmp", dir=directory)
    except OSError as error:
        raise FileError.local(f"cannot write the state file {path}: {error.strerror or error}") from None
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(state, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise FileError.local(f"cannot write the state file {path}: {error.strerror or error}") from None
        raise


class Session:
    """The client and conversation of one command, and saving its state at the end."""

    def __init__(self, args: argparse.Namespace, output: Output) -> None:
        self.args = args
        self.output = output
        self.client: Client | None = None
        self.conversation: Conversation | None = None
        self.started = False

    def open(self, credentials: Credentials, *, start: bool) -> Conversation:
        """The conversation of --state or --conversation, or (``start``) a new one."""
        args = self.args
        state: dict[str, Any] | None = None
        fallback_token: str | None = None
        if args.state is not None:
            state = _read_json_object(args.state, "state")
            if not isinstance(state.get("conversationId"), str):
                raise InvalidArgumentError.local(f"{_source(args.state, 'state')} has no conversationId")
            saved_token = state.get("token")
            fallback_token = saved_token if isinstance(saved_token, str) else None
        elif args.conversation is None and not start:
            raise UsageError("give --state FILE or --conversation ID")
        if args.watermark is not None and args.conversation is None:
            raise UsageError("--watermark goes with --conversation ID (a state file has its own)")
        self.client = _make_client(args, credentials.for_client(fallback_token))
        if state is not None:
            self.conversation = self.client.resume(state)
        elif args.conversation is not None:
            self.conversation = self.client.open_conversation(args.conversation, token=credentials.token,
                                                              watermark=args.watermark)
            if args.watermark is None and start:
                # Replies to this command only, not the conversation's history.
                while _items(self.conversation.get_activities()):
                    pass
        else:
            self.conversation = self.client.start_conversation()
            self.started = True
        conversation_id = self.conversation.id
        self.output.event("conversation", f"conversation {conversation_id}" if self.started else None,
                          conversationId=conversation_id, protocol=args.protocol,
                          started=self.started)
        return self.conversation

    def close(self) -> None:
        """Saves the state (--save-state) and closes the handles."""
        try:
            if self.conversation is not None and self.args.save_state is not None:
                write_state(self.args.save_state, self.conversation.state())
        finally:
            if self.conversation is not None:
                self.conversation.close()
            if self.client is not None:
                self.client.close()


def _items(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = result["activities"] if "activities" in result else result["messages"]
    return found


# ---- waiting for replies ----------------------------------------------------------------------

_SLICE = 1.0
"""The longest single wait in the library, in seconds, so that Ctrl-C is honoured promptly."""


def _is_answer(activity: Mapping[str, Any]) -> bool:
    """Whether a reply ends the wait: anything but a typing indicator."""
    return bool(activity.get("type", "message") != "typing")


def wait_for_replies(conversation: Conversation, output: Output, timeout: float, linger: float) -> None:
    """Prints replies until one that is not a typing indicator, then until ``linger`` passes quietly.

    Raises NoReply when ``timeout`` passes without such a reply.
    """
    deadline = time.monotonic() + timeout
    answered = polled = False
    while not answered:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and polled:
            raise NoReply(f"no reply from the bot within {timeout:g} s")
        polled = True
        for activity in conversation.wait(timeout=max(0.0, min(_SLICE, remaining))):
            output.reply(activity)
            answered = answered or _is_answer(activity)
    quiet_until = time.monotonic() + linger
    while True:
        remaining = quiet_until - time.monotonic()
        if remaining <= 0:
            return
        found = conversation.wait(timeout=min(_SLICE, remaining), after_send=0,
                                  interval=min(1.0, max(linger, 0.05)))
        for activity in found:
            output.reply(activity)
        if found:
            quiet_until = time.monotonic() + linger


# ---- the subcommands -------------------------------------------------------------------------

def _run_send(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    if (args.text is None) == (args.activity is None):
        raise UsageError("give either a TEXT or --activity FILE")
    activity: dict[str, Any] | None = None
    if args.activity is not None:
        # Read and checked before anything is sent.
        activity = _read_json_object(args.activity, "activity")
    session = Session(args, output)
    try:
        conversation = session.open(credentials, start=True)
        if activity is None:
            result = conversation.send_text(args.user_id, args.text)
        else:
            if args.protocol == "3.0":
                activity.setdefault("type", "message")
                activity.setdefault("from", {"id": args.user_id})
            else:
                activity.setdefault("from", args.user_id)
            result = conversation.send_activity(activity)
        sent_id = result.get("id")
        output.event("sent", "sent" + (f" {sent_id}" if sent_id else ""), result=result)
        if args.wait:
            wait_for_replies(conversation, output, args.timeout, args.linger)
    finally:
        session.close()


def _check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise FileError.local(f"cannot upload {path}: no such file")
    if os.path.isdir(path):
        raise FileError.local(f"cannot upload {path}: it is a directory")
    if not os.access(path, os.R_OK):
        raise FileError.local(f"cannot upload {path}: permission denied")


def _run_upload(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    for path in args.files:
        _check_readable(path)  # before anything is sent
    show_progress = args.progress if args.progress is not None else output.stderr.isatty()
    names = [os.path.basename(path) or path for path in args.files]
    label = names[0] if len(names) == 1 else f"{len(names)} files"
    bar = ProgressBar(output.stderr, label) if show_progress else None

    def progress(done: int, total: int) -> None:
        # Always passed, even when nothing is drawn: Python code runs during
        # the transfer, so Ctrl-C cancels it at once.
        if bar is not None:
            bar(done, total)

    session = Session(args, output)
    try:
        conversation = session.open(credentials, start=True)
        try:
            if len(args.files) == 1 and args.text is None:
                result = conversation.upload_file(args.user_id, args.files[0], content_type=args.content_type,
                                                  progress=progress)
            else:
                files: list[dict[str, Any]] = [{"path": path, "content_type": args.content_type}
                                               for path in args.files]
                activity = None if args.text is None else {"text": args.text}
                result = conversation.upload(args.user_id, files, activity=activity, progress=progress)
        finally:
            if bar is not None:
                bar.finish()
        uploaded_id = result.get("id")
        human = "uploaded" + (f" {uploaded_id}" if uploaded_id else "") + f" ({', '.join(names)})"
        output.event("uploaded", human, result=result, files=names)
        if args.wait:
            wait_for_replies(conversation, output, args.timeout, args.linger)
    finally:
        session.close()


def _run_tail(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    session = Session(args, output)
    try:
        conversation = session.open(credentials, start=False)
        for activity in conversation.replies(timeout=args.timeout, user_id=args.user_id):
            output.reply(activity)
    finally:
        session.close()


def _print_token(output: Output, result: Mapping[str, Any]) -> None:
    token = result.get("token")
    output.event("token", token if isinstance(token, str) else None, result=dict(result))


def _run_token_generate(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    if credentials.secret is None:
        raise UsageError(f"token generate needs the bot's secret: set {SECRET_ENV} or pass --secret-file FILE")
    with _make_client(args, {"secret": credentials.secret}) as client:
        result = client.generate_token(user_id=args.user_id, user_name=args.user_name,
                                       trusted_origins=args.trusted_origins)
    _print_token(output, result)


def _run_token_refresh(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    token = credentials.token
    if token is None:
        raise UsageError(f"token refresh needs the token: set {TOKEN_ENV} or pass --token-file FILE")
    with _make_client(args, {"token": token}) as client:
        if args.protocol == "1.1":
            # 1.1 renews a token through its conversation's id.
            with client.start_conversation():
                result = client.refresh_token(token)
        else:
            result = client.refresh_token(token)
    _print_token(output, result)


# ---- main -----------------------------------------------------------------------------------

def _refuse_credential_arguments(argv: Sequence[str]) -> None:
    for argument in argv:
        if argument == "--":
            return
        name = argument.split("=", 1)[0]
        if name in _CREDENTIAL_OPTIONS:
            kind = name[2:]
            env = SECRET_ENV if kind == "secret" else TOKEN_ENV
            raise UsageError(f"{name} is not accepted: a {kind} is never taken on the command line, where "
                             f"shell history and `ps` would show it; set {env} or use {name}-file FILE")


def _unrecognized(extras: Iterable[str]) -> str:
    """The message for unrecognized arguments, naming options but not showing values."""
    extras = list(extras)
    options = [argument.split("=", 1)[0] for argument in extras if argument.startswith("-") and argument != "-"]
    others = len(extras) - len(options)
    parts = [" ".join(options)] if options else []
    if others:
        parts.append(f"{others} other argument(s) (not shown; quote a text with spaces)")
    return "unrecognized arguments: " + ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``directline`` command with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments[:arguments.index("--")] if "--" in arguments else "--json" in arguments
    _Parser.json_errors = as_json
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    output = Output(as_json, sys.stdout, sys.stderr)
    parser = build_parser()
    try:
        _refuse_credential_arguments(arguments)
        args, extras = parser.parse_known_args(arguments)
        if extras:
            raise UsageError(_unrecognized(extras))
        if args.protocol is None:
            protocol = os.environ.get(PROTOCOL_ENV) or "3.0"
            if protocol not in ("3.0", "1.1"):
                raise UsageError(f"{PROTOCOL_ENV} must be 3.0 or 1.1")
            args.protocol = protocol
        if (args.secret_file == "-" or args.token_file == "-") and getattr(args, "activity", None) == "-":
            raise UsageError("standard input cannot hold both the credential and the activity")
        credentials = Credentials(args)
        args.run(args, output, credentials)
        return EXIT_OK
    except UsageError as error:
        if as_json:
            output.error(EXIT_USAGE, "USAGE", str(error))
        else:
            sys.stderr.write(f"{PROG}: error: {error}\n")
        return EXIT_USAGE
    except NoReply as error:
        output.error(EXIT_NO_REPLY, "NO_REPLY", str(error))
        return EXIT_NO_REPLY
    except DirectLineError as error:
        code = exit_code_for_status(error.status)
        name = error.name
        detail = dict(error.detail)
        detail.setdefault("status", int(error.status))
        where = f" (HTTP {error.http_status})" if error.http_status and "HTTP" not in error.message else ""
        message = error.message if as_json else f"{error.message}{where} [{name}]"
        if error.delivery == "unknown" and not as_json:
            message += "; it may have reached the bot"
        output.error(code, name, message, detail)
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Standard output was closed (e.g. `| head`): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


__all__ = ["Output", "ProgressBar", "build_parser", "exit_code_for_status", "main", "write_state"]


if __name__ == "__main__":
    sys.exit(main())

