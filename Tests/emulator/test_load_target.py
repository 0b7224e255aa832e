"""The bot as a load target: replies after the send's answer (replyDelaySeconds,
fixed or random), typing on or off (typingBeforeReply), the conversations
summary, and the command line that sets them (--reply-delay, --no-typing)
and the listen queue (--backlog).

Run from the repository root: python3 -m pytest Tests/emulator/test_load_target.py -q

Timing: assertions are about order and "not before the delay" (the server's
own timestamps); upper bounds are loose, the machine may be busy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_stream import REPO, V3, Api, closed_with, open_stream, receive, texts, wait_until  # noqa: E402

from emulator.scheduler import ReplyScheduler  # noqa: E402
from emulator.server import start_in_thread  # noqa: E402

SLACK = 2.0  # seconds a reply may come late on a busy machine


def stamp(activity: dict) -> datetime:
    return datetime.strptime(activity["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")


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


# -- the send is answered first, the reply comes later ---------------------------------

def test_send_is_answered_at_once_and_the_reply_stored_after_the_delay(api):
    delay = 1.5
    assert api.config(replyDelaySeconds=delay)["replyDelaySeconds"] == delay
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        began = time.monotonic()
        sent = api.send(conversation, "later")
        answered = time.monotonic() - began
        right_after = api.activities(conversation)["activities"]
        assert answered < delay * 0.6, f"the send was held {answered:.3f} s"
        assert [a["text"] for a in right_after] == ["later"], "no reply before the delay"
        user, typing, reply = receive(ws), receive(ws), receive(ws, timeout=delay + SLACK)
        arrived = time.monotonic() - began
    assert texts(user) == [("message", "later")]
    assert typing["activities"][0]["type"] == "typing"
    assert typing["activities"][0]["replyToId"] == sent
    assert texts(reply) == [("message", "echo: later")]
    assert reply["activities"][0]["replyToId"] == sent
    assert reply["watermark"] == "2"
    assert arrived >= delay - 0.05
    # On the server's clock: typing with the send, the reply a whole delay after it.
    assert (stamp(typing["activities"][0]) - stamp(user["activities"][0])).total_seconds() < delay / 2
    assert (stamp(reply["activities"][0]) - stamp(user["activities"][0])).total_seconds() >= delay
    later = api.activities(conversation)["activities"]
    assert [(a["text"], a.get("replyToId")) for a in later] == [("later", None), ("echo: later", sent)]


def test_random_reply_delays_spread_within_the_range(api):
    low, high = 0.1, 0.3
    assert api.config(replyDelaySeconds=[low, high])["replyDelaySeconds"] == [low, high]
    conversation = api.start()
    sent = [api.send(conversation, f"m{n}") for n in range(10)]
    wait_until(lambda: len(stored(api, conversation)["activities"]) == 20, timeout=high + SLACK + 5)
    activities = stored(api, conversation)["activities"]
    users = {a["id"]: a for a in activities if a["from"]["id"] == "user1"}
    lags = sorted((stamp(a) - stamp(users[a["replyToId"]])).total_seconds()
                  for a in activities if a["from"]["id"] == "echo-bot")
    assert sorted(users) == sorted(sent) and len(lags) == 10
    assert lags[0] >= low, lags
    assert lags[-1] <= high + SLACK, lags
    assert lags[-1] - lags[0] >= 0.03, f"random delays should spread: {lags}"


def test_slow_and_bot_delay_still_hold_the_send_and_the_reply_delay_comes_after(api):
    api.config(replyDelaySeconds=0.4, botDelaySeconds=0.2)
    conversation = api.start()
    began = time.monotonic()
    sent = api.send(conversation, "slow:0.3")
    assert time.monotonic() - began >= 0.5  # thinking 0.3 + botDelay 0.2, before the answer
    assert [a["text"] for a in api.activities(conversation)["activities"]] == ["slow:0.3"]
    wait_until(lambda: len(api.activities(conversation)["activities"]) == 2, timeout=0.4 + SLACK)
    user, reply = stored(api, conversation)["activities"]
    assert reply["replyToId"] == sent and reply["text"] == "echo: slow:0.3"
    assert (stamp(reply) - stamp(user)).total_seconds() >= 0.9


# -- typing ----------------------------------------------------------------------------

@pytest.mark.parametrize("delay", [0, 0.3])
def test_typing_before_reply_false_sends_no_typing(api, delay):
    settings = api.config(typingBeforeReply=False, replyDelaySeconds=delay)
    assert settings["typingBeforeReply"] is False
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        api.send(conversation, "quiet")
        user, reply = receive(ws), receive(ws, timeout=delay + SLACK)
        api.control("POST", f"streams/{conversation['conversationId']}", {"action": "close"})
        closed_with(ws)  # nothing between the reply and the close: no late typing either
    assert texts(user) == [("message", "quiet")]
    assert texts(reply) == [("message", "echo: quiet")]
    assert api.streams() == []
    [closed] = api.control("GET", "streams")["closed"]
    assert closed["framesSent"] == 2


def test_typing_before_reply_true_sends_typing_at_once_and_the_reply_after(api):
    assert api.config(replyDelaySeconds=0.3)["typingBeforeReply"] is True
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        sent = api.send(conversation, "hello")
        sets = [receive(ws), receive(ws), receive(ws, timeout=0.3 + SLACK)]
    assert [s["activities"][0]["type"] for s in sets] == ["message", "typing", "message"]
    typing, reply = sets[1]["activities"][0], sets[2]["activities"][0]
    assert typing["replyToId"] == reply["replyToId"] == sent
    assert (stamp(reply) - stamp(typing)).total_seconds() >= 0.25


# -- end, 1.1, reset, stop ----------------------------------------------------------------

def test_end_with_a_reply_delay_ends_the_conversation_later_and_drops_later_replies(api):
    api.config(replyDelaySeconds=0.6)
    conversation = api.start()
    with open_stream(conversation["streamUrl"]) as ws:
        ending = api.send(conversation, "end")
        api.send(conversation, "one more")  # its reply is due after the end: dropped
        assert stored(api, conversation)["ended"] is False
        sets = [receive(ws) for _ in range(4)]
        assert [texts(s) for s in sets] == [[("message", "end")], [("typing", None)],
                                            [("message", "one more")], [("typing", None)]]
        final = receive(ws, timeout=0.6 + SLACK)
        assert closed_with(ws).rcvd.code == 1000
    bot_end = final["activities"][0]
    assert (bot_end["type"], bot_end["code"], bot_end["replyToId"]) == (
        "endOfConversation", "completedSuccessfully", ending)
    time.sleep(0.6 + 0.3)
    after = stored(api, conversation)
    assert after["ended"] is True
    assert [(a["type"], a.get("text")) for a in after["activities"]] == [
        ("message", "end"), ("message", "one more"), ("endOfConversation", None)]


def test_a_user_end_drops_the_pending_reply(api):
    api.config(replyDelaySeconds=0.4)
    conversation = api.start()
    api.send(conversation, "hi")
    api.send(conversation, type="endOfConversation")
    time.sleep(0.4 + 0.4)
    assert [a["type"] for a in stored(api, conversation)["activities"]] == ["message", "endOfConversation"]


def test_v1_reply_delay(api):
    api.config(replyDelaySeconds=1.0)
    conversation = start_v1(api)
    began = time.monotonic()
    assert send_v1(api, conversation, "old school") == 204
    assert time.monotonic() - began < 0.6
    path = f"/api/conversations/{conversation['conversationId']}/messages"

    def messages() -> list[dict]:
        return json.loads(api.call("GET", path, auth=conversation["token"])[2])["messages"]

    assert [m["text"] for m in messages()] == ["old school"]
    wait_until(lambda: len(messages()) == 2, timeout=1.0 + SLACK)
    user, reply = messages()
    assert (reply["from"], reply["text"]) == ("echo-bot", "echo: old school")
    created = [datetime.strptime(m["created"], "%Y-%m-%dT%H:%M:%S.%fZ") for m in (user, reply)]
    assert (created[1] - created[0]).total_seconds() >= 1.0


def test_reset_drops_pending_replies(api, handle, capfd):
    api.config(replyDelaySeconds=0.5)
    old = api.start()
    api.send(old, "forgotten")
    old_v1 = start_v1(api)
    send_v1(api, old_v1, "forgotten too")
    assert handle.emulator.replies.pending() == 2
    api.control("POST", "reset")
    assert handle.emulator.replies.pending() == 0
    api.config(replyDelaySeconds=0.5)
    fresh = api.start()
    time.sleep(0.5 + 0.5)
    assert stored(api, fresh)["activities"] == []
    assert api.call("GET", f"/_emulator/conversations/{old['conversationId']}", auth=None)[0] == 404
    assert api.control("GET", "conversations")["conversations"] == [
        {"id": fresh["conversationId"], "protocol": "3.0", "ended": False, "activities": 0, "users": []}]
    assert "Traceback" not in capfd.readouterr().err


def test_a_reply_scheduled_for_a_conversation_reset_away_is_dropped(api, handle):
    """A send still in the handler (here: thinking) when the reset comes."""
    api.config(replyDelaySeconds=0.2)
    conversation = api.start()
    sender = threading.Thread(target=api.send, args=(conversation, "slow:0.4"))
    sender.start()
    time.sleep(0.15)
    api.control("POST", "reset")
    api.config(replyDelaySeconds=0.2)  # the reset restored 0; the send read its settings before
    sender.join(5)
    time.sleep(0.5)
    assert handle.emulator.replies.pending() == 0
    assert api.control("GET", "conversations")["conversations"] == []


def test_stop_ends_the_scheduler_promptly_with_replies_pending():
    with start_in_thread() as own:
        own_api = Api(own)
        own_api.config(replyDelaySeconds=3600)
        conversation = own_api.start()
        for n in range(5):
            own_api.send(conversation, f"n{n}")
        assert own.emulator.replies.pending() == 5 and own.emulator.replies.running()
        began = time.monotonic()
        own.stop()
        assert time.monotonic() - began < 5
        assert own.emulator.replies.pending() == 0
        assert not own.emulator.replies.running()


def test_one_thread_holds_every_pending_reply(api):
    api.config(replyDelaySeconds=[0.5, 1.0])
    conversations = [api.start() for _ in range(5)]
    before = threading.active_count()
    for round_ in range(20):
        for conversation in conversations:
            api.send(conversation, f"r{round_}")
    assert threading.active_count() <= before + 1
    wait_until(lambda: all(len(stored(api, c)["activities"]) == 40 for c in conversations),
               timeout=1.0 + SLACK + 5)


def test_scheduler_runs_jobs_in_due_order_and_refuses_after_stop():
    scheduler = ReplyScheduler(name="test-scheduler")
    ran: list[str] = []
    done = threading.Event()
    scheduler.schedule(0.3, lambda: (ran.append("late"), done.set()))
    scheduler.schedule(0.1, lambda: ran.append("early"))
    scheduler.schedule(0.0, lambda: 1 / 0)  # a failing job does not stop the others
    scheduler.schedule(0.2, lambda: ran.append("middle"))
    assert done.wait(5)
    assert ran == ["early", "middle", "late"]
    scheduler.stop()
    assert scheduler.schedule(0, lambda: ran.append("after")) is False
    time.sleep(0.1)
    assert ran == ["early", "middle", "late"]


# -- config -----------------------------------------------------------------------------

def test_reply_config_is_validated(api):
    for bad in ({"replyDelaySeconds": -1}, {"replyDelaySeconds": "0.2"}, {"replyDelaySeconds": True},
                {"replyDelaySeconds": 3601}, {"replyDelaySeconds": []}, {"replyDelaySeconds": [0.1]},
                {"replyDelaySeconds": [0.3, 0.1]}, {"replyDelaySeconds": [0.1, 0.2, 0.3]},
                {"replyDelaySeconds": [-0.1, 0.2]}, {"replyDelaySeconds": [0.1, 3601]},
                {"replyDelaySeconds": [False, 1]}, {"replyDelaySeconds": ["0", "1"]},
                {"replyDelaySeconds": {"min": 0, "max": 1}},
                {"typingBeforeReply": 0}, {"typingBeforeReply": "false"}):
        status, _, data = api.call("POST", "/_emulator/config", bad, auth=None)
        assert status == 400, bad
        error = json.loads(data)["error"]
        assert error["code"] == "BadArgument" and next(iter(bad)) in error["message"], (bad, error)
    settings = api.control("GET", "config")
    assert (settings["replyDelaySeconds"], settings["typingBeforeReply"]) == (0.0, True)
    assert api.config(replyDelaySeconds=2)["replyDelaySeconds"] == 2.0
    assert api.config(replyDelaySeconds=[0, 3600])["replyDelaySeconds"] == [0.0, 3600.0]
    assert api.config(replyDelaySeconds=[0.25, 0.25])["replyDelaySeconds"] == [0.25, 0.25]
    assert api.config(typingBeforeReply=False)["typingBeforeReply"] is False


def test_a_zero_range_replies_before_the_answer(api):
    api.config(replyDelaySeconds=[0, 0])
    conversation = api.start()
    api.send(conversation, "now")
    assert [a["text"] for a in api.activities(conversation)["activities"]] == ["now", "echo: now"]


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


# -- command line ---------------------------------------------------------------------

def listen_queue(port: int) -> int:
    """The backlog of the socket listening on `port`, as `ss` shows it (Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[2])


