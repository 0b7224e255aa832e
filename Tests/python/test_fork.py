"""A process forked after the library was used (multiprocessing's "fork"
start method, a pre-fork server's workers) gets a library of its own: no
connection shared with the parent, correlation ids of its own, refreshes
that run.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

import directline
from support import SECRET

SENDS = 25
CHILDREN = 3


def send_many(conversation: directline.Conversation, sender: str, results: Any) -> None:
    sent = [conversation.send_text(sender, f"{sender} {index}") for index in range(SENDS)]
    results.put([(sender, result["clientActivityID"], result["id"]) for result in sent])


def test_children_and_parent_each_get_the_answers_to_their_own_sends(emulator):
    context = multiprocessing.get_context("fork")
    with directline.Client(emulator.url, secret=SECRET) as client:
        with client.start_conversation() as conversation:
            conversation.send_text("parent", "warm the connection pool")
            results = context.Queue()
            children = [context.Process(target=send_many, args=(conversation, f"child{index}", results))
                        for index in range(CHILDREN)]
            for child in children:
                child.start()
            send_many(conversation, "parent", results)
            for child in children:
                child.join(60)
                assert child.exitcode == 0
            sent = [row for _ in range(CHILDREN + 1) for row in results.get(timeout=10)]
            stored = emulator.conversation(conversation.id)["activities"]
    by_id = {activity["id"]: activity for activity in stored}
    for sender, correlation, activity_id in sent:
        activity = by_id[activity_id]
        # The answer a process got is for the activity it sent, not another's.
        assert activity["from"]["id"] == sender
        assert activity["channelData"]["clientActivityID"] == correlation
    correlations = [correlation for _, correlation, _ in sent]
    assert len(set(correlations)) == len(correlations), "a child repeated another process's ids"


def refresh_in_child(conversation: directline.Conversation, results: Any) -> None:
    before = conversation.info()["tokenExpiresAt"]
    time.sleep(2.5)
    info = conversation.info()
    results.put((before, info["tokenExpiresAt"], info["autoRefresh"], info["tokenRefreshError"]))


@pytest.mark.parametrize("protocol", ["3.0"])
def test_a_child_keeps_refreshing_the_tokens_it_inherited(emulator, protocol):
    emulator.configure(tokenLifetime=3)
    context = multiprocessing.get_context("fork")
    with directline.Client(emulator.url, secret=SECRET, protocol=protocol) as client:
        with client.start_conversation() as conversation:
            results = context.Queue()
            child = context.Process(target=refresh_in_child, args=(conversation, results))
            child.start()
            child.join(30)
            assert child.exitcode == 0
            before, after, auto_refresh, refresh_error = results.get(timeout=5)
    assert auto_refresh and refresh_error is None
    assert before != after, "the child's inherited token was never refreshed"
