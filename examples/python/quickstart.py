"""Say hello to a bot over Direct Line, send it a file, print its replies, and end.

Usage:
    DIRECTLINE_SECRET=... python3 quickstart.py [ENDPOINT]

The endpoint comes from the first argument, else DIRECTLINE_ENDPOINT, else
the public service. Run it from a checkout with
PYTHONPATH=bindings/python so that `import directline` finds the binding.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import directline

USER_ID = "quickstart-user"


def print_replies(activities: list[dict[str, Any]]) -> bool:
    """Prints the bot's replies; False if none came."""
    for activity in activities:
        print(f"bot: {activity.get('text')}")
    if not activities:
        print("no reply from the bot", file=sys.stderr)
    return bool(activities)


def main() -> int:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DIRECTLINE_ENDPOINT")
    secret = os.environ.get("DIRECTLINE_SECRET")
    if not secret:
        print("set DIRECTLINE_SECRET to your bot's Direct Line secret", file=sys.stderr)
        return 2

    with directline.Client(endpoint, secret=secret) as client:
        with client.start_conversation() as conversation:
            # Receive in the background: the WebSocket stream on 3.0, else polling.
            print(f"listening: {conversation.listen()['mode']}")
            conversation.send_text(USER_ID, "hello")
            print(f"sent 'hello' to conversation {conversation.id}")
            # Returns as soon as the bot's answer arrives (or 10 s pass).
            if not print_replies(conversation.wait(timeout=10)):
                return 1

            conversation.upload_bytes(USER_ID, b"Hello from a file!\n",
                                      content_type="text/plain", filename="hello.txt")
            print("uploaded hello.txt")
            if not print_replies(conversation.wait(timeout=10)):
                return 1

            conversation.end(USER_ID)  # 3.0: tells the bot with endOfConversation
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except directline.DirectLineError as error:
        print(f"Direct Line error ({error.name}): {error}", file=sys.stderr)
        sys.exit(1)
