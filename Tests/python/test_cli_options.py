"""The `directline` command's locale, identification, header and token endpoint options.

Each run is a child process (`python3 -m directline`) against the emulator,
checked through what it prints, its exit code and the emulator's request
log; the secret never shows in the output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from directline import _native
from support import REPO_ROOT, SECRET, Emulator, python_env

CREDENTIAL_VARIABLES = ("DIRECTLINE_SECRET", "DIRECTLINE_TOKEN", "DIRECTLINE_TOKEN_ENDPOINT", "DIRECTLINE_ENDPOINT",
                        "DIRECTLINE_PROTOCOL")
API_VERSION = "2022-03-01-preview"
TOKEN_PATH = "/powervirtualagents/botsbyschema/cr1_bot/directline/token"


def token_url(emulator: Emulator) -> str:
    return f"{emulator.url}{TOKEN_PATH}?api-version={API_VERSION}"


def run_cli(*args: str, input: Optional[str] = None, **env: str) -> subprocess.CompletedProcess:
    """Runs `python3 -m directline ARGS` with exactly the credentials and endpoint in ``env``."""
    child_env = python_env(DIRECTLINE_LIBRARY=str(Path(_native.lib._name).resolve()))
    for name in CREDENTIAL_VARIABLES:
        child_env.pop(name, None)
    child_env.update(env)
    result = subprocess.run([sys.executable, "-m", "directline", *args], env=child_env, input=input,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert SECRET not in result.stdout + result.stderr
    return result


def with_secret(emulator: Emulator, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_cli(*args, DIRECTLINE_ENDPOINT=emulator.url, DIRECTLINE_SECRET=SECRET, **env)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def starts(emulator: Emulator) -> list[dict[str, Any]]:
    return [entry for entry in emulator.requests()
            if entry["method"] == "POST" and entry["path"].endswith("/v3/directline/conversations")]


def replies(stdout: str) -> list[str]:
    return [line["activity"]["text"] for line in json_lines(stdout) if line["event"] == "reply"]


# ---- --locale ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["send", "upload"])
def test_locale_goes_in_the_start_body(emulator, command, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("hello")
    what = ["hi"] if command == "send" else [str(note)]
    result = with_secret(emulator, command, *what, "--locale", "fr-CA", "--json", "--linger", "0.3")
    assert result.returncode == 0, result.stderr
    (start,) = starts(emulator)
    assert json.loads(start["body"]) == {"locale": "fr-CA"}
    assert "welcome (fr-CA)" in replies(result.stdout)


def test_without_locale_the_start_body_has_none(emulator):
    result = with_secret(emulator, "send", "hi", "--json")
    assert result.returncode == 0, result.stderr
    (start,) = starts(emulator)
    assert "locale" not in json.loads(start["body"] or "{}")


@pytest.mark.parametrize("where", [["--state", "saved.json"], ["--conversation", "abc"]],
                         ids=["state", "conversation"])
def test_locale_with_an_existing_conversation_is_a_usage_error(emulator, where):
    result = with_secret(emulator, "send", "hi", "--locale", "fr-FR", *where)
    assert result.returncode == 2
    assert "--locale" in result.stderr and where[0] in result.stderr
    assert emulator.requests() == []


def test_a_malformed_locale_is_the_librarys_invalid_argument(emulator):
    result = with_secret(emulator, "send", "hi", "--locale", "fr_FR")
    assert result.returncode == 11 and "locale" in result.stderr
    assert emulator.requests() == []


# ---- --bot-agent and --header --------------------------------------------------------------------

def test_bot_agent_and_headers_go_with_every_request(emulator):
    result = with_secret(emulator, "send", "hi", "--bot-agent", "Kiosk/3", "--header", "X-Source: kiosk-12",
                         "--header", "X-Trace:a:b:c ", "--header", "X-Spaced:   two words  ")
    assert result.returncode == 0, result.stderr
    log = emulator.requests()
    assert {entry["method"] for entry in log} == {"POST", "GET"}
    for entry in log:
        assert entry["headers"]["x-ms-bot-agent"].endswith("; Kiosk/3)")
        assert entry["headers"]["x-source"] == "kiosk-12"
        assert entry["headers"]["x-trace"] == "a:b:c"  # split at the first ':' only
        assert entry["headers"]["x-spaced"] == "two words"


def test_token_generate_carries_the_bot_agent(emulator):
    result = with_secret(emulator, "token", "generate", "--bot-agent", "Issuer/1")
    assert result.returncode == 0, result.stderr
    (entry,) = emulator.requests()
    assert entry["headers"]["x-ms-bot-agent"].endswith("; Issuer/1)")


def test_a_header_without_a_colon_is_a_usage_error_naming_it(emulator):
    result = with_secret(emulator, "send", "hi", "--header", "X-Api-Key=hunter2")
    assert result.returncode == 2
    assert "--header" in result.stderr and "NAME: VALUE" in result.stderr
    assert "hunter2" not in result.stderr  # a header may hold a key: never echoed
    assert emulator.requests() == []


def test_a_refused_header_is_the_librarys_invalid_argument(emulator):
    result = with_secret(emulator, "send", "hi", "--header", "Authorization: Bearer x", "--json")
    assert result.returncode == 11
    error = json.loads(result.stderr)["error"]
    assert "Authorization" in error["message"]
    assert emulator.requests() == []


def test_a_bad_bot_agent_is_the_librarys_invalid_argument(emulator):
    result = with_secret(emulator, "send", "hi", "--bot-agent", "My(App)")
    assert result.returncode == 11 and "botAgent" in result.stderr
    assert emulator.requests() == []


# ---- --token-endpoint ----------------------------------------------------------------------------

def test_a_copilot_studio_token_endpoint_needs_no_endpoint(emulator):
    result = run_cli("send", "hello", "--token-endpoint", token_url(emulator), "--json")
    assert result.returncode == 0, result.stderr
    conversation = json_lines(result.stdout)[0]
    assert conversation["event"] == "conversation" and conversation["started"] is True
    assert replies(result.stdout) == ["echo: hello"]
    paths = [entry["path"] for entry in emulator.requests()]
    assert paths[:2] == [TOKEN_PATH, "/powervirtualagents/regionalchannelsettings"]
    assert paths[2] == "/region/europe/v3/directline/conversations"
    assert all(path.startswith("/region/europe/") for path in paths[2:])
    assert emulator.conversation(conversation["conversationId"])["started"] is True


def test_the_token_endpoint_comes_from_the_environment(emulator):
    result = run_cli("send", "hello", DIRECTLINE_TOKEN_ENDPOINT=token_url(emulator))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "bot: echo: hello"
    assert [entry["path"] for entry in emulator.requests()][0] == TOKEN_PATH


def test_the_secret_in_the_environment_wins_over_a_token_endpoint_there(emulator):
    result = with_secret(emulator, "send", "hello", DIRECTLINE_TOKEN_ENDPOINT=token_url(emulator))
    assert result.returncode == 0, result.stderr
    assert [entry["path"] for entry in emulator.requests()][0] == "/v3/directline/conversations"


def test_an_explicit_token_endpoint_wins_over_the_environments_secret(emulator):
    result = with_secret(emulator, "send", "hello", "--token-endpoint", token_url(emulator))
    assert result.returncode == 0, result.stderr
    log = emulator.requests()
    assert log[0]["path"] == TOKEN_PATH
    start = next(entry for entry in log if entry["path"].endswith("/v3/directline/conversations"))
    assert start["headers"]["authorization"] != "Bearer " + SECRET


@pytest.mark.parametrize("other", [["--secret-file", "-"], ["--token-file", "-"]], ids=["secret", "token"])
def test_two_explicit_credentials_are_a_usage_error(emulator, other):
    result = run_cli("send", "hi", "--token-endpoint", token_url(emulator), *other, input=SECRET + "\n",
                     DIRECTLINE_ENDPOINT=emulator.url)
    assert result.returncode == 2
    assert "--token-endpoint" in result.stderr and other[0] in result.stderr
    assert emulator.requests() == []


def test_token_generate_prints_the_endpoints_token(emulator):
    emulator.configure(tokenEndpointLifetime=120)
    result = run_cli("token", "generate", "--json", "--token-endpoint", token_url(emulator))
    assert result.returncode == 0, result.stderr
    (printed,) = json_lines(result.stdout)
    assert printed["event"] == "token"
    assert set(printed["result"]) == {"token", "expires_in", "conversationId"}
    assert printed["result"]["expires_in"] == 120
    assert [(entry["method"], entry["path"]) for entry in emulator.requests()] == [("GET", TOKEN_PATH)]
    human = run_cli("token", "generate", DIRECTLINE_TOKEN_ENDPOINT=token_url(emulator))
    assert human.returncode == 0, human.stderr
    (token,) = human.stdout.splitlines()
    assert token and token != printed["result"]["token"]


def test_token_generate_with_a_token_endpoint_takes_no_user(emulator):
    result = run_cli("token", "generate", "--user-id", "dl_me", "--token-endpoint", token_url(emulator))
    assert result.returncode == 2 and "--user-id" in result.stderr
    assert emulator.requests() == []


def test_a_failing_token_endpoint_exits_with_the_mapped_status(emulator):
    emulator.fault(path="/directline/token$", action="status", status=403, count=-1)
    result = run_cli("send", "hi", "--token-endpoint", token_url(emulator), "--json")
    assert result.returncode == 20  # DL_ERR_FORBIDDEN
    error = json.loads(result.stderr)["error"]
    assert "tokenEndpoint" in error["message"]
    assert [entry["path"] for entry in emulator.requests()] == [TOKEN_PATH]


def test_a_state_saved_with_a_token_endpoint_resumes_with_it(emulator, tmp_path):
    state = tmp_path / "state.json"
    first = run_cli("send", "one", "--token-endpoint", token_url(emulator), "--save-state", str(state))
    assert first.returncode == 0, first.stderr
    emulator.fault(path="/directline/token$", action="status", status=500, count=-1)  # not asked again
    second = run_cli("send", "two", "--state", str(state), "--json", DIRECTLINE_TOKEN_ENDPOINT=token_url(emulator))
    assert second.returncode == 0, second.stderr
    assert replies(second.stdout) == ["echo: two"]
    assert [entry["path"] for entry in emulator.requests()].count(TOKEN_PATH) == 1


def test_a_conversation_id_with_only_a_token_endpoint_is_a_usage_error(emulator):
    result = run_cli("tail", "--conversation", "abc", "--token-endpoint", token_url(emulator))
    assert result.returncode == 2 and "DIRECTLINE_TOKEN" in result.stderr
    assert emulator.requests() == []


def test_regional_settings_endpoint_option(emulator):
    emulator.configure(region="asia")
    settings = f"{emulator.url}/powervirtualagents/regionalchannelsettings?api-version={API_VERSION}"
    result = run_cli("send", "hi", "--regional-settings-endpoint", settings, DIRECTLINE_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    paths = [entry["path"] for entry in emulator.requests()]
    assert paths[0] == "/powervirtualagents/regionalchannelsettings"
    assert all(path.startswith("/region/asia/") for path in paths[1:]) and len(paths) > 1


def test_help_names_the_new_options(emulator):
    result = run_cli("send", "--help")
    assert result.returncode == 0
    for option in ("--locale", "--bot-agent", "--header", "--regional-settings-endpoint", "--token-endpoint",
                   "DIRECTLINE_TOKEN_ENDPOINT"):
        assert option in result.stdout


# ---- international file names ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["3.0", "1.1"])
def test_upload_of_a_file_with_a_non_ascii_name(emulator, tmp_path, protocol):
    """One file: a raw upload, its name in filename* (the emulator refuses raw
    UTF-8 in the header); two files: multipart, the UTF-8 name quoted."""
    one = tmp_path / "r\u00e9sum\u00e9 \u62a5\u544a.txt"
    one.write_text("hello")
    two = tmp_path / "\u00fcber.txt"
    two.write_text("x")
    for files in ([one], [one, two]):
        result = with_secret(emulator, "upload", *map(str, files), "--protocol", protocol, "--json", "--linger", "0.3")
        assert result.returncode == 0, result.stderr
    uploads = [entry for entry in emulator.requests() if entry["path"].endswith("/upload")]
    assert [entry["filenames"] for entry in uploads] == [[one.name], [one.name, two.name]]
    raw = uploads[0]["headers"]["content-disposition"]
    assert raw == ('name="file"; filename="r_sum_ __.txt"; '
                   "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%8A%A5%E5%91%8A.txt")
