"""Direct Line 1.1: /api/..."""

from __future__ import annotations

from . import bot
from .errors import bad_argument
from .messages import Request, Response, empty_response, json_response, parse_json_object
from .service import (Emulator, authenticate, conversation_to_start, open_conversation,
                      read_upload, require_json_content, require_user_id, store_files, watermark_start, watermark_value)
from .state import V1, Conversation

MESSAGE_PART_TYPE = "application/vnd.microsoft.bot.message"


def create_token(emulator: Emulator, request: Request) -> Response:
    authenticate(emulator, request, secret_only=True)
    conversation = emulator.store.create_conversation(V1)
    return json_response(200, emulator.store.issue_token(conversation.id, None).value)


def renew_token(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V1)
    fresh = emulator.store.issue_token(conversation.id, None)
    return json_response(200, fresh.value)


def start_conversation(emulator: Emulator, request: Request) -> Response:
    conversation, token = conversation_to_start(emulator, authenticate(emulator, request), V1)
    emulator.store.mark_started(conversation)
    return json_response(200, {"conversationId": conversation.id, "token": token.value,
                               "expires_in": token.seconds_left(), "eTag": conversation.etag})


def get_messages(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V1)
    messages, watermark = emulator.store.page(conversation, watermark_start(request))
    return json_response(200, {"messages": messages,
                               "watermark": watermark_value(emulator, watermark),
                               "eTag": f'"{watermark}"'})


def _validate_message(message: dict, what: str) -> None:
    """The 1.1 Message schema: `from` is a plain string, `channelData` an object."""
    expected = {"from": str, "text": str, "channelData": dict, "images": list,
                "attachments": list}
    for key, kind in expected.items():
        if key in message and not isinstance(message[key], kind):
            raise bad_argument(f"{what}.{key} must be {_describe(kind)}")
    if not all(isinstance(image, str) for image in message.get("images", [])):
        raise bad_argument(f"{what}.images must be an array of strings")
    if not all(isinstance(item, dict) for item in message.get("attachments", [])):
        raise bad_argument(f"{what}.attachments must be an array of objects")


def _describe(kind: type) -> str:
    return {str: "a string", dict: "an object", list: "an array"}[kind]


def _deliver(emulator: Emulator, conversation: Conversation, message: dict,
             files: list | None = None) -> None:
    """Store the user's message, then let the bot answer it: before the send
    is answered, or with a reply delay that long after it (1.1 has no typing)."""
    def stamp(item: dict, item_id: str, now: str) -> dict:
        item.update(id=item_id, conversationId=conversation.id, created=now)
        return item

    store = emulator.store
    store.append(conversation, stamp, message)
    text = message.get("text")
    settings = store.settings()
    if not emulator.pause(bot.thinking_seconds(text) + settings.bot_delay_seconds):
        return
    reply = {"from": bot.BOT_ID,
             "text": bot.upload_text(files, text) if files is not None else bot.echo_text(text)}
    emulator.answer(settings, conversation, stamp, reply)


def post_message(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V1)
    require_json_content(request)
    message = parse_json_object(request.body, "message")
    _validate_message(message, "message")
    _deliver(emulator, conversation, message)
    return empty_response(204)


def upload(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V1)
    user_id = require_user_id(request)
    parts = read_upload(emulator, request, MESSAGE_PART_TYPE)
    message = {}
    if parts.container is not None:
        message = parse_json_object(parts.container, "message part")
        _validate_message(message, "message part")
    message.setdefault("from", user_id)
    files = store_files(emulator, request, parts)
    message["attachments"] = message.get("attachments", []) + [
        {"url": url, "contentType": f.content_type, "name": f.name} for f, url in files]
    _deliver(emulator, conversation, message, [f for f, _ in files])
    return empty_response(204)
