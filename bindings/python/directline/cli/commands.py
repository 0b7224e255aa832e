"""The subcommands of ``directline``: send, upload, tail and token generate|refresh.

Also what they share: the credentials (from the environment or a file,
never from an argument), the session's client and conversation, saving
its state, and waiting for the bot's replies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from .output import Output, ProgressBar
from .._native import _milliseconds
from ..client import Client
from ..conversation import Conversation
from ..errors import CancelledError, DirectLineError, FileError, InvalidArgumentError, UnsupportedError

SECRET_ENV = "DIRECTLINE_SECRET"
TOKEN_ENV = "DIRECTLINE_TOKEN"
TOKEN_ENDPOINT_ENV = "DIRECTLINE_TOKEN_ENDPOINT"


class UsageError(Exception):
    """A mistake in how the command was called: exit code 2."""


class NoReply(Exception):
    """Nothing came back from the bot within --timeout: exit code 1."""


# ---- credentials, files and the session ------------------------------------------------------

def _source(path: str, what: str) -> str:
    """How messages name the file ``path`` holding ``what``."""
    return f"the {what} on standard input" if path == "-" else f"the {what} file {path}"


def _credential_source(path: str, what: str) -> str:
    """How messages name where a credential was to be read from: by its
    option, never by the value given, which may be the credential itself,
    passed by mistake instead of a file name."""
    return f"the {what} on standard input" if path == "-" else f"the file given to --{what}-file"


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
        raise UsageError(f"cannot read {_credential_source(path, what)}: {reason}") from None
    value = text.strip()
    if not value:
        raise UsageError(f"{_credential_source(path, what)} is empty")
    return value


class Credentials:
    """The secret, token or token endpoint this command may use, from files, options or the environment.

    An explicit ``--secret-file``, ``--token-file`` or ``--token-endpoint``
    (argparse lets only one through) is the only source; without one, all
    three environment variables are read, and ``for_client`` picks the
    secret first, then the token, then the token endpoint.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.secret: str | None = None
        self.token: str | None = None
        self.token_endpoint: str | None = None
        token_endpoint: str | None = getattr(args, "token_endpoint", None)
        if args.secret_file is not None:
            self.secret = _read_credential_file(args.secret_file, "secret")
        elif args.token_file is not None:
            self.token = _read_credential_file(args.token_file, "token")
        elif token_endpoint is not None:
            if not token_endpoint:
                raise UsageError("--token-endpoint needs a URL")
            self.token_endpoint = token_endpoint
        else:
            self.secret = os.environ.get(SECRET_ENV) or None
            self.token = os.environ.get(TOKEN_ENV) or None
            self.token_endpoint = os.environ.get(TOKEN_ENDPOINT_ENV) or None

    def for_client(self, fallback_token: str | None = None) -> dict[str, str]:
        """``secret=``, ``token=`` or ``token_endpoint=`` for Client(), in that order of preference.

        ``fallback_token`` (a saved state's) comes after the token and before
        the token endpoint: a token endpoint client resumes a state through
        the state's own token anyway.
        """
        if self.secret is not None:
            return {"secret": self.secret}
        token = self.token or fallback_token
        if token is not None and (self.token is not None or self.token_endpoint is None):
            return {"token": token}
        if self.token_endpoint is not None:
            return {"token_endpoint": self.token_endpoint}
        raise UsageError(f"no credential: set {SECRET_ENV} (the bot's Direct Line secret), {TOKEN_ENV} "
                         f"or {TOKEN_ENDPOINT_ENV}, or pass --secret-file FILE, --token-file FILE or "
                         "--token-endpoint URL")


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
    if args.bot_agent is not None:
        options["bot_agent"] = args.bot_agent
    if args.headers:
        options["headers"] = dict(args.headers)
    if args.regional_settings_endpoint is not None:
        options["regional_settings_endpoint"] = args.regional_settings_endpoint
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
        locale: str | None = getattr(args, "locale", None)
        if locale is not None and (args.state is not None or args.conversation is not None):
            raise UsageError("--locale goes with starting a new conversation, not with --state or --conversation")
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
        if (args.conversation is not None and credentials.token_endpoint is not None
                and credentials.token is None and credentials.secret is None):
            raise UsageError(f"--conversation ID needs that conversation's token: set {TOKEN_ENV} or pass "
                             "--token-file FILE (a token endpoint only hands out tokens for new conversations)")
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
            self.conversation = self.client.start_conversation(locale=locale)
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

