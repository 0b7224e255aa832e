"""directline.locust: Locust users over the binding, run as Locust runs them.

Every test runs Locust in a child process (`python3 -m locust`), headless,
with a locustfile written here or the example's, against the emulator, and
reads its CSV report. Never in this process: importing Locust patches the
standard library for gevent.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from support import REPO_ROOT, SECRET, python_env

EXAMPLE = REPO_ROOT / "examples" / "locust" / "locustfile.py"

# Looked up, never imported here: importing Locust patches this process for gevent.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="scripts/common.sh installs locust; directline[locust] needs it")


class Run:
    """One finished Locust run: its process result and its CSV report."""

    def __init__(self, result: subprocess.CompletedProcess[str], prefix: Path, results: Path) -> None:
        self.result = result
        self.output = result.stdout + result.stderr
        with open(f"{prefix}_stats.csv", newline="") as stats:
            self.stats = {row["Name"]: row for row in csv.DictReader(stats) if row["Name"] != "Aggregated"}
        with open(f"{prefix}_failures.csv", newline="") as failures:
            self.failures = list(csv.DictReader(failures))
        self.results = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []

    def count(self, name: str) -> int:
        return int(self.stats[name]["Request Count"]) if name in self.stats else 0

    def failed(self, name: str) -> int:
        return int(self.stats[name]["Failure Count"]) if name in self.stats else 0

    def describe(self) -> str:
        return f"exit {self.result.returncode}\nstats {self.stats}\nfailures {self.failures}\n{self.output[-4000:]}"


def locustfile(tmp_path: Path, body: str) -> Path:
    """A locustfile with the imports every one here needs, and `record()` to report to the test."""
    path = tmp_path / "scenario.py"
    path.write_text(textwrap.dedent("""\
        import json, os, time
        import gevent
        from locust import constant, task
        from directline.locust import DirectLineUser, DirectLineFailure

        def record(**values):
            with open(os.environ["RESULTS"], "a") as out:
                out.write(json.dumps(values) + "\\n")
        """) + textwrap.dedent(body))
    return path


def chat_scenario(tmp_path: Path, task: str, *attributes: str, prelude: str = "") -> Path:
    """A locustfile whose one user class, Chat, runs `task` (the body of its one task method).

    `attributes` are the class's lines (default `wait_time = constant(60)`:
    the task runs once); `prelude` goes before the class."""
    lines = attributes or ("wait_time = constant(60)",)
    body = (textwrap.dedent(prelude) + "\nclass Chat(DirectLineUser):\n"
            + "".join(f"    {line}\n" for line in lines)
            + "\n    @task\n    def chat(self):\n" + textwrap.indent(textwrap.dedent(task), "        "))
    return locustfile(tmp_path, body)


def run_locust(tmp_path: Path, file: Path, url: str, *arguments: str, timeout: float = 120,
               **environment: str) -> Run:
    prefix = tmp_path / "report"
    results = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "locust", "-f", str(file), "--host", url, "--headless",
               "--csv", str(prefix), "--loglevel", "WARNING", *arguments]
    env = python_env(**{"DIRECTLINE_SECRET": SECRET, "RESULTS": str(results), **environment})
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    return Run(result, prefix, results)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_say_reports_start_listen_send_reply_typing_and_end(emulator: Any, tmp_path: Path) -> None:
    scenario = locustfile(tmp_path, """\
        class Chat(DirectLineUser):
            wait_time = constant(60)

            @task
            def chat(self):
                # The library is online once the upgrade is answered; the
                # emulator's stream takes live typing a moment later.
                gevent.sleep(0.3)
                reply = self.say("hello")
                record(user=self.user_id, text=reply["text"], replyTo=reply.get("replyToId"))

            def on_stop(self):
                conversation = self.conversation
                super().on_stop()
                record(user=self.user_id, closed=conversation.closed)
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "3", "-r", "3", "--run-time", "4s")
    assert run.result.returncode == 0, run.describe()
    for name in ("start conversation", "listen", "send", "reply", "first typing"):
        assert run.count(name) == 3 and run.failed(name) == 0, (name, run.describe())
    # Locust writes its CSV before stopping users: the ends are in the
    # summary it prints last (and in the emulator's log, below).
    assert "end conversation" in run.output
    assert run.stats["send"]["Type"] == "directline"
    replies = [entry for entry in run.results if "text" in entry]
    assert [entry["text"] for entry in replies] == ["echo: hello"] * 3
    assert all(entry["replyTo"] for entry in replies)
    # on_stop freed every handle.
    assert [entry["closed"] for entry in run.results if "closed" in entry] == [True] * 3
    # Each user started its own conversation, spoke in it as itself, and ended it.
    posts = [request for request in emulator.requests() if request["method"] == "POST"]
    starts = [request for request in posts if request["path"] == "/v3/directline/conversations"]
    assert len(starts) == 3
    users = {entry["user"] for entry in replies}
    ends = [json.loads(request["body"]) for request in posts if request["path"].endswith("/activities")
            and json.loads(request["body"])["type"] == "endOfConversation"]
    assert sorted(end["from"]["id"] for end in ends) == sorted(users)
    assert all(user.startswith("dl_locust-") for user in users)


