"""A wait that fails part-way loses no reply (the hostile audit's lost-reply case).

The bot's replies span several pages (the emulator's page size is made
small); one page fails (an HTTP status, a timeout or a reset connection) at
every position in turn. The wait that meets it raises (or, for a reset GET
that libcurl sends again by itself, succeeds); the waits after it return
every reply exactly once between them, and nothing more.
"""

from __future__ import annotations

import pytest

import directline

pytestmark = pytest.mark.slow  # 36 failing pages, 12 of them waiting out a timeout: about 30 s

REPLIES = 12
PAGE_SIZE = 5
# 12 sends and 12 echoes: 24 items, so pages 1 to 5 (the 5th is the last
# with items; a 6th, empty, ends the read).
PAGES = 6
FAULTS = {
    "status": {"action": "status", "status": 500},
    "timeout": {"action": "hang", "seconds": 3},
    "reset": {"action": "close"},
}


def texts(activities: list[dict]) -> list[str]:
    return [activity.get("text", "") for activity in activities]


def faults_left(emulator) -> int:
    return sum(rule["count"] for rule in emulator._control("GET", "faults")["faults"])


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("failing_page", range(1, PAGES + 1))
def test_every_reply_comes_back_exactly_once_whichever_page_fails(conversation, emulator, protocol,
                                                                   fault, failing_page):
    emulator.configure(pageSize=PAGE_SIZE)
    for index in range(REPLIES):
        conversation.send_text("user1", f"m{index}")
    list_path = "/activities$" if protocol == "3.0" else "/messages$"
    emulator.fault(method="GET", path=list_path, skip=failing_page - 1, **FAULTS[fault])
    got: list[dict] = []
    with directline.timeouts(total=1.0):
        try:
            got += conversation.wait(timeout=5, after_send=0)
        except directline.DirectLineError:
            pass
    assert faults_left(emulator) == 0, "the fault never fired"
    while True:
        more = conversation.wait(timeout=0.5, interval=0.1, after_send=0)
        if not more:
            break
        got += more
    assert sorted(texts(got)) == sorted(f"echo: m{index}" for index in range(REPLIES))
