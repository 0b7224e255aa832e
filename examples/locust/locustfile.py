"""Load-tests a Direct Line bot with Locust: each simulated user chats in its own conversation.

    pip install 'directline[locust]'
    export DIRECTLINE_SECRET=...        # the bot's Direct Line secret
    locust -f examples/locust/locustfile.py --host https://directline.botframework.com \
        --headless --users 100 --spawn-rate 10 --run-time 5m --csv report

Each user starts a conversation, listens to its WebSocket stream, and then,
every one to three seconds, says something and waits for the bot's answer,
or now and then sends a small file. Locust reports ``send`` (the service's
answer), ``reply`` (send to the bot's first reply), ``first typing`` and
``upload``, alongside ``start conversation``, ``listen`` and, when users
stop, ``end conversation``. docs/load-testing.md explains the metrics and
how to run headless, in the web UI and distributed.
"""

from __future__ import annotations

import random

from locust import between, task

from directline.locust import DirectLineUser

QUESTIONS = ("hello", "what can you do?", "opening hours", "where is my order?", "thanks")


class ChatUser(DirectLineUser):
    wait_time = between(1, 3)

    @task(8)
    def ask(self) -> None:
        self.say(random.choice(QUESTIONS))

    @task(1)
    def send_a_file(self) -> None:
        report = {"data": b"order 1234: two items\n", "filename": "order.txt", "content_type": "text/plain"}
        sent = self.upload([report], activity={"type": "message", "text": "here is my order"})
        self.reply(sent)