def test_a_send_that_waits_does_not_stall_the_other_greenlets(emulator: Any, tmp_path: Path) -> None:
    # The emulator holds a send whose text is `slow:1.5` for 1.5 s. Were the
    # send called on the hub's thread, the ticking greenlet could not run.
    scenario = locustfile(tmp_path, """\
        class Slow(DirectLineUser):
            wait_time = constant(60)

            @task
            def slow(self):
                ticks = [0]
                def tick():
                    while True:
                        gevent.sleep(0.02)
                        ticks[0] += 1
                ticker = gevent.spawn(tick)
                started = time.perf_counter()
                self.say("slow:1.5")
                elapsed = time.perf_counter() - started
                ticker.kill()
                record(ticks=ticks[0], elapsed=elapsed)
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "5s")
    assert run.result.returncode == 0, run.describe()
    [result] = run.results
    assert result["elapsed"] >= 1.5
    # 75 ticks of 20 ms fit in 1.5 s; a blocked hub gives 0 or 1.
    assert result["ticks"] >= 20, result


def test_every_429_is_reported_and_its_retry_after_waited(emulator: Any, tmp_path: Path) -> None:
    emulator.fault(method="POST", path="/activities$", count=1, action="status", status=429, retryAfter="1")
    scenario = chat_scenario(tmp_path, """\
        record(text=self.say("hello")["text"])
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "5s")
    assert run.result.returncode == 1, run.describe()  # Locust's exit status when anything failed
    assert run.results == [{"text": "echo: hello"}]
    assert (run.count("send"), run.failed("send")) == (2, 1), run.describe()
    [failure] = run.failures
    assert (failure["Name"], failure["Occurrences"]) == ("send", "1")
    assert failure["Error"].startswith("DL_ERR_THROTTLED: "), failure
    # The reply is timed from the first attempt: it includes the wait.
    assert (run.count("reply"), run.failed("reply")) == (1, 0)
    assert float(run.stats["reply"]["Min Response Time"]) >= 1000
    sends = [request for request in emulator.requests() if request["method"] == "POST"
             and request["path"].endswith("/activities") and json.loads(request["body"])["type"] == "message"]
    assert sorted(request["status"] for request in sends) == [200, 429]
    # Sent again as the same activity.
    first, second = (json.loads(request["body"])["channelData"]["clientActivityID"] for request in sends)
    assert first == second


def test_a_throttled_send_gives_up_after_throttle_retries(emulator: Any, tmp_path: Path) -> None:
    emulator.fault(method="POST", path="/activities$", count=3, action="status", status=429, retryAfter="0")
    scenario = chat_scenario(tmp_path, """\
        try:
            self.say("hello")
        except DirectLineFailure as failure:
            record(error=failure.error.name, message=str(failure))
        """, 'wait_time = constant(60)', 'throttle_retries = 2')
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "3s")
    assert (run.count("send"), run.failed("send")) == (3, 3), run.describe()
    assert run.results[0]["error"] == "DL_ERR_THROTTLED"
    assert run.count("reply") == 0


def test_protocol_1_1_polls_and_reports_replies_without_typing(emulator: Any, tmp_path: Path) -> None:
    scenario = chat_scenario(tmp_path, """\
        reply = self.say("hello")
        record(reply=reply, protocol=self.conversation.info()["protocol"])
        """, 'wait_time = constant(60)', 'poll_interval = 0.1')
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "2", "-r", "2", "--run-time", "3s",
                     "--directline-protocol", "1.1")
    assert run.result.returncode == 0, run.describe()
    assert run.count("reply") == 2 and run.count("start conversation") == 2
    assert "first typing" not in run.stats  # typing comes only over the 3.0 stream
    assert all(entry["reply"]["text"] == "echo: hello" and entry["protocol"] == "1.1" for entry in run.results)
    assert len(run.results) == 2
    assert not [request for request in emulator.requests() if "/v3/" in request["path"]]
    assert any(request["path"].endswith("/messages") and request["method"] == "GET"
               for request in emulator.requests())


