"""Direct Line 3.0: /v3/directline/..."""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import quote

from . import bot
from .errors import ApiError, bad_argument, missing_property
from .messages import Request, Response, json_response, parse_json_object
from .service import (Emulator, authenticate, conversation_to_start, open_conversation,
                      read_upload, require_json_content, require_user_id, store_files, watermark_start, watermark_value)
from .state import V3, Conversation, Token

ACTIVITY_PART_TYPE = "application/vnd.microsoft.activity"


_LOCALE = re.compile(r"[A-Za-z0-9-]{1,64}")


def _start_options(body: bytes) -> tuple[dict | None, str | None]:
    """The optional `{"user": {...}, "trustedOrigins": [...], "locale": ".."}` of
    token/start calls, as (user, locale). Only a start uses the locale."""
    if not body:
        return None, None
    options = parse_json_object(body, "request body")
    origins = options.get("trustedOrigins")
    if origins is not None and (not isinstance(origins, list)
                                or not all(isinstance(o, str) for o in origins)):
        raise bad_argument("trustedOrigins must be an array of strings")
    locale = options.get("locale")
    if locale is not None and (not isinstance(locale, str) or not _LOCALE.fullmatch(locale)):
        raise bad_argument("locale must be 1 to 64 ASCII letters, digits and '-', such as fr-FR")
    user = options.get("user")
    if user is None:
        return None, locale
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise bad_argument("user.id must be a non-empty string")
    if not user["id"].startswith("dl_"):
        raise bad_argument("user.id must start with dl_")
    name = user.get("name")
    if name is not None and not isinstance(name, str):
        raise bad_argument("user.name must be a string")
    return {"id": user["id"], **({"name": name} if name is not None else {})}, locale


def _conversation_json(emulator: Emulator, request: Request, conversation: Conversation,
                       token: Token, watermark: str | None = None) -> dict:
    """The Conversation, with a new stream URL: its `t=` is a stream ticket good
    for connecting within `streamUrlLifetime` seconds, replaying from
    `watermark` (already validated) or else from what is stored now."""
    ticket = emulator.store.issue_stream_ticket(conversation, int(watermark) if watermark else None)
    query = f"t={quote(ticket.value, safe='')}"
    if watermark:
        query = f"watermark={quote(watermark, safe='')}&{query}"
    stream = f"{request.stream_base_url}/v3/directline/conversations/{conversation.id}/stream"
    return {"conversationId": conversation.id, "token": token.value,
            "expires_in": token.seconds_left(), "streamUrl": f"{stream}?{query}",
            "referenceGrammarId": emulator.store.reference_grammar_id, "eTag": conversation.etag}


def _token_json(token: Token) -> dict:
    return {"conversationId": token.conversation_id, "token": token.value,
            "expires_in": token.seconds_left()}


def generate_token(emulator: Emulator, request: Request) -> Response:
    authenticate(emulator, request, secret_only=True)
    user, _locale = _start_options(request.body)
    conversation = emulator.store.create_conversation(V3)
    return json_response(200, _token_json(emulator.store.issue_token(conversation.id, user)))


def refresh_token(emulator: Emulator, request: Request) -> Response:
    token = authenticate(emulator, request)
    if token is None:
        raise ApiError(403, "BadArgument", "tokens/refresh needs a token, not the secret")
    fresh = emulator.store.issue_token(token.conversation_id, token.user)
    return json_response(200, _token_json(fresh))


def start_conversation(emulator: Emulator, request: Request) -> Response:
    token = authenticate(emulator, request)
    user, locale = _start_options(request.body)
    conversation, token = conversation_to_start(emulator, token, V3, user)
    created = emulator.store.mark_started(conversation, locale)
    # The stream URL is issued before the welcome is stored, so its replay holds it.
    answer = _conversation_json(emulator, request, conversation, token)
    if created and locale is not None:
        emulator.store.append(conversation, _stamper(conversation), {
            "type": "message", "from": bot.bot_account(), "locale": locale,
            "text": bot.welcome_text(locale)})
    return json_response(201 if created else 200, answer)


