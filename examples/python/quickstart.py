"""Say hello to a bot over Direct Line, send it a file, and print its replies.

Usage:
    DIRECTLINE_SECRET=... python3 quickstart.py [ENDPOINT]

The endpoint comes from the first argument, else DIRECTLINE_ENDPOINT, else
the public service. Run it from a checkout with
PYTHONPATH=bindings/python so that `import directline` finds the binding.
"""

import os
import sys
import time

import directline

USER_ID = "quickstart-user"


def print_reply(conversation: directline.Conversation, activity_id: str) -> bool:
    """Prints the bot's reply to `activity_id`; False if none came."""
    # Poll a few times: the bot may take a moment to answer.
    for _ in range(10):
        time.sleep(0.3)
        for activity in conversation.get_activities()["activities"]:
            if activity.get("replyToId") == activity_id:
                print(f"bot replied: {activity.get('text')}")
                return True
    print("no reply from the bot", file=sys.stderr)
    return False


def main() -> int:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DIRECTLINE_ENDPOINT")
    secret = os.environ.get("DIRECTLINE_SECRET")
    if not secret:
        print("set DIRECTLINE_SECRET to your bot's Direct Line secret", file=sys.stderr)
        return 2

    with directline.Client(endpoint, secret=secret) as client:
        with client.start_conversation() as conversation:
            sent = conversation.send_text(USER_ID, "hello")
            print(f"sent 'hello' to conversation {conversation.id}")
            if not print_reply(conversation, sent["id"]):
                return 1

            uploaded = conversation.upload_bytes(USER_ID, b"Hello from a file!\n",
                                                 content_type="text/plain", filename="hello.txt")
            print("uploaded hello.txt")
            if not print_reply(conversation, uploaded["id"]):
                return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except directline.DirectLineError as error:
        print(f"Direct Line error ({error.name}): {error}", file=sys.stderr)
        sys.exit(1)