def test_polling_on_3_0_when_asked(emulator: Any, tmp_path: Path) -> None:
    scenario = chat_scenario(tmp_path, """\
        record(text=self.say("hello")["text"])
        """, 'wait_time = constant(60)', 'poll_interval = 0.1')
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "3s",
                     DIRECTLINE_MODE="polling")
    assert run.result.returncode == 0, run.describe()
    assert run.results == [{"text": "echo: hello"}]
    paths = [request["path"] for request in emulator.requests()]
    assert not any(path.endswith("/stream") for path in paths)
    assert any(path.endswith("/activities") for path in paths)


def test_a_refused_secret_is_a_failure_named_by_its_status_and_options_beat_attributes(
        emulator: Any, tmp_path: Path) -> None:
    scenario = chat_scenario(tmp_path, """\
        record(text=self.say("hello")["text"])
        """, 'wait_time = constant(60)', 'secret = "not-the-secret"')
    refused = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "3s",
                         DIRECTLINE_SECRET="")
    assert refused.result.returncode == 1, refused.describe()
    assert refused.failed("start conversation") >= 1 and refused.count("send") == 0
    assert all(failure["Error"].startswith("DL_ERR_FORBIDDEN: ") for failure in refused.failures), refused.failures
    assert "not-the-secret" not in refused.output
    assert "Traceback" not in refused.output

    (tmp_path / "results.jsonl").unlink(missing_ok=True)
    accepted = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "3s",
                          "--directline-secret", SECRET)
    assert accepted.result.returncode == 0, accepted.describe()
    assert accepted.results == [{"text": "echo: hello"}]


