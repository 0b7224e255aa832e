"""`directline tail` through the conversation's listener: end to end against the emulator, and its printing in-process.

The end-to-end tests run the command as a child process (as test_cli.py
does) while this process talks in the conversation. Typing indicators come
only over the WebSocket stream, which the library does not have yet, so
their printing is checked in-process: the pure formatting function, and
``follow`` fed a synthetic typing activity by a scripted conversation.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import directline
from directline import cli
from directline.cli import commands, output
from support import REPO_ROOT, SECRET, Emulator
from test_cli import cli_env, json_lines, run_cli

LIST_REQUEST = re.compile(r"^/(v3/directline|api)/conversations/[^/]+/(activities|messages)$")


# What "auto" listens with on each protocol (libcurl 8.11 or later).
MODE = {"3.0": "websocket", "1.1": "polling"}


def list_gets(emulator: Emulator) -> int:
    return sum(1 for request in emulator.requests()
               if request["method"] == "GET" and LIST_REQUEST.match(request["path"]))


class Tail:
    """`directline tail ARGS` as a child process, killed after 30 s at the latest."""

    def __init__(self, emulator: Emulator, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "directline", "tail", *args],
                                        env=cli_env(emulator), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.timer = threading.Timer(30, self.process.kill)  # never hang the suite
        self.timer.start()

    def line(self) -> str:
        """The next line of stdout; fails, saying why, when tail ended instead."""
        found = self.process.stdout.readline()
        if not found:
            self.process.wait()
            raise AssertionError(f"tail ended ({self.process.returncode}): {self.process.stderr.read()}")
        return found

    def states_until_online(self, mode: str = "polling") -> list[str]:
        """The --json state lines up to the first "online" (listen() may already report it)."""
        states = []
        while not states or states[-1] != "online":
            line = json.loads(self.line())
            assert line["event"] == "state" and line["mode"] == mode, line
            states.append(line["state"])
        return states

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        """Waits for the end (TimeoutExpired if it does not come); the exit code, stdout and stderr."""
        stdout, stderr = self.process.communicate(timeout=timeout)
        assert SECRET not in stdout + stderr
        return self.process.returncode, stdout, stderr

    def close(self) -> None:
        self.timer.cancel()
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    """Tails started by the test, killed when it ends."""
    started: list[Tail] = []
    yield started
    for tail in started:
        tail.close()


def start(tails: list[Tail], emulator: Emulator, *args: str) -> Tail:
    tail = Tail(emulator, *args)
    tails.append(tail)
    return tail


@pytest.fixture
def talk(emulator: Emulator, protocol: str) -> Iterator[Any]:
    """A conversation this process talks in, as user `user`."""
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client, \
            client.start_conversation() as conversation:
        yield conversation


# ---- end to end -------------------------------------------------------------------------

def test_tail_prints_the_reply_to_a_message_sent_while_it_runs(emulator, protocol, talk, tails):
    tail = start(tails, emulator, f"--conversation={talk.id}", "--protocol", protocol, "--json",
                 "--poll-interval", "0.1", "--timeout", "1.5")
    conversation = json.loads(tail.line())
    assert conversation["event"] == "conversation" and conversation["conversationId"] == talk.id
    assert tail.states_until_online(MODE[protocol]) in (["connecting", "online"], ["online"])
    talk.send_text("user", "ping")  # while tail runs
    sent = time.monotonic()
    reply = json.loads(tail.line())
    assert time.monotonic() - sent < 2.0, "printed as the stream or the 0.1 s polls bring it"
    assert reply["event"] == "reply" and reply["activity"]["text"] == "echo: ping"
    assert "own" not in reply
    code, stdout, stderr = tail.finish()
    assert code == 0 and stderr == ""
    assert stdout == "", "the user's own message is not printed, nor anything after the idle timeout"


def test_poll_interval_sets_the_listeners_pace(emulator, protocol, talk, tails):
    before = list_gets(emulator)
    code, _, stderr = start(tails, emulator, f"--conversation={talk.id}", "--protocol", protocol, "--mode", "polling",
                            "--poll-interval", "0.1", "--timeout", "1.5").finish()
    assert code == 0, stderr
    fast = list_gets(emulator) - before
    before = list_gets(emulator)
    code, _, stderr = start(tails, emulator, f"--conversation={talk.id}", "--protocol", protocol, "--mode", "polling",
                            "--timeout", "1.5").finish()
    assert code == 0, stderr
    default = list_gets(emulator) - before
    assert fast >= 8, f"{fast} polls in 1.5 s at 0.1 s"
    assert default <= 4, f"{default} polls in 1.5 s at the default 1 s"


def test_the_users_own_messages_only_with_include_own(emulator, protocol, talk):
    talk.send_text("user", "hi")
    talk.send_text("someone-else", "hello")  # the echo is stored before the send returns
    common = [f"--conversation={talk.id}", "--protocol", protocol, "--timeout", "0"]
    plain = run_cli(emulator, "tail", *common)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ["bot: echo: hi", "bot: hello", "bot: echo: hello"]
    own = run_cli(emulator, "tail", *common, "--include-own")
    assert own.returncode == 0, own.stderr
    assert own.stdout.splitlines() == ["user: hi", "bot: echo: hi", "bot: hello", "bot: echo: hello"]
    # Whose are "own" follows --user-id.
    other = run_cli(emulator, "tail", *common, "--user-id", "someone-else")
    assert other.stdout.splitlines() == ["bot: hi", "bot: echo: hi", "bot: echo: hello"]
    as_json = run_cli(emulator, "tail", *common, "--include-own", "--json")
    replies = [line for line in json_lines(as_json.stdout) if line["event"] == "reply"]
    assert [(line["activity"]["text"], line.get("own", False)) for line in replies] == [
        ("hi", True), ("echo: hi", False), ("hello", False), ("echo: hello", False)]


def test_the_bots_endOfConversation_ends_tail_with_exit_0(emulator, tails):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as talk:
        # One polls, one streams: the service holds one stream per conversation.
        text = start(tails, emulator, f"--conversation={talk.id}", "--mode", "polling", "--poll-interval", "0.1")
        as_json = start(tails, emulator, f"--conversation={talk.id}", "--json")
        talk.send_text("user", "before")
        assert text.line() == "bot: echo: before\n"
        talk.send_text("user", "end")  # the echo bot answers with endOfConversation
        code, stdout, stderr = text.finish()  # no --timeout: only the end stops it
        assert code == 0, stderr
        assert stdout == "bot: [endOfConversation]\n"
        assert stderr == "directline: the conversation has ended\n"
        code, stdout, stderr = as_json.finish()
        assert code == 0 and stderr == ""
    lines = json_lines(stdout)
    replies = [line["activity"] for line in lines if line["event"] == "reply"]
    assert [(item["type"], item.get("text")) for item in replies] == [
        ("message", "echo: before"), ("endOfConversation", None)]
    assert lines[-1] == {"event": "state", "state": "ended", "mode": "websocket"}


def test_ctrl_c_exits_130_promptly_while_listening(emulator, protocol, talk, tails):
    tail = start(tails, emulator, f"--conversation={talk.id}", "--protocol", protocol, "--json", "--mode", "polling",
                 "--include-own", "--typing")
    assert json.loads(tail.line())["event"] == "conversation"
    tail.states_until_online()  # listening, between polls a second apart
    interrupted = time.monotonic()
    tail.process.send_signal(signal.SIGINT)
    code, stdout, stderr = tail.finish()
    took = time.monotonic() - interrupted
    assert code == cli.EXIT_INTERRUPTED == 130
    assert stdout == "" and stderr == ""
    assert took < 2.5, f"Ctrl-C took {took:.1f} s"


def test_mode_websocket_on_1_1_is_unsupported_with_exit_32(emulator):
    code = cli.exit_code_for_status(directline.Status.ERR_UNSUPPORTED)
    assert code == 32
    with directline.Client(emulator.url, secret=SECRET, protocol="1.1") as client, \
            client.start_conversation() as talk:
        before = list_gets(emulator)
        result = run_cli(emulator, "tail", f"--conversation={talk.id}", "--protocol", "1.1", "--mode", "websocket")
        assert result.returncode == code
        assert result.stderr.startswith("directline: error: --mode websocket is not possible here: ")
        assert "1.1" in result.stderr and "--mode auto or --mode polling" in result.stderr
        assert "DL_ERR_UNSUPPORTED" in result.stderr and "listen with" not in result.stderr
        as_json = run_cli(emulator, "tail", f"--conversation={talk.id}", "--protocol", "1.1", "--mode",
                          "websocket", "--json")
        assert as_json.returncode == code
        error = json.loads(as_json.stderr)["error"]
        assert error["status"] == 22 and error["name"] == "DL_ERR_UNSUPPORTED" and error["exitCode"] == 32
        assert list_gets(emulator) == before, "nothing was read"
        # The same conversation tails with the other modes.
        for mode in ("auto", "polling"):
            fine = run_cli(emulator, "tail", f"--conversation={talk.id}", "--protocol", "1.1", "--mode", mode,
                           "--timeout", "0")
            assert fine.returncode == 0, (mode, fine.stderr)


def test_a_listener_failure_exits_with_its_errors_code(emulator, protocol, talk):
    path = "/messages$" if protocol == "1.1" else "/activities$"
    emulator.fault(method="GET", path=path, action="status", status=403, count=-1)
    result = run_cli(emulator, "tail", f"--conversation={talk.id}", "--protocol", protocol, "--json")
    assert result.returncode == cli.exit_code_for_status(directline.Status.ERR_FORBIDDEN) == 20
    assert json.loads(result.stderr)["error"]["httpStatus"] == 403
    assert json_lines(result.stdout)[-1] == {"event": "state", "state": "failed", "mode": MODE[protocol]}


def test_tail_typing_shows_the_bot_typing_before_its_reply_on_the_stream(emulator, tails):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as talk:
        tail = start(tails, emulator, f"--conversation={talk.id}", "--typing", "--timeout", "2")
        plain = start(tails, emulator, f"--conversation={talk.id}", "--mode", "polling", "--timeout", "2")
        time.sleep(1.0)  # both listening
        talk.send_text("user", "type first")
        code, stdout, stderr = tail.finish()
        assert code == 0, stderr
        assert stdout.splitlines() == ["Echo Bot is typing…", "bot: echo: type first"]
        code, stdout, stderr = plain.finish()
        assert code == 0, stderr
        assert stdout.splitlines() == ["bot: echo: type first"], "typing comes only over the stream"


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--mode", "stream", "argument --mode: invalid choice: 'stream'"),
    ("--mode", "", "argument --mode: invalid choice: ''"),
    ("--poll-interval", "0", "argument --poll-interval: must be from 0.05 to 3600 seconds"),
    ("--poll-interval", "0.01", "argument --poll-interval: must be from 0.05 to 3600 seconds"),
    ("--poll-interval", "3601", "argument --poll-interval: must be from 0.05 to 3600 seconds"),
    ("--poll-interval", "-1", "argument --poll-interval: must be from 0.05 to 3600 seconds"),
    ("--poll-interval", "nan", "argument --poll-interval: must be from 0.05 to 3600 seconds"),
    ("--poll-interval", "soon", "argument --poll-interval: not a number of seconds"),
])
def test_bad_option_values_are_refused_before_anything_is_sent(emulator, option, value, says):
    result = run_cli(emulator, "tail", "--conversation", "c1", f"{option}={value}")
    assert result.returncode == cli.EXIT_USAGE == 2
    assert says in result.stderr
    as_json = run_cli(emulator, "tail", "--conversation", "c1", f"{option}={value}", "--json")
    error = json.loads(as_json.stderr)["error"]
    assert error["name"] == "USAGE" and says in error["message"] and error["exitCode"] == 2
    assert emulator.requests() == []


def test_the_help_describes_the_receiving_options(emulator):
    result = run_cli(emulator, "tail", "--help")
    assert result.returncode == 0
    for option in ("--mode {auto,websocket,polling}", "--poll-interval SECONDS", "--include-own", "--typing"):
        assert option in result.stdout
    assert "32 DL_ERR_UNSUPPORTED" in result.stdout


# ---- printing, in-process: typing indicators and state changes ------------------------

BOT_TYPING = {"type": "typing", "id": "c1|0000002", "from": {"id": "echo-bot", "name": "Echo Bot"},
              "replyToId": "c1|0000001"}


def test_typing_line_names_the_sender():
    assert output.typing_line(BOT_TYPING) == "Echo Bot is typing\u2026"
    assert output.typing_line({"type": "typing", "from": {"id": "echo-bot"}}) == "echo-bot is typing\u2026"
    assert output.typing_line({"type": "typing", "from": {"id": "b", "name": ""}}) == "b is typing\u2026"
    assert output.typing_line({"type": "typing", "from": "bot-1"}) == "bot-1 is typing\u2026"  # 1.1's shape
    assert output.typing_line({"type": "typing"}) == "someone is typing\u2026"
    assert output.typing_line({"type": "typing", "from": {"id": 7}}) == "someone is typing\u2026"
    # A name cannot drive the terminal, nor break the line.
    hostile = {"type": "typing", "from": {"name": "Evil\x1b[2J\nBot"}}
    assert output.typing_line(hostile) == "Evil\\x1b[2J\\nBot is typing\u2026"


def test_tail_shows_typing_and_own_only_when_asked():
    mine = {"type": "message", "from": {"id": "user"}, "text": "hi"}
    mine_1_1 = {"from": "user", "text": "hi"}
    reply = {"type": "message", "from": {"id": "echo-bot"}, "text": "echo: hi"}

    def shows(activity: dict, **options: bool) -> bool:
        return commands.tail_shows(activity, user_id="user", include_own=options.get("include_own", False),
                                   typing=options.get("typing", False))

    assert shows(reply) and shows(reply, include_own=True, typing=True)
    assert not shows(BOT_TYPING) and shows(BOT_TYPING, typing=True)
    assert not shows(mine) and not shows(mine_1_1)
    assert shows(mine, include_own=True) and shows(mine_1_1, include_own=True)


class ScriptedConversation:
    """Stands in for a listening Conversation: ``next`` hands out the scripted results in turn."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = list(results)

    def next(self, timeout: float | None = None) -> dict[str, Any]:
        assert timeout is not None and 0 <= timeout <= 1.0, "short slices, so that Ctrl-C is prompt"
        if not self.results:
            raise AssertionError("follow() went on after the end")
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def result(state: str, *activities: dict[str, Any]) -> dict[str, Any]:
    return {"activities": list(activities), "watermark": "3", "state": state, "mode": "websocket",
            "timedOut": not activities}


