"""The emulator as a load target: the conversations summary.

Run from the repository root: python3 -m pytest Tests/emulator/test_load_target.py -q
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_stream import V3, Api  # noqa: E402

from emulator.server import start_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def handle():
    running = start_in_thread()
    yield running
    running.stop()


@pytest.fixture
def api(handle) -> Api:
    made = Api(handle)
    made.control("POST", "reset")
    return made


def stored(api: Api, conversation: dict) -> dict:
    return api.control("GET", f"conversations/{conversation['conversationId']}")


def send_v1(api: Api, conversation: dict, text: str) -> int:
    status, _, _ = api.call("POST", f"/api/conversations/{conversation['conversationId']}/messages",
                            {"from": "user1", "text": text}, auth=conversation["token"])
    return status


def start_v1(api: Api) -> dict:
    status, _, data = api.call("POST", "/api/conversations")
    assert status == 200, data
    return json.loads(data)


# -- GET /_emulator/conversations ----------------------------------------------------------

def test_conversations_summary(api):
    assert api.control("GET", "conversations") == {"conversations": []}
    first, second = api.start(), api.start()
    api.send(first, "hi", **{"from": {"id": "alice"}})
    api.send(first, "me too", **{"from": {"id": "bob"}})
    api.send(first, "again", **{"from": {"id": "alice"}})
    api.send(second, "end", **{"from": {"id": "carol"}})
    status, _, data = api.call("POST", f"{V3}/tokens/generate", {"user": {"id": "dl_dave"}})
    unstarted = json.loads(data)
    welcomed = json.loads(api.call("POST", f"{V3}/conversations", {"locale": "fr-FR"})[2])
    legacy = start_v1(api)
    send_v1(api, legacy, "from 1.1")
    api.call("POST", f"/api/conversations/{legacy['conversationId']}/messages", {"text": "anonymous"},
             auth=legacy["token"])
    summary = api.control("GET", "conversations")["conversations"]
    assert summary == [
        {"id": first["conversationId"], "protocol": "3.0", "ended": False, "activities": 6,
         "users": ["alice", "bob"]},
        {"id": second["conversationId"], "protocol": "3.0", "ended": True, "activities": 2,
         "users": ["carol"]},
        {"id": unstarted["conversationId"], "protocol": "3.0", "ended": False, "activities": 0, "users": []},
        {"id": welcomed["conversationId"], "protocol": "3.0", "ended": False, "activities": 1, "users": []},
        {"id": legacy["conversationId"], "protocol": "1.1", "ended": False, "activities": 4,
         "users": ["user1"]},
    ]
    # The one-conversation view is still there.
    assert stored(api, second)["ended"] is True