def test_expect_and_upload(emulator: Any, tmp_path: Path) -> None:
    scenario = chat_scenario(tmp_path, """\
        sent = self.upload([{"data": b"12345", "filename": "a.txt", "content_type": "text/plain"}],
                           activity={"text": "my file"})
        reply = self.reply(sent)
        self.send({"type": "message", "text": "second"})
        echoed = self.expect(lambda activity: activity.get("text") == "echo: second", name="second echo")
        try:
            self.expect(lambda activity: False, timeout=0.3, name=None)
        except DirectLineFailure as failure:
            missing = str(failure)
        record(reply=reply["text"], echoed=echoed["text"], missing=missing)
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "4s")
    assert run.result.returncode == 0, run.describe()
    [result] = run.results
    assert result == {"reply": "received 1 attachment(s): a.txt (text/plain, 5 bytes); text: my file",
                      "echoed": "echo: second", "missing": "nothing expected within 0.3 s"}
    assert run.count("upload") == 1 and run.count("second echo") == 1 and run.count("reply") == 1
    assert run.count("send") == 1 and "expect" not in run.stats


@pytest.mark.slow
def test_distributed_headless_run_of_the_example_50_users_on_two_workers(emulator: Any, tmp_path: Path) -> None:
    # A bot that answers 200 ms after a send that is answered at once, with
    # typing first: the example's users report send, reply and first typing.
    emulator.configure(replyDelaySeconds=0.2, typingBeforeReply=True)
    port = free_port()
    prefix = tmp_path / "report"
    env = python_env(DIRECTLINE_SECRET=SECRET)
    common = [sys.executable, "-m", "locust", "-f", str(EXAMPLE), "--loglevel", "WARNING"]
    master = subprocess.Popen(
        [*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
         "--expect-workers", "2", "--expect-workers-max-wait", "60", "--headless", "--users", "50",
         "--spawn-rate", "25", "--run-time", "20s", "--host", emulator.url, "--csv", str(prefix)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen([*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    try:
        output, _ = master.communicate(timeout=150)
        worker_outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    run = Run(subprocess.CompletedProcess(master.args, master.returncode, output, ""), prefix, tmp_path / "none")
    assert master.returncode == 0, run.describe() + "\n".join(worker_outputs)
    assert all(worker.returncode == 0 for worker in workers), worker_outputs
    for name in ("start conversation", "listen", "send", "reply", "first typing"):
        assert run.count(name) > 0 and run.failed(name) == 0, (name, run.describe())
    assert run.count("start conversation") == 50
    assert run.failures == []
    # The bot's 200 ms is in every reply; the typing comes before it.
    assert float(run.stats["reply"]["Min Response Time"]) >= 200
    assert float(run.stats["first typing"]["Median Response Time"]) < float(run.stats["reply"]["Median Response Time"])

    # The emulator saw every user's conversation: 50, each with one user of
    # its own, each ended when its user stopped.
    conversations = emulator.conversations()
    assert len(conversations) == 50
    users = [conversation["users"] for conversation in conversations]
    assert all(len(owners) == 1 and owners[0].startswith("dl_locust-") for owners in users), users
    assert len({owners[0] for owners in users}) == 50
    assert all(conversation["ended"] for conversation in conversations)
    assert all(conversation["protocol"] == "3.0" for conversation in conversations)


def test_collecting_these_tests_leaves_the_test_process_unpatched() -> None:
    # Importing Locust monkey-patches threading and sockets for gevent: in
    # pytest's own process that would turn every other test's threads into
    # greenlets (a blocked C call then stalls them all).
    probe = ("import sys, pytest; pytest.main(['-q', '--co', '-p', 'no:cacheprovider', sys.argv[1]]); "
             "print('patched' if 'gevent' in sys.modules or 'locust' in sys.modules else 'clean')")
    result = subprocess.run([sys.executable, "-c", probe, __file__], cwd=Path(__file__).parent,
                            capture_output=True, text=True, timeout=120, env=python_env())
    assert result.stdout.strip().splitlines()[-1] == "clean", result.stdout + result.stderr


def test_a_report_that_yields_does_not_make_reply_sleep_through_its_reply(emulator: Any, tmp_path: Path) -> None:
    # A request listener that waits (as one shipping metrics over a socket
    # does) lets the receiving greenlet bring the reply while reply() is
    # still reporting the typing; the reply must not be slept through.
    emulator.configure(replyDelaySeconds=0.2)
    scenario = chat_scenario(tmp_path, """\
        started = time.perf_counter()
        text = self.say("hello")["text"]
        record(text=text, seconds=time.perf_counter() - started)
        """, 'wait_time = constant(60)', 'reply_timeout = 3', prelude="""\
        from locust import events

        def slow_listener(name, **_):
            if name == "first typing":
                gevent.sleep(0.5)

        events.request.add_listener(slow_listener)
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "6s")
    assert run.result.returncode == 0, run.describe()
    [result] = run.results
    assert result["text"] == "echo: hello"
    assert result["seconds"] < 2.5, result  # not the 3 s timeout


def test_a_reply_that_does_not_come_is_a_reply_failure_and_the_user_goes_on(emulator: Any, tmp_path: Path) -> None:
    emulator.configure(replyDelaySeconds=2)
    scenario = chat_scenario(tmp_path, """\
        record(attempt=True)
        self.say("hello")
        record(unreachable=True)
        """, 'wait_time = constant(0.1)', 'reply_timeout = 0.5')
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "3s")
    assert run.result.returncode == 1, run.describe()
    assert run.failed("reply") >= 2 and run.count("reply") == run.failed("reply"), run.describe()
    assert all(failure["Error"] == "no reply within 0.5 s" for failure in run.failures if failure["Name"] == "reply")
    assert run.failed("send") == 0
    assert {"unreachable": True} not in run.results and len(run.results) >= 2  # each task abandoned, the next run
    assert "Traceback" not in run.output


