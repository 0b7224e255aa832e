"""What both protocol versions share: auth, conversation access, paging, sends."""

from __future__ import annotations

import hmac
import threading
from typing import Callable

from .errors import ApiError, bad_argument, missing_property, not_found
from .faults import FaultBook
from .messages import Request, parse_media_type
from .requestlog import RequestLog
from .scheduler import ReplyScheduler
from .state import Conversation, ReplyDelay, Settings, Store, Token
from .uploads import Upload, parse_upload


class Emulator:
    """The emulated service: its state, fault rules, request log and secret."""

    def __init__(self, secret: str, token_lifetime: int, max_upload_bytes: int,
                 reply_delay_seconds: ReplyDelay = 0.0, typing_before_reply: bool = True) -> None:
        self.secret = secret
        self.store = Store(token_lifetime, max_upload_bytes, reply_delay_seconds, typing_before_reply)
        # The bot's late replies (replyDelaySeconds); its thread starts with the first.
        self.replies = ReplyScheduler()
        self.faults = FaultBook()
        self.log = RequestLog()
        self.stopping = threading.Event()
        # The WebSocket stream server (emulator.stream.StreamServer), set by
        # the server that serves this emulator.
        self.streams = None

    def pause(self, seconds: float) -> bool:
        """Sleep, but wake at shutdown; True when the full time passed."""
        return not self.stopping.wait(seconds)

    def answer(self, settings: Settings, conversation: Conversation, stamp: Callable[[dict, str, str], dict],
               reply: dict, ends: bool = False) -> None:
        """Store the bot's `reply` now, or, with a reply delay in `settings` (read
        when the send came), that long from now unless the conversation has
        ended or was reset away by then. `ends`: the reply ends the conversation."""
        if settings.replies_later():
            self.replies.schedule(settings.draw_reply_delay(),
                                  lambda: self.store.append_reply(conversation, stamp, reply, ends))
            return
        if ends:
            self.store.mark_ended(conversation)
        self.store.append(conversation, stamp, reply)

    def reset(self) -> None:
        # Pending replies go first; one scheduled meanwhile for a conversation
        # the reset forgets is dropped when due (Store.append_reply).
        self.replies.clear()
        self.store.reset()
        self.faults.clear()
        self.log.clear()


def _credential(request: Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise ApiError(401, "Unauthorized", "missing Authorization header",
                       [("WWW-Authenticate", "Bearer")])
    schemes = ("bearer", "botconnector") if request.legacy else ("bearer",)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if (scheme.lower() not in schemes or not value
            or any(not 0x21 <= ord(ch) <= 0x7E for ch in value)):
        raise ApiError(401, "Unauthorized", "malformed Authorization header",
                       [("WWW-Authenticate", "Bearer")])
    return value


def authenticate(emulator: Emulator, request: Request, secret_only: bool = False) -> Token | None:
    """The caller's token, or None when it presented the secret."""
    credential = _credential(request)
    if hmac.compare_digest(credential.encode(), emulator.secret.encode()):
        return None
    token = emulator.store.token(credential)
    if token is None:
        raise ApiError(403, "BadArgument", "Invalid token or secret")
    if token.expired():
        raise ApiError(403, "TokenExpired", "Token expired")
    if secret_only:
        raise ApiError(403, "BadArgument", "this operation requires the secret, not a token")
    return token


def conversation_to_start(emulator: Emulator, token: Token | None, protocol: str,
                          user: dict | None = None) -> tuple[Conversation, Token]:
    """The conversation a start request refers to, and the token to answer with.

    With the secret a new conversation is created with its own token; with
    a token from a token call, that token's conversation (it must exist and
    speak `protocol`).
    """
    if token is None:
        conversation = emulator.store.create_conversation(protocol)
        return conversation, emulator.store.issue_token(conversation.id, user)
    conversation = emulator.store.conversation(token.conversation_id)
    if conversation is None:
        raise not_found("conversation not found")
    if conversation.protocol != protocol:
        raise ApiError(409, "Conflict",
                       f"this token's conversation was started with Direct Line {conversation.protocol}")
    return conversation, token


def open_conversation(emulator: Emulator, token: Token | None, conversation_id: str,
                      protocol: str) -> Conversation:
    """The conversation, if the caller may use it and it speaks `protocol`."""
    if token is not None and token.conversation_id != conversation_id:
        raise ApiError(403, "BadArgument", "token not valid for this conversation")
    conversation = emulator.store.conversation(conversation_id)
    if conversation is None or conversation.protocol != protocol:
        raise not_found("conversation not found")
    return conversation


def watermark_start(request: Request) -> int:
    """Where paging starts: the `watermark` query value, or 0."""
    raw = request.query.get("watermark", "")
    if raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit():
        raise bad_argument("watermark is not valid")
    return int(raw)


def require_json_content(request: Request) -> None:
    raw = request.headers.get("Content-Type")
    media_type = None
    charset = "utf-8"
    if raw is not None:
        try:
            media_type, params = parse_media_type(raw)
        except ApiError:
            media_type = None
        else:
            charset = params.get("charset", "utf-8").lower()
    if media_type != "application/json" or charset not in ("utf-8", "utf8"):
        raise ApiError(415, "BadArgument",
                       "unsupported media type: send the body as application/json (UTF-8)")


def require_user_id(request: Request) -> str:
    user_id = request.query.get("userId", "")
    if not user_id:
        raise missing_property("the userId query parameter is required")
    return user_id


def read_upload(emulator: Emulator, request: Request, container_type: str) -> Upload:
    """The request's upload, parsed; its log entry gets the decoded file names, in order."""
    upload = parse_upload(request.headers, request.body, container_type)
    emulator.log.annotate(request.log_entry, "filenames", [f.name for f in upload.files])
    return upload


def store_files(emulator: Emulator, request: Request, upload: Upload) -> list:
    """Keep each uploaded file and return (file, its download URL) pairs."""
    if not upload.files:
        raise bad_argument("the upload contains no file")
    stored = []
    for uploaded in upload.files:
        kept = emulator.store.store_file(uploaded.data, uploaded.content_type, uploaded.name)
        stored.append((uploaded, f"{request.base_url}/_emulator/attachments/{kept.id}"))
    return stored


def watermark_value(emulator: Emulator, watermark: int) -> str | None:
    return None if emulator.store.settings().null_watermark else str(watermark)
