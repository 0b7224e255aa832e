"""Say hello to a bot over Direct Line and print its reply.

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

            # Poll a few times: the bot may take a moment to answer.
            for _ in range(10):
                time.sleep(0.3)
                for activity in conversation.get_activities()["activities"]:
                    if activity.get("replyToId") == sent["id"]:
                        print(f"bot replied: {activity.get('text')}")
                        return 0
    print("no reply from the bot", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except directline.DirectLineError as error:
        print(f"Direct Line error ({error.name}): {error}", file=sys.stderr)
        sys.exit(1)