def reconnect(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V3)
    watermark_start(request)
    if token is None:
        token = emulator.store.issue_token(conversation.id, None)
    return json_response(200, _conversation_json(emulator, request, conversation, token,
                                                 request.query.get("watermark")))


def get_activities(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V3)
    activities, watermark = emulator.store.page(conversation, watermark_start(request))
    return json_response(200, {"activities": activities,
                               "watermark": watermark_value(emulator, watermark)})


def _validate_activity(activity: dict, what: str) -> None:
    kind = activity.get("type")
    if not isinstance(kind, str) or not kind:
        raise missing_property(f"{what} has no type")
    sender = activity.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("id"), str) or not sender["id"]:
        raise missing_property(f"{what} has no from.id")
    if "text" in activity and not isinstance(activity["text"], str):
        raise bad_argument(f"{what}.text must be a string")


def _apply_token_user(activity: dict, token: Token | None) -> None:
    """A user id embedded in the token overrides the activity's from.id."""
    if token is not None and token.user is not None:
        activity["from"] = {**activity["from"], **token.user}


def _stamper(conversation: Conversation) -> Callable[[dict, str, str], dict]:
    """What the store calls to give an activity of `conversation` its server fields."""
    def stamp(item: dict, item_id: str, now: str) -> dict:
        item.update(id=item_id, timestamp=now, channelId="directline",
                    conversation={"id": conversation.id})
        return item
    return stamp


def _deliver(emulator: Emulator, conversation: Conversation, activity: dict,
             files: list | None = None) -> dict:
    """Store the user's activity, then let the bot answer it: before the send
    is answered, or with a reply delay that long after it."""
    store = emulator.store
    stamp = _stamper(conversation)
    stored = store.append(conversation, stamp, activity)
    if activity["type"] == "endOfConversation":
        store.mark_ended(conversation)
        return stored
    if store.is_ended(conversation):
        return stored
    text = activity.get("text")
    if files is None and activity["type"] != "message":
        return stored
    settings = store.settings()
    if settings.typing_before_reply:
        # Typing first, to the open streams only (never stored, never in a GET).
        store.push_live(conversation, stamp, {
            "type": "typing", "from": bot.bot_account(), "replyToId": stored["id"]})
    if not emulator.pause(bot.thinking_seconds(text) + settings.bot_delay_seconds):
        return stored
    ends = files is None and bot.ends_conversation(text)
    if ends:
        reply = {"type": "endOfConversation", "from": bot.bot_account(), "code": "completedSuccessfully",
                 "replyToId": stored["id"]}
    else:
        reply = {"type": "message", "from": bot.bot_account(),
                 "text": bot.upload_text(files, text) if files is not None else bot.echo_text(text),
                 "replyToId": stored["id"]}
    emulator.answer(settings, conversation, stamp, reply, ends)
    return stored


def post_activity(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V3)
    require_json_content(request)
    activity = parse_json_object(request.body, "activity")
    _validate_activity(activity, "activity")
    _apply_token_user(activity, token)
    return json_response(200, {"id": _deliver(emulator, conversation, activity)["id"]})


def upload(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    token = authenticate(emulator, request)
    conversation = open_conversation(emulator, token, conversation_id, V3)
    user_id = require_user_id(request)
    parts = read_upload(emulator, request, ACTIVITY_PART_TYPE)
    if parts.container is None:
        activity = {"type": "message", "from": {"id": user_id}}
    else:
        activity = parse_json_object(parts.container, "activity part")
        _validate_activity(activity, "activity part")
    existing = activity.get("attachments", [])
    if not isinstance(existing, list):
        raise bad_argument("activity part attachments must be an array")
    files = store_files(emulator, request, parts)
    activity["attachments"] = existing + [
        {"contentType": f.content_type, "contentUrl": url, "name": f.name} for f, url in files]
    _apply_token_user(activity, token)
    stored = _deliver(emulator, conversation, activity, [f for f, _ in files])
    return json_response(200, {"id": stored["id"]})
