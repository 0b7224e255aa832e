"""Talk to a bot in three conversations at once from one asyncio event loop.

Usage:
    DIRECTLINE_SECRET=... python3 asyncio_chat.py [ENDPOINT]

Each conversation listens, says hello and prints the bot's first message as
it arrives (``async for``). Receiving holds no thread: the loop waits on each
conversation's descriptor. The endpoint comes from the first argument, else
DIRECTLINE_ENDPOINT, else the public service. Run it from a checkout with
PYTHONPATH=bindings/python so that `import directline` finds the binding.
"""

from __future__ import annotations

import asyncio
import os
import sys

import directline
from directline import aio

USER_ID = "asyncio-user"


async def talk(client: aio.Client, index: int) -> bool:
    """Says hello in a new conversation and prints the first reply; False if none came."""
    async with await client.start_conversation() as conversation:
        await conversation.listen()
        await conversation.send_text(USER_ID, f"hello from conversation {index}")
        async for activity in conversation.stream(timeout=10):
            if activity.get("type") == "typing":  # over the WebSocket stream the bot shows it is typing
                continue
            print(f"bot: {activity.get('text')}")
            return True
    print(f"no reply in conversation {index}", file=sys.stderr)
    return False


async def main() -> int:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DIRECTLINE_ENDPOINT")
    secret = os.environ.get("DIRECTLINE_SECRET")
    if not secret:
        print("set DIRECTLINE_SECRET to your bot's Direct Line secret", file=sys.stderr)
        return 2
    async with aio.Client(endpoint, secret=secret) as client:
        answered = await asyncio.gather(*(talk(client, index) for index in range(3)))
    return 0 if all(answered) else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except directline.DirectLineError as error:
        print(f"Direct Line error ({error.name}): {error}", file=sys.stderr)
        sys.exit(1)
