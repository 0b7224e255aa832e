"""Save a Direct Line conversation and resume it later.

A server holding the secret hands a token to a client; the client starts
the conversation with it, talks, saves the conversation's state (which holds
its token: store it like a password), and a later run resumes from the
saved watermark, so no reply is lost or read twice.

Usage:
    DIRECTLINE_ENDPOINT=http://127.0.0.1:3978 DIRECTLINE_SECRET=... python3 resume.py
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import directline

USER_ID = "dl_resume-user"


def say(conversation: directline.Conversation, text: str) -> bool:
    """Sends `text` and prints the replies; False if none came."""
    conversation.send_text(USER_ID, text)
    replies = conversation.wait(timeout=10)
    print(f"you: {text}")
    for reply in replies:
        print(f"bot: {reply.get('text')}")
    return bool(replies)


def main() -> int:
    endpoint = os.environ.get("DIRECTLINE_ENDPOINT")
    secret = os.environ.get("DIRECTLINE_SECRET")
    if not secret:
        print("set DIRECTLINE_SECRET to your bot's Direct Line secret", file=sys.stderr)
        return 2

    # The server side: exchange the secret for a token bound to a user.
    with directline.Client(endpoint, secret=secret) as server:
        token: str = server.generate_token(user_id=USER_ID)["token"]

    # The client side holds only the token.
    with directline.Client(endpoint, token=token) as client:
        with client.start_conversation() as conversation:
            if not say(conversation, "hello"):
                return 1
            saved: dict[str, Any] = conversation.state()
        stored = json.dumps(saved)  # e.g. into a database row, encrypted
        print(f"saved the conversation ({len(stored)} bytes of state)")

        with client.resume(json.loads(stored)) as conversation:
            print(f"resumed conversation {conversation.id} at watermark {conversation.watermark}")
            if not say(conversation, "still there?"):
                return 1
            conversation.end(USER_ID)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except directline.DirectLineError as error:
        print(f"Direct Line error ({error.name}): {error}", file=sys.stderr)
        sys.exit(1)
