"""The ``directline`` command: talk to a bot over Direct Line from a shell.

Run as ``python3 -m directline`` or, once installed with pip, ``directline``.
Subcommands: ``send``, ``upload``, ``tail`` and ``token generate|refresh``;
``directline COMMAND --help`` describes each, docs/cli.md has examples.

Secrets and tokens are read from the environment (``DIRECTLINE_SECRET``,
``DIRECTLINE_TOKEN``) or from files (``--secret-file``, ``--token-file``),
never from an argument value, which would end up in shell history and in
``ps``. Nothing this command prints contains them, except ``token`` output,
whose purpose is to print a token. A token endpoint, which hands out tokens
and is no secret, may be an option value (``--token-endpoint``) or
``DIRECTLINE_TOKEN_ENDPOINT``.

Exit codes: 0 success; 1 no reply arrived within ``--timeout``; 2 usage
(bad options, no credential); 10 + the library's status for its errors
(``DL_ERR_INVALID_ARGUMENT`` = 1 gives 11, ``DL_ERR_BOT`` = 15 gives 25);
130 interrupted (Ctrl-C); 141 standard output closed early.

This module is the entry point, ``main``: it parses, runs the subcommand
and turns the outcome into the exit code. The options, help and exit codes
are in ``cli.parser``, what is printed in ``cli.output``, and the
subcommands with their credentials and session in ``cli.commands``.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence

from .commands import (
    SECRET_ENV,
    TOKEN_ENDPOINT_ENV,
    TOKEN_ENV,
    Credentials,
    NoReply,
    Session,
    UsageError,
    wait_for_replies,
    write_state,
)
from .output import PROG, Output, ProgressBar
from .parser import (
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    EPILOG,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_NO_REPLY,
    EXIT_OK,
    EXIT_STATUS_BASE,
    EXIT_STATUS_MAX,
    EXIT_USAGE,
    PROTOCOL_ENV,
    Parser,
    build_parser,
    exit_code_for_status,
    refuse_credential_arguments,
    unrecognized,
)
from ..errors import DirectLineError

# The command's public names, importable from here wherever they are defined.
__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINT_ENV",
    "EPILOG",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_REPLY",
    "EXIT_OK",
    "EXIT_STATUS_BASE",
    "EXIT_STATUS_MAX",
    "EXIT_USAGE",
    "PROG",
    "PROTOCOL_ENV",
    "SECRET_ENV",
    "TOKEN_ENDPOINT_ENV",
    "TOKEN_ENV",
    "Credentials",
    "NoReply",
    "Output",
    "ProgressBar",
    "Session",
    "UsageError",
    "build_parser",
    "exit_code_for_status",
    "main",
    "wait_for_replies",
    "write_state",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``directline`` command with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments[:arguments.index("--")] if "--" in arguments else "--json" in arguments
    Parser.json_errors = as_json
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    output = Output(as_json, sys.stdout, sys.stderr)
    parser = build_parser()
    try:
        refuse_credential_arguments(arguments)
        args, extras = parser.parse_known_args(arguments)
        if extras:
            raise UsageError(unrecognized(extras))
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


if __name__ == "__main__":
    sys.exit(main())
