"""Which handler answers a request, and how errors become responses."""

from __future__ import annotations

from . import control, copilot, v1, v3
from .errors import ApiError, error_body
from .messages import SEND_LIMIT_BYTES, Request, Response, json_response
from .routing import ID, Route, find, resolve
from .service import Emulator

_V3 = ("v3", "directline")
_PVA = ("powervirtualagents",)

SERVICE_ROUTES = [
    Route(_V3 + ("tokens", "generate"), {"POST": v3.generate_token}),
    Route(_V3 + ("tokens", "refresh"), {"POST": v3.refresh_token}),
    Route(_V3 + ("conversations",), {"POST": v3.start_conversation}),
    Route(_V3 + ("conversations", ID), {"GET": v3.reconnect}),
    Route(_V3 + ("conversations", ID, "activities"),
          {"GET": v3.get_activities, "POST": v3.post_activity}),
    Route(_V3 + ("conversations", ID, "upload"), {"POST": v3.upload}, upload=True),
    Route(("api", "tokens", "conversation"), {"POST": v1.create_token}),
    Route(("api", "tokens", ID, "renew"), {"GET": v1.renew_token, "POST": v1.renew_token}),
    Route(("api", "conversations"), {"POST": v1.start_conversation}),
    Route(("api", "conversations", ID, "messages"),
          {"GET": v1.get_messages, "POST": v1.post_message}),
    Route(("api", "conversations", ID, "upload"), {"POST": v1.upload}, upload=True),
    Route(_PVA + ("botsbyschema", ID, "directline", "token"), {"GET": copilot.token}),
    Route(_PVA + ("regionalchannelsettings",), {"GET": copilot.regional_settings}),
]


def is_control_path(raw_path: str) -> bool:
    return raw_path == "/_emulator" or raw_path.startswith("/_emulator/")


def body_limit(emulator: Emulator, segments: list[str]) -> int:
    """Uploads may carry up to the upload limit; everything else one activity."""
    found = find(SERVICE_ROUTES, segments)
    if found is not None and found[0].upload:
        return emulator.store.settings().max_upload_bytes
    return SEND_LIMIT_BYTES


def error_response(error: ApiError, legacy: bool) -> Response:
    return json_response(error.status, error_body(error.status, error.code, error.message, legacy),
                         error.headers)


def dispatch(emulator: Emulator, request: Request) -> Response:
    routes = control.ROUTES if is_control_path(request.raw_path) else SERVICE_ROUTES
    try:
        handler, params = resolve(routes, request.method, request.segments)
        return handler(emulator, request, *params)
    except ApiError as error:
        return error_response(error, request.legacy)
