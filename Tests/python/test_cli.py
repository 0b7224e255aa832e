"""The `directline` command (`python3 -m directline`), end to end against the emulator.

Every run goes through a child process with the binding on PYTHONPATH and the
credential in the environment, and checks that the secret never shows in
what the command prints. The progress bar is checked through a real
terminal, in a detached tmux session.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

import pytest

import directline
from directline import _native, cli
from support import REPO_ROOT, SECRET, Emulator, python_env, sender

MIB = 1 << 20
CREDENTIAL_VARIABLES = ("DIRECTLINE_SECRET", "DIRECTLINE_TOKEN", "DIRECTLINE_ENDPOINT", "DIRECTLINE_PROTOCOL")


# ---- helpers ---------------------------------------------------------------------------

def cli_env(emulator: Emulator, *, secret: bool = True, **extra: str) -> dict[str, str]:
    """The child's environment: this very library, the emulator, and the secret unless told not to."""
    env = python_env(DIRECTLINE_LIBRARY=str(Path(_native.lib._name).resolve()))
    for name in CREDENTIAL_VARIABLES:
        env.pop(name, None)
    env["DIRECTLINE_ENDPOINT"] = emulator.url
    if secret:
        env["DIRECTLINE_SECRET"] = SECRET
    env.update(extra)
    return env


def run_cli(emulator: Emulator, *args: str, input: Optional[str] = None, secret: bool = True,
            hidden: Sequence[str] = (), cwd: Optional[Path] = None, **extra: str) -> subprocess.CompletedProcess:
    """Runs `python3 -m directline ARGS`; the secret (and ``hidden``) never appear in its output."""
    # Bytes, decoded here: text=True would turn the progress bar's \r into \n.
    ran = subprocess.run([sys.executable, "-m", "directline", *args], env=cli_env(emulator, secret=secret, **extra),
                         input=None if input is None else input.encode(), cwd=cwd or REPO_ROOT,
                         capture_output=True, timeout=60)
    result = subprocess.CompletedProcess(ran.args, ran.returncode, ran.stdout.decode(), ran.stderr.decode())
    for value in (SECRET, *hidden):
        assert value not in result.stdout + result.stderr
    return result


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def conversation_id_of(stdout: str) -> str:
    """The id a human-output run announces on its first line, `conversation ID`."""
    first = stdout.splitlines()[0]
    assert first.startswith("conversation "), stdout
    return first.split(" ", 1)[1]


def stored(emulator: Emulator, conversation_id: str) -> list[dict]:
    found = emulator.conversation(conversation_id)
    return found.get("activities", found.get("messages", []))


