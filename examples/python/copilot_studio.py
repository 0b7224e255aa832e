"""Talk to a Copilot Studio agent with nothing but its token endpoint.

Usage:
    python3 copilot_studio.py [TOKEN_ENDPOINT [LOCALE]]

(or DIRECTLINE_TOKEN_ENDPOINT and DIRECTLINE_LOCALE in the environment).

TOKEN_ENDPOINT is the URL on the agent's "Mobile app" channel page in
Copilot Studio, e.g.
https://<env>.environment.api.powerplatform.com/powervirtualagents/botsbyschema/<schema>/directline/token?api-version=2022-03-01-preview
(the local emulator serves one at
http://127.0.0.1:3978/powervirtualagents/botsbyschema/any/directline/token?api-version=2022-03-01-preview).
The library fetches a token there, reads the agent's regional Direct Line
host from the regional settings next to it, and starts the conversation in
LOCALE (default en-US), so the greeting is already in the user's language.
"""

from __future__ import annotations

import os
import sys

import directline

USER_ID = "copilot-example-user"


def main() -> int:
    token_endpoint = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DIRECTLINE_TOKEN_ENDPOINT")
    locale = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("DIRECTLINE_LOCALE", "en-US")
    if not token_endpoint:
        print(__doc__, file=sys.stderr)
        return 2

    # No secret and no endpoint: the token endpoint is the credential.
    with directline.Client(token_endpoint=token_endpoint, bot_agent="copilot-studio-example/1.0") as client:
        with client.start_conversation(locale=locale) as conversation:
            conversation.listen()
            for activity in conversation.wait(timeout=5):  # the greeting, if the agent has one
                print(f"bot: {activity.get('text')}")
            conversation.send_text(USER_ID, "hello")
            replies = conversation.wait(timeout=20)
            for activity in replies:
                print(f"bot: {activity.get('text')}")
            conversation.end(USER_ID)
    if not replies:
        print("no reply from the bot", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
