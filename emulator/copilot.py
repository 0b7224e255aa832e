"""Copilot Studio's side of a Direct Line client: /powervirtualagents/...

An agent's "Mobile app" channel page gives a client two URLs on the
environment's host instead of a secret: a token service that hands out a
Direct Line token bound to a new conversation, and regional channel settings
that name the Direct Line host to use. Neither takes credentials; both want
an `api-version` query parameter.
"""

from __future__ import annotations

from .errors import ApiError
from .messages import Request, Response, json_response
from .service import Emulator
from .state import V3


def _require_api_version(request: Request) -> None:
    if not request.query.get("api-version"):
        raise ApiError(400, "MissingApiVersionParameter",
                       "the api-version query parameter is required, e.g. ?api-version=2022-03-01-preview")


def token(emulator: Emulator, request: Request, schema: str) -> Response:
    """A token for a new 3.0 conversation, not yet started, valid `tokenEndpointLifetime` seconds."""
    _require_api_version(request)
    settings = emulator.store.settings()
    conversation = emulator.store.create_conversation(V3)
    issued = emulator.store.issue_token(conversation.id, None, settings.token_endpoint_lifetime)
    return json_response(200, {"token": issued.value,
                               settings.token_endpoint_expires_key: issued.seconds_left(),
                               "conversationId": conversation.id})


def regional_settings(emulator: Emulator, request: Request) -> Response:
    """Where the agent's Direct Line lives: this emulator, under /region/<region>/."""
    _require_api_version(request)
    region = emulator.store.settings().region
    return json_response(200, {"channelUrlsById": {"directline": f"{request.base_url}/region/{region}/"},
                               "regionName": region})
