"""Public names stay importable from the modules code imports them from.

``directline.client`` and ``directline.cli`` were single modules before
their code moved into modules of its own; what they offered, they still
offer, and the installed command still starts at ``directline.cli:main``.
"""

from __future__ import annotations

import importlib
import re

import directline
import pytest
from directline import cli, client, conversation
from support import BINDINGS

CLI_NAMES = [
    "DEFAULT_ENDPOINT", "ENDPOINT_ENV", "EPILOG", "EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "EXIT_NO_REPLY",
    "EXIT_OK", "EXIT_STATUS_BASE", "EXIT_STATUS_MAX", "EXIT_USAGE", "PROG", "PROTOCOL_ENV", "SECRET_ENV",
    "TOKEN_ENV", "Credentials", "NoReply", "Output", "ProgressBar", "Session", "UsageError", "build_parser",
    "exit_code_for_status", "main", "wait_for_replies", "write_state",
]


def test_directline_client_offers_both_classes_and_the_upload_aliases():
    assert client.Client is directline.Client
    assert client.Conversation is directline.Conversation is conversation.Conversation
    assert client.StrPath is conversation.StrPath
    assert client.FileItem is conversation.FileItem


@pytest.mark.parametrize("name", CLI_NAMES)
def test_directline_cli_offers_each_of_its_public_names(name):
    assert hasattr(cli, name)
    assert name in cli.__all__


def test_client_and_conversation_share_one_handle_base():
    base = importlib.import_module("directline._handle").NativeObject
    for cls in (directline.Client, directline.Conversation):
        assert issubclass(cls, base)
        for method in ("__enter__", "__exit__", "__del__"):
            assert getattr(cls, method) is getattr(base, method), (cls.__name__, method)


def test_the_installed_command_and_python_m_start_at_directline_cli_main():
    scripts = re.search(r"^\[project\.scripts\]\n(.*?)(?:^\[|\Z)",
                        (BINDINGS / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL)
    assert scripts, "pyproject.toml has no [project.scripts]"
    assert 'directline = "directline.cli:main"' in scripts.group(1)
    assert callable(cli.main)
    assert importlib.import_module("directline.__main__").main is cli.main