def test_after_the_bot_ends_the_conversation_expect_still_reads_it_and_the_next_say_starts_anew(
        emulator: Any, tmp_path: Path) -> None:
    scenario = chat_scenario(tmp_path, """\
        first = self.conversation.id
        ended = self.say("end")           # the emulator's bot ends the conversation
        try:
            self.expect(lambda activity: False, timeout=5, name="nothing")
        except DirectLineFailure as failure:
            quick = str(failure)
        again = self.say("hello")
        record(ended=ended["type"], quick=quick, again=again["text"],
               new=self.conversation.id != first)
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "4s")
    [result] = run.results
    assert result == {"ended": "endOfConversation", "quick": "the conversation ended before anything expected came",
                      "again": "echo: hello", "new": True}, run.describe()
    assert run.count("start conversation") == 2
    assert float(run.stats["nothing"]["Max Response Time"]) < 2000  # not the 5 s timeout


def test_a_listener_that_cannot_start_makes_the_next_call_start_afresh(emulator: Any, tmp_path: Path) -> None:
    # 1.1 has no stream: every listen fails, and each say starts again
    # rather than sending into a conversation nothing reads.
    scenario = chat_scenario(tmp_path, """\
        self.say("hello")
        """, 'wait_time = constant(0.2)', 'protocol = "1.1"', 'mode = "websocket"')
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "2s")
    assert run.result.returncode == 1, run.describe()
    assert run.failed("listen") >= 2 and run.count("listen") == run.failed("listen")
    assert run.count("start conversation") == run.count("listen")
    assert run.count("send") == 0 and run.count("reply") == 0
    assert all(failure["Error"].startswith("DL_ERR_UNSUPPORTED: ") for failure in run.failures), run.failures


def test_an_upload_sent_again_after_a_429_is_the_same_activity(emulator: Any, tmp_path: Path) -> None:
    emulator.fault(method="POST", path="/upload$", count=1, action="status", status=429, retryAfter="0")
    scenario = chat_scenario(tmp_path, """\
        sent = self.upload([{"data": b"abc", "filename": "a.txt"}], activity={"text": "file"})
        record(id=sent.client_activity_id, text=self.reply(sent)["text"])
        """)
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "3s")
    assert (run.count("upload"), run.failed("upload")) == (2, 1), run.describe()
    [result] = run.results
    assert result["text"].startswith("received 1 attachment(s): a.txt")
    uploads = [request for request in emulator.requests() if request["path"].endswith("/upload")]
    marks = [request["body"].count(result["id"]) for request in uploads]
    assert len(uploads) == 2 and all(marks), marks


def test_a_stopping_user_waits_end_timeout_for_its_end_at_most(emulator: Any, tmp_path: Path) -> None:
    # Once the user has spoken, every activity POST hangs: the ends at stop
    # get no answer. Locust runs on_stop to its end whatever --stop-timeout
    # says, so the end's own bound is all that keeps the run's end near.
    scenario = chat_scenario(tmp_path, """\
        self.say("hello")
        rule = json.dumps({"method": "POST", "path": "/activities$", "count": -1, "action": "hang"})
        request = urllib.request.Request(self.host + "/_emulator/faults", data=rule.encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request).read()
        record(hung=True)
        """, 'wait_time = constant(60)', 'end_timeout = 1', prelude="""\
        import urllib.request
        """)
    started = time.monotonic()
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "2", "-r", "2", "--run-time", "3s",
                     "--stop-timeout", "1", DIRECTLINE_THREADS="1")
    elapsed = time.monotonic() - started
    assert len(run.results) == 2, run.describe()
    assert "no answer within end_timeout (1 s)" in run.output, run.describe()
    # With the library's 30 s request timeout, two ends on one thread took
    # over a minute; bounded, both are abandoned within a second each.
    assert elapsed < 25, elapsed


def test_a_user_stopped_while_starting_still_ends_and_frees_its_conversation(emulator: Any, tmp_path: Path) -> None:
    emulator.fault(method="POST", path="/conversations$", count=-1, action="delay", seconds=2)
    scenario = chat_scenario(tmp_path, """\
        self.say("hello")
        """)
    run_locust(tmp_path, scenario, emulator.url, "-u", "2", "-r", "2", "--run-time", "1s")
    conversations = emulator.conversations()
    assert len(conversations) == 2
    assert all(conversation["ended"] for conversation in conversations), conversations


def test_a_bad_thread_count_is_a_clear_failure_not_a_traceback(emulator: Any, tmp_path: Path) -> None:
    scenario = chat_scenario(tmp_path, """\
        self.say("hello")
        """, 'wait_time = constant(0.5)', 'threads = 0')
    run = run_locust(tmp_path, scenario, emulator.url, "-u", "1", "-r", "1", "--run-time", "2s")
    assert run.result.returncode == 1, run.describe()
    assert run.failed("start conversation") >= 2 and run.count("send") == 0
    assert all(failure["Error"].startswith("configuration: threads must be an integer of at least 1, not 0")
               for failure in run.failures), run.failures
    assert "Traceback" not in run.output
    # Given on the command line, Locust's own parser refuses it before any user runs.
    refused = subprocess.run([sys.executable, "-m", "locust", "-f", str(scenario), "--headless",
                              "--directline-threads", "many"], env=python_env(), cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--directline-threads" in refused.stderr, refused.stderr