def pattern(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def downloaded(emulator: Emulator, conversation_id: str) -> dict[str, bytes]:
    """Every attachment the emulator stored in the conversation, by name, fetched back."""
    files = {}
    for item in stored(emulator, conversation_id):
        for attachment in item.get("attachments", []):
            url = attachment.get("contentUrl") or attachment["url"]
            with urllib.request.urlopen(url, timeout=10) as response:
                files[attachment["name"]] = response.read()
    return files


def saved_state(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- send -------------------------------------------------------------------------------

def test_send_prints_the_echo(emulator, protocol):
    result = run_cli(emulator, "send", "hello there", "--protocol", protocol)
    assert result.returncode == 0, result.stderr
    conversation_id = conversation_id_of(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[1] == ("sent" if protocol == "1.1" else f"sent {conversation_id}|0000000")
    assert lines[2:] == ["bot: echo: hello there"]
    assert result.stderr == ""


def test_send_json_prints_one_object_per_line(emulator, protocol):
    result = run_cli(emulator, "send", "hi", "--json", "--protocol", protocol, "--linger", "0")
    assert result.returncode == 0, result.stderr
    conversation, sent, *replies = json_lines(result.stdout)
    assert conversation["event"] == "conversation" and conversation["started"] is True
    assert conversation["protocol"] == protocol
    assert sent["event"] == "sent"
    assert (sent["result"] == {}) if protocol == "1.1" else sent["result"]["id"].startswith(
        conversation["conversationId"] + "|")
    assert [reply["event"] for reply in replies] == ["reply"]
    assert replies[0]["activity"]["text"] == "echo: hi"
    assert sender(replies[0]["activity"]) == "echo-bot"
    assert [item["text"] for item in stored(emulator, conversation["conversationId"])] == ["hi", "echo: hi"]


def test_send_an_activity_from_a_file_and_from_stdin(emulator, protocol, tmp_path):
    activity = tmp_path / "activity.json"
    activity.write_text(json.dumps({"text": "from a file", "channelData": {"tag": 7}}))
    result = run_cli(emulator, "send", "--activity", str(activity), "--protocol", protocol, "--json",
                     "--user-id", "alice", "--linger", "0")
    assert result.returncode == 0, result.stderr
    first = json_lines(result.stdout)
    assert first[-1]["activity"]["text"] == "echo: from a file"
    mine = stored(emulator, first[0]["conversationId"])[0]
    assert mine["channelData"]["tag"] == 7 and sender(mine) == "alice"
    if protocol == "3.0":
        assert mine["type"] == "message"

    piped = json.dumps({"from": "bob", "text": "from stdin"} if protocol == "1.1" else
                       {"type": "message", "from": {"id": "bob"}, "text": "from stdin"})
    result = run_cli(emulator, "send", "--activity", "-", "--protocol", protocol, "--linger", "0", input=piped)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "bot: echo: from stdin"
    assert sender(stored(emulator, conversation_id_of(result.stdout))[0]) == "bob"


def test_send_without_waiting_and_a_reply_that_never_comes(emulator, tmp_path):
    result = run_cli(emulator, "send", "quick", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("bot:") for line in result.stdout.splitlines())
    # The echo bot does not answer events: exit code 1 after --timeout.
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "event", "name": "ping"}))
    started = time.monotonic()
    result = run_cli(emulator, "send", "--activity", str(event), "--timeout", "1")
    assert result.returncode == cli.EXIT_NO_REPLY == 1
    assert "no reply from the bot within 1 s" in result.stderr
    assert time.monotonic() - started < 10


# ---- upload -----------------------------------------------------------------------------