def run_send(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
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


def run_upload(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
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


# ---- tail: following a conversation through its listener -------------------------------------

_TAIL_SLICE = 0.25
"""The longest ``next()`` of ``tail``, in seconds: Ctrl-C takes effect when one returns."""


def sender_id(activity: Mapping[str, Any]) -> str | None:
    """The sender's id: 3.0 ``from.id``, 1.1 ``from``; None when there is none."""
    origin = activity.get("from")
    found = origin.get("id") if isinstance(origin, Mapping) else origin
    return found if isinstance(found, str) else None


def tail_shows(activity: Mapping[str, Any], *, user_id: str, include_own: bool, typing: bool) -> bool:
    """Whether ``tail`` prints ``activity``: not the user's own unless
    ``include_own``, not a typing indicator unless ``typing``."""
    if not include_own and sender_id(activity) == user_id:
        return False
    return typing or activity.get("type") != "typing"


def follow(conversation: Conversation, output: Output, *, user_id: str, include_own: bool, typing: bool,
           timeout: float | None, listening: Mapping[str, Any]) -> None:
    """Prints what ``conversation``'s listener hands out, as ``tail`` does, until the end or ``timeout``.

    ``listening`` is what ``listen()`` returned. Returns once the
    conversation has ended and everything before its end was printed, or
    once ``timeout`` seconds pass with nothing printed, counted from the
    listener's first read (its first state other than ``connecting``), so
    that ``--timeout 0`` still shows what was there. The listener's failure
    is raised, after everything queued before it was printed.
    """
    mode: str | None = listening.get("mode")
    state: str | None = listening.get("state")
    if state is not None:
        output.state(state, None, mode)
    deadline: float | None = None
    if timeout is not None and state != "connecting":
        deadline = time.monotonic() + timeout
    ending = False
    while True:
        # Once ended, only what is still queued is left: no waiting.
        wait = 0.0 if ending else _TAIL_SLICE
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        try:
            result = conversation.next(wait)
        except (InvalidArgumentError, CancelledError):
            raise
        except DirectLineError:
            output.state("failed", state, mode)  # the listener's failure; main reports the error
            raise
        activities: list[dict[str, Any]] = result["activities"]
        new_state: str = result["state"]
        mode = result.get("mode", mode)
        if new_state != "ended":
            # A change came before what it brings (online again, then the replies).
            output.state(new_state, state, mode)
            state = new_state
        printed = False
        for activity in activities:
            if not tail_shows(activity, user_id=user_id, include_own=include_own, typing=typing):
                continue
            if activity.get("type") == "typing":
                output.typing(activity)
            else:
                output.reply(activity, own_as=user_id if sender_id(activity) == user_id else None)
            printed = True
        if new_state == "ended":
            # Noted once everything queued before the end is printed.
            ending = True
            if not activities:
                output.state(new_state, state, mode)
                return
            continue
        if timeout is None:
            continue
        now = time.monotonic()
        if deadline is None and state != "connecting":
            deadline = now + timeout  # the listener's first read is done
        elif printed and deadline is not None:
            deadline = now + timeout
        elif deadline is not None and now >= deadline:
            return


def run_tail(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    session = Session(args, output)
    try:
        conversation = session.open(credentials, start=False)
        try:
            listening = conversation.listen(mode=args.mode, poll_interval=args.poll_interval,
                                            include_own=args.include_own)
        except UnsupportedError as error:
            why = error.message.split(": listen with", 1)[0]
            message = f"--mode websocket is not possible here: {why}; use --mode auto or --mode polling"
            raise UnsupportedError(message, {**error.detail, "message": message}) from None
        follow(conversation, output, user_id=args.user_id, include_own=args.include_own, typing=args.typing,
               timeout=args.timeout, listening=listening)
    finally:
        session.close()


def _print_token(output: Output, result: Mapping[str, Any]) -> None:
    token = result.get("token")
    output.event("token", token if isinstance(token, str) else None, result=dict(result))


def run_token_generate(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
    if credentials.secret is not None:
        with _make_client(args, {"secret": credentials.secret}) as client:
            result = client.generate_token(user_id=args.user_id, user_name=args.user_name,
                                           trusted_origins=args.trusted_origins)
    elif credentials.token_endpoint is not None:
        if args.user_id is not None or args.user_name is not None or args.trusted_origins:
            raise UsageError("--user-id, --user-name and --trusted-origin need the secret: a token endpoint "
                             "decides them itself")
        with _make_client(args, {"token_endpoint": credentials.token_endpoint}) as client:
            result = client.generate_token()
    else:
        raise UsageError(f"token generate needs the bot's secret or a token endpoint: set {SECRET_ENV} or "
                         f"{TOKEN_ENDPOINT_ENV}, or pass --secret-file FILE or --token-endpoint URL")
    _print_token(output, result)


def run_token_refresh(args: argparse.Namespace, output: Output, credentials: Credentials) -> None:
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
