"""The control API under /_emulator/: no auth, never logged, never faulted."""

from __future__ import annotations

import re

from . import bot
from .errors import bad_argument, not_found
from .messages import Request, Response, json_response, parse_json_object
from .routing import ID, Route
from .faults import valid_close_code
from .service import Emulator
from .state import COLLISION_POLICIES, EXPIRES_KEYS, MAX_REPLY_DELAY_SECONDS, V3, ReplyDelay
from .stream import COMMANDS


def _body_object(request: Request) -> dict:
    return parse_json_object(request.body, "request body") if request.body else {}


def reset(emulator: Emulator, request: Request) -> Response:
    emulator.reset()
    return json_response(200, emulator.store.settings().as_json())


def get_config(emulator: Emulator, request: Request) -> Response:
    return json_response(200, emulator.store.settings().as_json())


def _integer(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_argument(f"{key} must be an integer >= {minimum}")
    return value


def _number(value, key: str, minimum: float, maximum: float, above: bool = False) -> float:
    """A number from `minimum` (exclusive with `above`) to `maximum`."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value > maximum
            or value < minimum or (above and value == minimum)):
        bound = f"> {minimum:g}" if above else f">= {minimum:g}"
        raise bad_argument(f"{key} must be a number {bound} and <= {maximum:g}")
    return float(value)


def _reply_delay(value) -> ReplyDelay:
    """`replyDelaySeconds`: a number of seconds, or [min, max] for a random one."""
    def seconds(item) -> bool:
        return (not isinstance(item, bool) and isinstance(item, (int, float))
                and 0 <= item <= MAX_REPLY_DELAY_SECONDS)
    if isinstance(value, list):
        if len(value) == 2 and all(seconds(item) for item in value) and value[0] <= value[1]:
            return float(value[0]), float(value[1])
    elif seconds(value):
        return float(value)
    raise bad_argument(f"replyDelaySeconds must be a number from 0 to {MAX_REPLY_DELAY_SECONDS:g}, "
                       f"or an array [min, max] with 0 <= min <= max <= {MAX_REPLY_DELAY_SECONDS:g}")


CONFIG_KEYS = {"tokenLifetime", "maxUploadBytes", "nullWatermark", "pageSize", "endlessPages",
               "streamKeepAliveSeconds", "streamUrlLifetime", "streamCollision", "botDelaySeconds",
               "tokenEndpointLifetime", "tokenEndpointExpiresKey", "region", "replyDelaySeconds",
               "typingBeforeReply"}
# A region goes into a URL path (/region/<name>/) and is named like a DNS label.
_REGION = re.compile(r"[A-Za-z0-9-]{1,63}")


def set_config(emulator: Emulator, request: Request) -> Response:
    changes = _body_object(request)
    unknown = sorted(set(changes) - CONFIG_KEYS)
    if unknown:
        raise bad_argument(f"unknown config key(s): {', '.join(unknown)}")
    lifetime = changes.get("tokenLifetime")
    limit = changes.get("maxUploadBytes")
    null_watermark = changes.get("nullWatermark")
    page_size = changes.get("pageSize")
    endless_pages = changes.get("endlessPages")
    if endless_pages is not None and not isinstance(endless_pages, bool):
        raise bad_argument("endlessPages must be true or false")
    if null_watermark is not None and not isinstance(null_watermark, bool):
        raise bad_argument("nullWatermark must be true or false")
    keep_alive = changes.get("streamKeepAliveSeconds")
    url_lifetime = changes.get("streamUrlLifetime")
    collision = changes.get("streamCollision")
    if collision is not None and collision not in COLLISION_POLICIES:
        raise bad_argument(f"streamCollision must be one of: {', '.join(COLLISION_POLICIES)}")
    bot_delay = changes.get("botDelaySeconds")
    endpoint_lifetime = changes.get("tokenEndpointLifetime")
    expires_key = changes.get("tokenEndpointExpiresKey")
    if expires_key is not None and expires_key not in EXPIRES_KEYS:
        raise bad_argument(f"tokenEndpointExpiresKey must be one of: {', '.join(EXPIRES_KEYS)}")
    region = changes.get("region")
    if region is not None and (not isinstance(region, str) or not _REGION.fullmatch(region)):
        raise bad_argument("region must be 1 to 63 ASCII letters, digits and '-'")
    reply_delay = changes.get("replyDelaySeconds")
    typing = changes.get("typingBeforeReply")
    if typing is not None and not isinstance(typing, bool):
        raise bad_argument("typingBeforeReply must be true or false")
    settings = emulator.store.configure(
        token_lifetime=None if lifetime is None else _integer(lifetime, "tokenLifetime", 1),
        max_upload_bytes=None if limit is None else _integer(limit, "maxUploadBytes", 0),
        null_watermark=null_watermark,
        page_size=None if page_size is None else _integer(page_size, "pageSize", 1),
        endless_pages=endless_pages,
        stream_keep_alive_seconds=None if keep_alive is None else _number(
            keep_alive, "streamKeepAliveSeconds", 0, 3600, above=True),
        stream_url_lifetime=None if url_lifetime is None else _integer(
            url_lifetime, "streamUrlLifetime", 1),
        stream_collision=collision,
        bot_delay_seconds=None if bot_delay is None else _number(bot_delay, "botDelaySeconds", 0, 3600),
        token_endpoint_lifetime=None if endpoint_lifetime is None else _integer(
            endpoint_lifetime, "tokenEndpointLifetime", 1),
        token_endpoint_expires_key=expires_key,
        region=region,
        reply_delay_seconds=None if reply_delay is None else _reply_delay(reply_delay),
        typing_before_reply=typing)
    return json_response(200, settings.as_json())


def list_faults(emulator: Emulator, request: Request) -> Response:
    return json_response(200, {"faults": emulator.faults.as_json()})


def add_fault(emulator: Emulator, request: Request) -> Response:
    return json_response(200, emulator.faults.add(_body_object(request)).as_json())


def clear_faults(emulator: Emulator, request: Request) -> Response:
    emulator.faults.clear()
    return json_response(200, {"faults": []})


def list_requests(emulator: Emulator, request: Request) -> Response:
    return json_response(200, {"requests": emulator.log.as_json()})


def clear_requests(emulator: Emulator, request: Request) -> Response:
    emulator.log.clear()
    return json_response(200, {"requests": []})


def list_conversations(emulator: Emulator, request: Request) -> Response:
    """Every conversation in creation order: its protocol, whether it ended, how
    many activities it stored and which senders other than the bot it has seen."""
    summaries = []
    for conversation, ended, items in emulator.store.every_conversation():
        users: dict[str, None] = {}  # an ordered set: first seen first
        for item in items:
            sender = item.get("from")
            user = sender.get("id") if isinstance(sender, dict) else sender
            if isinstance(user, str) and user != bot.BOT_ID:
                users.setdefault(user, None)
        summaries.append({"id": conversation.id, "protocol": conversation.protocol, "ended": ended,
                          "activities": len(items), "users": list(users)})
    return json_response(200, {"conversations": summaries})


def show_conversation(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    conversation = emulator.store.conversation(conversation_id)
    if conversation is None:
        raise not_found("conversation not found")
    snapshot = emulator.store.snapshot(conversation)
    items = snapshot.pop("items")
    snapshot["activities" if conversation.protocol == V3 else "messages"] = items
    return json_response(200, snapshot)


def list_streams(emulator: Emulator, request: Request) -> Response:
    streams = emulator.streams
    return json_response(200, {"port": streams.port, "secure": streams.secure,
                               "streams": streams.describe(), "closed": streams.describe_closed()})


def command_stream(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    """Close, drop, silence or collide the conversation's open stream now."""
    body = _body_object(request)
    unknown = sorted(set(body) - {"action", "closeCode", "closeReason", "seconds"})
    if unknown:
        raise bad_argument(f"unknown key(s): {', '.join(unknown)}")
    action = body.get("action")
    if action not in COMMANDS:
        raise bad_argument(f"action must be one of: {', '.join(COMMANDS)}")
    code = body.get("closeCode", 1008 if action == "collision" else 1000)
    if ("closeCode" in body and action not in ("close", "collision")) or not valid_close_code(code):
        raise bad_argument("closeCode (close, collision only) must be 1000-1003, 1007-1014 or 3000-4999")
    reason = body.get("closeReason", "")
    if ("closeReason" in body and action != "close") or not isinstance(reason, str) \
            or len(reason.encode("utf-8")) > 123:
        raise bad_argument("closeReason (close only) must be a string of at most 123 bytes")
    seconds = body.get("seconds", 3600)
    if "seconds" in body and action != "silent":
        raise bad_argument("seconds goes with silent only")
    seconds = _number(seconds, "seconds", 0, 86400)
    count = emulator.streams.command(conversation_id, action, code, reason, seconds)
    if count == 0:
        raise not_found("no open stream for this conversation")
    return json_response(200, {"streams": count})


def download(emulator: Emulator, request: Request, file_id: str) -> Response:
    stored = emulator.store.file(file_id)
    if stored is None:
        raise not_found("attachment not found")
    return Response(200, stored.data, stored.content_type)


ROUTES = [
    Route(("_emulator", "reset"), {"POST": reset}),
    Route(("_emulator", "config"), {"GET": get_config, "POST": set_config}),
    Route(("_emulator", "faults"), {"GET": list_faults, "POST": add_fault,
                                    "DELETE": clear_faults}),
    Route(("_emulator", "requests"), {"GET": list_requests, "DELETE": clear_requests}),
    Route(("_emulator", "conversations"), {"GET": list_conversations}),
    Route(("_emulator", "conversations", ID), {"GET": show_conversation}),
    Route(("_emulator", "attachments", ID), {"GET": download}),
    Route(("_emulator", "streams"), {"GET": list_streams}),
    Route(("_emulator", "streams", ID), {"POST": command_stream}),
]