def test_upload_one_file(emulator, protocol, tmp_path):
    data = pattern(200_000)
    (tmp_path / "photo.png").write_bytes(data)
    result = run_cli(emulator, "upload", "photo.png", "--protocol", protocol, "--linger", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # stderr is not a terminal: no progress bar
    conversation_id = conversation_id_of(result.stdout)
    assert result.stdout.splitlines()[1].startswith("uploaded") and "(photo.png)" in result.stdout
    assert result.stdout.splitlines()[-1] == "bot: received 1 attachment(s): photo.png (image/png, 200000 bytes)"
    assert downloaded(emulator, conversation_id) == {"photo.png": data}
    (request,) = [entry for entry in emulator.requests() if entry["path"].endswith("/upload")]
    assert request["headers"]["content-type"] == "image/png"  # one raw file, not multipart


def test_upload_several_files_with_text(emulator, protocol, tmp_path):
    files = {"a.bin": pattern(70_000), "notes.txt": b"some notes\n", "c.dat": bytes(range(256)) * 3}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = run_cli(emulator, "upload", *files, "--text", "see attached", "--content-type",
                     "application/x-test", "--protocol", protocol, "--linger", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1] == (
        "bot: received 3 attachment(s): a.bin (application/x-test, 70000 bytes), notes.txt "
        "(application/x-test, 11 bytes), c.dat (application/x-test, 768 bytes); text: see attached")
    assert downloaded(emulator, conversation_id_of(result.stdout)) == files


def test_upload_progress_can_be_forced_onto_a_pipe(emulator, tmp_path):
    (tmp_path / "big.bin").write_bytes(pattern(2 * MIB))
    result = run_cli(emulator, "upload", "big.bin", "--progress", "--no-wait", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("\r") and result.stderr.endswith("\n")
    states = result.stderr.rstrip("\n").split("\r")[1:]
    assert len(states) >= 2
    assert "100%" in states[-1] and "2.0 MiB / 2.0 MiB" in states[-1]
    missing = run_cli(emulator, "upload", "big.bin", "nowhere.bin", cwd=tmp_path)
    assert missing.returncode == cli.exit_code_for_status(directline.Status.ERR_IO) == 14
    assert "nowhere.bin" in missing.stderr


# ---- state, resuming --------------------------------------------------------------------

def test_save_state_then_resume_the_same_conversation(emulator, protocol, tmp_path):
    state = tmp_path / "state.json"
    first = run_cli(emulator, "send", "one", "--protocol", protocol, "--save-state", str(state), "--linger", "0")
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    saved = saved_state(state)
    conversation_id = conversation_id_of(first.stdout)
    assert saved["conversationId"] == conversation_id and saved["token"]
    # The state alone is enough: no secret in the environment.
    second = run_cli(emulator, "send", "two", "--protocol", protocol, "--state", str(state), "--json",
                     "--save-state", str(state), "--linger", "0", secret=False, hidden=[saved["token"]])
    assert second.returncode == 0, second.stderr
    conversation, _sent, *replies = json_lines(second.stdout)
    assert conversation == {"event": "conversation", "conversationId": conversation_id, "protocol": protocol,
                            "started": False}
    assert [reply["activity"]["text"] for reply in replies] == ["echo: two"]  # not "echo: one" again
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert saved_state(state)["watermark"] != saved["watermark"]
    # And by id, with the token from a file: only the replies to this send.
    token_file = tmp_path / "token"
    token_file.write_text(saved["token"] + "\n")
    third = run_cli(emulator, "send", "three", "--protocol", protocol, f"--conversation={conversation_id}",
                    "--token-file", str(token_file), "--linger", "0", hidden=[saved["token"]])
    assert third.returncode == 0, third.stderr
    assert [line for line in third.stdout.splitlines() if line.startswith("bot:")] == ["bot: echo: three"]
    assert [item["text"] for item in stored(emulator, conversation_id)] == [
        "one", "echo: one", "two", "echo: two", "three", "echo: three"]


# ---- tail -------------------------------------------------------------------------------

def start_tail(emulator: Emulator, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "directline", "tail", *args], env=cli_env(emulator),
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_tail_prints_replies_to_another_process_until_idle(emulator, tmp_path):
    state = tmp_path / "state.json"
    assert run_cli(emulator, "send", "start", "--save-state", str(state), "--linger", "0").returncode == 0
    started = time.monotonic()
    tail = start_tail(emulator, "--state", str(state), "--timeout", "2.5")
    timer = threading.Timer(30, tail.kill)  # never hang the suite
    timer.start()
    try:
        lines = []
        for text in ("ping", "pong"):
            sent = run_cli(emulator, "send", text, "--state", str(state), "--no-wait")
            assert sent.returncode == 0, sent.stderr
            lines.append(tail.stdout.readline())  # printed as it comes; the idle timer starts again
        stdout, stderr = tail.communicate(timeout=30)
    finally:
        timer.cancel()
        tail.kill()
        tail.wait()
    assert tail.returncode == 0, stderr
    assert lines == ["bot: echo: ping\n", "bot: echo: pong\n"]  # the user's own lines are not replies
    assert stdout == ""
    assert SECRET not in stdout + stderr and stderr == ""
    assert 2.5 <= time.monotonic() - started < 20


def test_tail_follows_a_conversation_and_ctrl_c_exits_130_quietly(emulator, tmp_path):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        conversation_id = conversation.id
        conversation.send_text("user", "first")
        tail = start_tail(emulator, f"--conversation={conversation_id}", "--save-state", str(tmp_path / "s.json"))
        timer = threading.Timer(30, tail.kill)  # never hang the suite
        timer.start()
        try:
            assert tail.stdout.readline() == "bot: echo: first\n"
            conversation.send_text("user", "second")  # while tail runs
            assert tail.stdout.readline() == "bot: echo: second\n"
            tail.send_signal(signal.SIGINT)
            stdout, stderr = tail.communicate(timeout=20)
        finally:
            timer.cancel()
            tail.kill()
            tail.wait()
    assert tail.returncode == cli.EXIT_INTERRUPTED == 130
    assert stdout == "" and stderr == ""
    saved = saved_state(tmp_path / "s.json")  # saved on Ctrl-C too, the watermark past both replies
    assert saved["conversationId"] == conversation_id and saved["watermark"] == "4"
    assert saved["token"] is None  # the conversation used the client's secret, never written out


def test_ctrl_c_ends_tail_promptly_even_while_the_service_hangs(emulator):
    with directline.Client(emulator.url, secret=SECRET) as client, client.start_conversation() as conversation:
        emulator.fault(method="GET", action="hang", seconds=60, count=-1)
        tail = start_tail(emulator, f"--conversation={conversation.id}")
        timer = threading.Timer(30, tail.kill)  # never hang the suite
        timer.start()
        try:
            time.sleep(2.0)  # tail is now inside a poll the service never answers
            interrupted = time.monotonic()
            tail.send_signal(signal.SIGINT)
            tail.communicate(timeout=20)
            took = time.monotonic() - interrupted
        finally:
            timer.cancel()
            tail.kill()
            tail.wait()
        emulator.reset()
    assert tail.returncode == 130
    assert took < 2.5, f"Ctrl-C took {took:.1f} s"


@pytest.mark.parametrize("option", ["--secret-file", "--token-file"])
def test_a_credential_given_instead_of_a_file_name_is_never_echoed(emulator, option):
    value = "Xq7-not-a-file-but-a-credential-9ZZ"
    result = run_cli(emulator, "send", "hi", option, value)
    assert result.returncode == cli.EXIT_USAGE
    assert value not in result.stdout + result.stderr
    assert option in result.stderr


# ---- tokens -----------------------------------------------------------------------------

def test_token_generate_and_refresh(emulator, protocol):
    generated = run_cli(emulator, "token", "generate", "--json", "--protocol", protocol)
    assert generated.returncode == 0, generated.stderr
    (line,) = json_lines(generated.stdout)
    assert line["event"] == "token"
    token = line["result"]["token"]
    assert token and generated.stderr == ""
    refreshed = run_cli(emulator, "token", "refresh", "--json", "--protocol", protocol, secret=False,
                        DIRECTLINE_TOKEN=token)
    assert refreshed.returncode == 0, refreshed.stderr
    (line,) = json_lines(refreshed.stdout)
    assert line["event"] == "token" and line["result"]["token"] not in ("", token)
    if protocol == "3.0":
        assert line["result"]["expires_in"] > 0
        human = run_cli(emulator, "token", "generate", "--user-id", "dl_alice", "--user-name", "Alice")
        assert human.returncode == 0, human.stderr
        (bare,) = human.stdout.splitlines()  # the token alone, for $(...)
        started = run_cli(emulator, "send", "hi", "--json", "--linger", "0", secret=False,
                          DIRECTLINE_TOKEN=bare, hidden=[bare])
        assert started.returncode == 0, started.stderr
        assert sender(stored(emulator, json_lines(started.stdout)[0]["conversationId"])[0]) == "dl_alice"


# ---- errors and exit codes --------------------------------------------------------------

def test_missing_credentials_exit_2_and_send_nothing(emulator, tmp_path):
    (tmp_path / "x.bin").write_bytes(b"x")
    for args in (["send", "hi"], ["upload", "x.bin"], ["token", "generate"], ["token", "refresh"]):
        result = run_cli(emulator, *args, secret=False, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "DIRECTLINE_" in result.stderr and "error:" in result.stderr
    assert json.loads(run_cli(emulator, "send", "hi", "--json", secret=False).stderr)["error"]["exitCode"] == 2
    assert emulator.requests() == []


def test_a_service_error_gives_its_documented_exit_code(emulator, protocol):
    path = "/messages$" if protocol == "1.1" else "/activities$"
    emulator.fault(method="POST", path=path, count=-1, action="status", status=502)
    result = run_cli(emulator, "send", "hi", "--protocol", protocol)
    expected = cli.exit_code_for_status(directline.Status.ERR_BOT)
    assert expected == 25 and result.returncode == expected
    assert "DL_ERR_BOT" in result.stderr and "502" in result.stderr
    result = run_cli(emulator, "send", "hi", "--protocol", protocol, "--json")
    assert result.returncode == expected
    error = json.loads(result.stderr)["error"]
    assert error["name"] == "DL_ERR_BOT" and error["httpStatus"] == 502 and error["exitCode"] == 25
    assert error["delivery"] == "unknown"


def test_a_bad_activity_is_an_invalid_argument_and_sends_nothing(emulator, tmp_path):
    bad = tmp_path / "bad.json"
    code = cli.exit_code_for_status(directline.Status.ERR_INVALID_ARGUMENT)
    assert code == 11
    for content in ('{"text": "unfinished', "[1, 2]", ""):
        bad.write_text(content)
        result = run_cli(emulator, "send", "--activity", str(bad))
        assert result.returncode == code, (content, result.stderr)
        assert "bad.json" in result.stderr and "DL_ERR_INVALID_ARGUMENT" in result.stderr
    result = run_cli(emulator, "send", "--activity", "-", "--json", input="{nope")
    assert result.returncode == code
    assert json.loads(result.stderr)["error"]["status"] == directline.Status.ERR_INVALID_ARGUMENT
    result = run_cli(emulator, "send", "--activity", str(tmp_path / "missing.json"))
    assert result.returncode == cli.exit_code_for_status(directline.Status.ERR_IO)
    assert emulator.requests() == []


def test_a_secret_or_token_cannot_be_an_argument(emulator):
    for args in (["send", "--secret", SECRET, "hi"], ["send", f"--secret={SECRET}", "hi"],
                 ["token", "refresh", "--token", SECRET], ["tail", "--conversation", "c", "--token", SECRET],
                 ["send", "hi", "--unknown", SECRET]):
        result = run_cli(emulator, *args)  # checks that SECRET is not echoed
        assert result.returncode == 2, (args, result.stderr)
        assert "error:" in result.stderr
    assert "never taken on the command line" in run_cli(emulator, "send", "--secret", SECRET, "x").stderr
    # No option of any subcommand takes a credential.
    parser = cli.build_parser()
    parsers = [parser]
    options = []
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            options += action.option_strings
            if isinstance(action.choices, dict):
                parsers += action.choices.values()
    assert "--secret-file" in options and "--token-file" in options
    assert not {"--secret", "--token", "--password", "--key"} & set(options)
    assert all(current.allow_abbrev is False for current in [parser])  # "--secret" is no abbreviation


def test_help_explains_credentials_and_exit_codes(emulator):
    result = run_cli(emulator, "send", "--help")
    assert result.returncode == 0
    assert "never accepted as an option value" in result.stdout
    assert "exit codes:" in result.stdout and "10+N" in result.stdout and "130" in result.stdout


def test_the_exit_code_tables_match_the_library_statuses():
    documented = {}
    for line in (REPO_ROOT / "docs" / "cli.md").read_text().splitlines():
        cells = [cell.strip(" `") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit() and cells[1].startswith("DL_ERR_"):
            documented[cells[1]] = int(cells[0])
    statuses = [status for status in directline.Status if status != directline.Status.OK]
    assert documented == {status.c_name: cli.exit_code_for_status(status) for status in statuses}
    assert all(cli.exit_code_for_status(status) == 10 + status for status in statuses)
    epilog = cli.EPILOG.split()
    pairs = [(int(code), name) for code, name in zip(epilog, epilog[1:]) if name.startswith("DL_ERR_")]
    assert len(pairs) >= 10 and all(documented[name] == code for code, name in pairs)


# ---- a real terminal --------------------------------------------------------------------


def ensure_tmux() -> str:
    """The tmux binary, installed with apt-get when missing (as the repository's scripts do)."""
    found = shutil.which("tmux")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("tmux is not installed and apt-get is not available")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "tmux"], env=env, capture_output=True, timeout=300)
    found = shutil.which("tmux")
    if not found:
        pytest.skip("tmux could not be installed")
    return found


def test_upload_progress_bar_in_a_real_terminal(emulator, tmp_path):
    tmux = ensure_tmux()
    size = 3 * MIB
    (tmp_path / "big.bin").write_bytes(pattern(size))
    env = cli_env(emulator, TERM="xterm")
    env.pop("TMUX", None)  # our own server, even when the tests run inside tmux
    exports = "".join(f"export {name}={shlex.quote(env[name])}\n" for name in
                      ("PYTHONPATH", "DIRECTLINE_LIBRARY", "DIRECTLINE_ENDPOINT", "DIRECTLINE_SECRET"))
    script = tmp_path / "run.sh"
    script.write_text(  # the secret goes through this file, not a command line
        f"{exports}cd {shlex.quote(str(tmp_path))}\n"
        "while [ ! -e go ]; do sleep 0.05; done\n"
        f"{shlex.quote(sys.executable)} -m directline upload big.bin --linger 0\n"
        'echo "exit=$?" > done.tmp && mv done.tmp done\n'
        "sleep 60\n")
    socket = str(tmp_path / "tmux.sock")
    log = tmp_path / "raw.log"

    def tmux_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tmux, "-S", socket, *args], env=env, capture_output=True, text=True, timeout=20)

    started = tmux_run("new-session", "-d", "-x", "120", "-y", "20", "-s", "cli", f"sh {shlex.quote(str(script))}")
    assert started.returncode == 0, started.stderr
    try:
        piped = tmux_run("pipe-pane", "-o", "-t", "cli", f"cat > {shlex.quote(str(log))}")
        assert piped.returncode == 0, piped.stderr
        (tmp_path / "go").touch()
        deadline = time.monotonic() + 30
        # Done, and `cat` has written out the raw output up to the bot's reply.
        while not ((tmp_path / "done").exists() and log.exists() and b"bot: " in log.read_bytes()):
            assert time.monotonic() < deadline, tmux_run("capture-pane", "-p", "-t", "cli").stdout
            time.sleep(0.1)
        assert (tmp_path / "done").read_text().strip() == "exit=0"
        pane = tmux_run("capture-pane", "-p", "-S", "-", "-t", "cli").stdout
        raw = log.read_bytes().decode(errors="replace")  # not read_text: it would turn \r into \n
    finally:
        tmux_run("kill-server")
    assert SECRET not in pane + raw
    # On screen: one progress line, redrawn in place, in its final state.
    bars = [line for line in pane.splitlines() if line.startswith("big.bin [")]
    assert len(bars) == 1, pane
    assert "100%" in bars[0] and "3.0 MiB / 3.0 MiB" in bars[0] and "/s" in bars[0]
    assert "bot: received 1 attachment(s): big.bin (application/octet-stream, 3145728 bytes)" in pane
    # In the raw output: several states, each drawn over the last with \r.
    states = [chunk for chunk in raw.split("\r") if chunk.startswith("big.bin [")]
    assert len(states) >= 3, raw
    percents = [state.split("]")[1].split("%")[0].strip() for state in states]
    assert percents[-1] == "100" and len(set(percents)) >= 3
    assert downloaded(emulator, conversation_id_of(pane.strip())) == {"big.bin": pattern(size)}
