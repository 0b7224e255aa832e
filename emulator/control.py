"""The control API under /_emulator/: no auth, never logged, never faulted."""

from __future__ import annotations

from .errors import bad_argument, not_found
from .messages import Request, Response, json_response, parse_json_object
from .routing import ID, Route
from .service import Emulator
from .state import V3


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


def set_config(emulator: Emulator, request: Request) -> Response:
    changes = _body_object(request)
    unknown = sorted(set(changes) - {"tokenLifetime", "maxUploadBytes", "nullWatermark", "pageSize",
                                  "endlessPages"})
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
    settings = emulator.store.configure(
        token_lifetime=None if lifetime is None else _integer(lifetime, "tokenLifetime", 1),
        max_upload_bytes=None if limit is None else _integer(limit, "maxUploadBytes", 0),
        null_watermark=null_watermark,
        page_size=None if page_size is None else _integer(page_size, "pageSize", 1),
        endless_pages=endless_pages)
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


def show_conversation(emulator: Emulator, request: Request, conversation_id: str) -> Response:
    conversation = emulator.store.conversation(conversation_id)
    if conversation is None:
        raise not_found("conversation not found")
    snapshot = emulator.store.snapshot(conversation)
    items = snapshot.pop("items")
    snapshot["activities" if conversation.protocol == V3 else "messages"] = items
    return json_response(200, snapshot)


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
    Route(("_emulator", "conversations", ID), {"GET": show_conversation}),
    Route(("_emulator", "attachments", ID), {"GET": download}),
]