def test_cli_reply_delay_no_typing_and_backlog():
    process = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--quiet",
                                "--reply-delay", "0.1:0.2", "--no-typing", "--backlog", "512"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        match = re.fullmatch(r"directline-emulator listening on http://127\.0\.0\.1:(\d+)\n", first)
        assert match, first

        class Handle:
            port = int(match.group(1))
            stream_port = 0

        cli = Api(Handle)
        settings = cli.control("GET", "config")
        assert (settings["replyDelaySeconds"], settings["typingBeforeReply"]) == ([0.1, 0.2], False)
        # The command line's values are the start-up ones a reset restores.
        assert cli.control("POST", "reset")["replyDelaySeconds"] == [0.1, 0.2]
        conversation = cli.start()
        began = time.monotonic()
        cli.send(conversation, "cli")
        assert time.monotonic() - began < 1
        wait_until(lambda: len(cli.activities(conversation)["activities"]) == 2, timeout=0.2 + SLACK)
        if shutil.which("ss"):
            stream_port = cli.control("GET", "streams")["port"]
            assert listen_queue(Handle.port) == 512
            assert listen_queue(stream_port) == 512
        process.terminate()
        assert process.wait(5) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_default_backlog_is_128_on_both_ports():
    if shutil.which("ss") is None:
        pytest.skip("needs the ss tool")
    with start_in_thread() as own:
        assert listen_queue(own.port) == 128
        assert listen_queue(own.stream_port) == 128


@pytest.mark.parametrize("args, complaint", [
    (["--reply-delay", "x"], "--reply-delay"),
    (["--reply-delay", "0.3:0.1"], "MIN must not be more than MAX"),
    (["--reply-delay", "-1"], "--reply-delay"),
    (["--reply-delay", "1:2:3"], "--reply-delay"),
    (["--reply-delay", "3601"], "from 0 to 3600"),
    (["--backlog", "0"], "--backlog"),
])
def test_cli_refuses_bad_reply_delay_and_backlog(args, complaint):
    done = subprocess.run([sys.executable, "-m", "emulator", "--port", "0", "--quiet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert complaint in done.stderr and done.stdout == ""