REPLY = {"type": "message", "from": {"id": "echo-bot", "name": "Echo Bot"}, "text": "echo: hi"}
END = {"type": "endOfConversation", "from": {"id": "echo-bot", "name": "Echo Bot"}}
SCRIPT = [result("online"), result("online", BOT_TYPING), result("reconnecting"), result("online", REPLY),
          result("ended", END), result("ended")]


def follow(as_json: bool, *, typing: bool) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    commands.follow(ScriptedConversation(SCRIPT), output.Output(as_json, stdout, stderr), user_id="user",
                    include_own=False, typing=typing, timeout=None,
                    listening={"mode": "websocket", "state": "connecting"})
    return stdout.getvalue(), stderr.getvalue()


def test_follow_prints_typing_only_with_typing():
    stdout, stderr = follow(False, typing=True)
    assert stdout == "Echo Bot is typing\u2026\nbot: echo: hi\nbot: [endOfConversation]\n"
    assert stderr == ("directline: the connection was lost; reconnecting\u2026\n"
                      "directline: online again\ndirectline: the conversation has ended\n")
    stdout, _ = follow(False, typing=False)
    assert stdout == "bot: echo: hi\nbot: [endOfConversation]\n"


def test_follow_in_json_prints_typing_as_an_activity_and_every_state_change():
    stdout, stderr = follow(True, typing=True)
    assert stderr == ""
    assert json_lines(stdout) == [
        {"event": "state", "state": "connecting", "mode": "websocket"},
        {"event": "state", "state": "online", "mode": "websocket"},
        {"event": "reply", "activity": BOT_TYPING},
        {"event": "state", "state": "reconnecting", "mode": "websocket"},
        {"event": "state", "state": "online", "mode": "websocket"},
        {"event": "reply", "activity": REPLY},
        {"event": "reply", "activity": END},
        {"event": "state", "state": "ended", "mode": "websocket"},
    ]
    stdout, _ = follow(True, typing=False)
    assert {"event": "reply", "activity": BOT_TYPING} not in json_lines(stdout)


def test_follow_reports_failed_then_raises_the_listeners_error():
    failure = directline.ForbiddenError("the service forbade the request (HTTP 403 Forbidden)",
                                        {"status": 10, "httpStatus": 403})
    stdout = io.StringIO()
    with pytest.raises(directline.ForbiddenError):
        commands.follow(ScriptedConversation([result("online", REPLY), failure]),
                        output.Output(True, stdout, io.StringIO()), user_id="user", include_own=False,
                        typing=False, timeout=None, listening={"mode": "polling", "state": "connecting"})
    assert [line.get("state") for line in json_lines(stdout.getvalue())] == [
        "connecting", "online", None, "failed"]


def test_state_notes_for_people():
    assert output.state_note("connecting", None) is None
    assert output.state_note("online", "connecting") is None
    assert output.state_note("online", "reconnecting") == "online again"
    assert output.state_note("reconnecting", "online") == "the connection was lost; reconnecting\u2026"
    assert output.state_note("ended", "online") == "the conversation has ended"
    assert output.state_note("failed", "online") is None  # the error says why
    assert output.state_note("online", "online") is None
