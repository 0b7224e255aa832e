"""Client: the endpoint, credential and transport that conversations start from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import _native
from ._handle import NativeObject
from ._native import lib
from .conversation import Conversation, FileItem, StrPath
from .errors import InvalidArgumentError

__all__ = ["Client", "Conversation", "FileItem", "StrPath"]
"""Also Conversation and the aliases of its uploads, for code that imports them from here."""

# Client(**options) keyword -> config_json key (API.md, "config_json").
_CONFIG_KEYS: Mapping[str, str] = {
    "timeout_ms": "timeoutMs",
    "connect_timeout_ms": "connectTimeoutMs",
    "retry": "retry",
    "user_agent": "userAgent",
    "ca_file": "caFile",
    "proxy": "proxy",
    "insecure_skip_tls_verify": "insecureSkipTlsVerify",
    "allow_insecure_http": "allowInsecureHttp",
    "max_upload_bytes": "maxUploadBytes",
    "bot_agent": "botAgent",
    "headers": "headers",
    "regional_settings_endpoint": "regionalSettingsEndpoint",
}

# retry={...} keys in Python style -> config_json "retry" keys. Keys already
# in the C spelling pass through; anything else is left for the library to
# refuse.
_RETRY_KEYS: Mapping[str, str] = {
    "max_attempts": "maxAttempts",
    "base_delay_ms": "baseDelayMs",
    "max_delay_ms": "maxDelayMs",
}


def _checked_headers(headers: object) -> dict[str, str]:
    """``headers=`` as a plain dict, once it is known to map str to str.

    The names and values themselves are the library's to judge.
    """
    if not isinstance(headers, Mapping):
        raise InvalidArgumentError.local(
            f"headers must be a mapping of header name to value (str), not {type(headers).__name__}")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            raise InvalidArgumentError.local(f"headers: a header name must be a str, not {type(name).__name__}")
        if not isinstance(value, str):
            raise InvalidArgumentError.local(f"headers: the value of {name!r} must be a str, "
                                             f"not {type(value).__name__}")
        checked[name] = value
    return checked


class Client(NativeObject):
    """A Direct Line client: endpoint, credential and transport (a pooled, keep-alive connection).

    Construction sends nothing. One client may be used from many threads at
    once. Closing a client does not close the conversations it started: they
    keep working until they are closed themselves.

    Args:
        endpoint: the service's base URL; defaults to
            ``https://directline.botframework.com``. Plain ``http://`` is
            allowed only for loopback hosts, reached directly or through a
            ``proxy`` on loopback or ``https://``, unless
            ``allow_insecure_http`` (proxy environment variables are never
            read).
        secret: the bot's Direct Line secret. Give exactly one of
            ``secret``, ``token`` and ``token_endpoint``.
        token: a Direct Line token instead of the secret.
        token_endpoint: instead of a secret or token, a URL that hands out
            Direct Line tokens to anyone who asks (``GET``), such as a bot's
            own token service or Copilot Studio's
            ``https://.../powervirtualagents/botsbyschema/<schema>/directline/token?api-version=...``.
            Every ``start_conversation`` and ``generate_token`` first fetches
            a token there. With a Copilot Studio URL and no ``endpoint``, the
            Direct Line host is the one its regional channel settings name.
        protocol: ``"3.0"`` (default) or ``"1.1"``.
        **options: ``timeout_ms``, ``connect_timeout_ms``, ``retry``
            (a dict: ``max_attempts``, ``base_delay_ms``, ``max_delay_ms``),
            ``user_agent``, ``ca_file``, ``proxy``,
            ``insecure_skip_tls_verify``, ``allow_insecure_http``,
            ``max_upload_bytes``;
            ``bot_agent``: text appended to the ``x-ms-bot-agent`` header
            every request carries (``DirectLine/3.0 (libdirectline VERSION;
            BOT_AGENT)``), printable ASCII without parentheses or backslash,
            at most 256 bytes;
            ``headers``: a mapping of header name to value (both str), sent
            with every Direct Line request and the stream upgrade (not to
            the proxy, nor to another origin's token endpoint); names the
            library sets itself (``Authorization``, ``Host``,
            ``Content-*``, ``User-Agent``, ``x-ms-bot-agent``, ...) are
            refused;
            ``regional_settings_endpoint``: a URL answering
            ``{"channelUrlsById": {"directline": URL}}``, read once, to find
            the Direct Line host (not together with ``endpoint``).
            An option given as None keeps its default.

    Raises:
        TypeError: an unknown keyword argument.
        InvalidArgumentError: a value the library refuses (no credential or
            more than one, a bad endpoint, a NUL or control character in a
            secret, a ``headers`` that is not a mapping of str to str, a
            refused header name or value (the message names the header), a
            bad ``bot_agent``, ...).
    """

    _kind = "Client"

    def __init__(self, endpoint: str | None = None, *, secret: str | None = None,
                 token: str | None = None, token_endpoint: str | None = None, protocol: str = "3.0",
                 **options: Any) -> None:
        config: dict[str, Any] = {"protocol": protocol}
        for key, value in (("endpoint", endpoint), ("secret", secret), ("token", token),
                           ("tokenEndpoint", token_endpoint)):
            if value is not None:
                config[key] = value
        for name, value in options.items():
            if name not in _CONFIG_KEYS:
                raise TypeError(f"Client() got an unexpected keyword argument {name!r}")
            if name == "retry" and isinstance(value, Mapping):
                config["retry"] = {_RETRY_KEYS.get(key, key): item for key, item in value.items()}
            elif name == "headers" and value is not None:
                config["headers"] = _checked_headers(value)
            elif value is not None:
                config[_CONFIG_KEYS[name]] = value
        self._init_from_config(config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Client:
        """A client from a ``config_json`` dict in the C spelling, passed verbatim.

        Example: ``Client.from_config({"endpoint": url, "secret": s, "timeoutMs": 5000})``.
        Unknown keys raise InvalidArgumentError.
        """
        client = cls.__new__(cls)
        client._init_from_config(config)
        return client

    def _init_from_config(self, config: Any) -> None:
        endpoint = config.get("endpoint") if isinstance(config, Mapping) else None
        protocol = config.get("protocol", "3.0") if isinstance(config, Mapping) else None
        self._description = f"endpoint={endpoint!r} protocol={protocol!r}"
        handle, _ = _native.call_constructor(lib.dl_client_new, _native.encode_json(config, "config"))
        super().__init__(handle, lib.dl_client_free)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._description
        return f"<directline.Client {state}>"

    def start_conversation(self, user_id: str | None = None,
                           user_name: str | None = None, *, locale: str | None = None) -> Conversation:
        """Starts a new conversation with the bot.

        Sends ``POST /v3/directline/conversations`` (3.0) or
        ``POST /api/conversations`` (1.1), with ``{"user": {"id", "name"},
        "locale": ...}`` when given (3.0 only; user ids embedded in tokens
        start with ``dl_``). A client made with ``token_endpoint`` first
        fetches a token there and starts (or joins the conversation bound
        to) that token.

        Args:
            user_id: 3.0 only: the user starting the conversation.
            user_name: 3.0 only: the user's display name.
            locale: 3.0 only: the user's language as a BCP 47 tag
                (``"fr-FR"``, ``"zh-Hant-TW"``), checked before anything is
                sent. It goes in the start request, so the bot sees it on
                the conversation's first activities (e.g. to welcome the user
                in that language); activities sent later carry their own
                ``locale`` if they need one.

        Returns:
            a Conversation holding the conversation id and the token the
            service issued for it; the service's Conversation object is kept
            as ``conversation.start_result`` (it contains that token: treat
            it as a secret).

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: a bad user id, a malformed locale, a user or
                locale on 1.1; nothing was sent.
            DirectLineError: a network or service failure (a subclass per
                status), also the token endpoint's (its message names
                ``tokenEndpoint``).
        """
        request: dict[str, Any] = {}
        user = {key: value for key, value in (("id", user_id), ("name", user_name)) if value is not None}
        if user:
            request["user"] = user
        if locale is not None:
            request["locale"] = locale
        body = _native.encode_json(request, "request")
        with self._borrow() as handle:
            conversation, result = _native.call_constructor(lib.dl_conversation_start, handle, body)
        return Conversation(self, conversation, start_result=result)

    def generate_token(self, user_id: str | None = None, user_name: str | None = None,
                       trusted_origins: Sequence[str] | None = None) -> dict[str, Any]:
        """Exchanges the client's secret for a token, without starting a conversation.

        Sends ``POST /v3/directline/tokens/generate`` (3.0), with
        ``{"user": {"id", "name"}, "trustedOrigins": [...]}`` when given, or
        ``POST /api/tokens/conversation`` (1.1, which takes neither). A
        ``Client(endpoint, token=...)`` made with the token can then start
        the conversation and use it, e.g. in a browser or another process.

        A client made with ``token_endpoint`` instead sends ``GET`` to that
        endpoint and returns its token; it takes no user or origins (the
        token service decides them).

        Args:
            user_id: 3.0 only: the user id embedded in the token; it must
                start with ``dl_``, and overrides ``from.id`` of every
                activity sent with the token.
            user_name: 3.0 only: the user's display name.
            trusted_origins: 3.0 only: the origins allowed to use the token.

        Returns:
            3.0: the service's Conversation object (``conversationId``,
            ``token``, ``expires_in``); 1.1: ``{"token": ...}``; with
            ``token_endpoint``: ``{"token", "expires_in"?,
            "conversationId"?}`` as the endpoint answered. The token is a
            secret: keep it out of logs.

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: a bad user id or origin, or any of them on
                1.1 or with ``token_endpoint``; nothing was sent.
            ForbiddenError: the client holds a token rather than the secret.
            DirectLineError: a network or service failure (a subclass per status).
        """
        request: dict[str, Any] = {}
        user = {key: value for key, value in (("id", user_id), ("name", user_name)) if value is not None}
        if user:
            request["user"] = user
        if trusted_origins is not None:
            if isinstance(trusted_origins, (str, bytes)):
                raise InvalidArgumentError.local("trusted_origins must be a list of str, not a single "
                                                 + type(trusted_origins).__name__)
            request["trustedOrigins"] = list(trusted_origins)
        body = _native.encode_json(request, "request")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_token_generate, handle, body)
        return result

    def refresh_token(self, token: str) -> dict[str, Any]:
        """Renews a token before it expires, e.g. one from ``generate_token`` handed to others.

        Conversations refresh their own tokens on their own; this is for
        tokens the application hands out. The old token stays valid until
        its own expiry.

        3.0 sends ``POST /v3/directline/tokens/refresh`` with ``token``. 1.1
        renews through the conversation id, so ``token`` must be the current
        token of a Conversation from this client, which keeps the new token
        too.

        Args:
            token: the token to renew.

        Returns:
            3.0: the service's Conversation object with the new ``token`` and
            ``expires_in``; 1.1: ``{"token": ...}``. The token is a secret.

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: an empty or unsafe token, or on 1.1 one that
                is not the current token of this client's conversations;
                nothing was sent.
            TokenExpiredError: too late to refresh it.
            DirectLineError: a network or service failure (a subclass per status).
        """
        encoded = _native.encode_string(token, "token")
        with self._borrow() as handle:
            result: dict[str, Any] = _native.call(lib.dl_token_refresh, handle, encoded)
        return result

    def open_conversation(self, conversation_id: str, token: str | None = None,
                          watermark: str | None = None,
                          stream_url: str | None = None, *, reconnect: bool = False,
                          token_expires_at: str | None = None) -> Conversation:
        """Attaches to an existing conversation, e.g. one saved earlier.

        Sends nothing, unless ``reconnect``.

        Args:
            conversation_id: the conversation's id.
            token: the token the service issued for that conversation
                (without it, the client's own secret or token is used; a
                ``token_endpoint`` client has none, so it needs one).
            watermark: where to resume reading; None reads from the start.
            stream_url: the conversation's WebSocket stream URL, if known.
            reconnect: 3.0 only: first send
                ``GET /v3/directline/conversations/{id}?watermark=``, and keep
                the token, expiry and stream URL the service answers.
            token_expires_at: when ``token`` expires, as ISO-8601 UTC
                (``"2026-11-21T02:30:00Z"``); the token is then refreshed
                automatically at half its remaining life. Without it (and
                without ``reconnect``) nothing refreshes the token.

        Returns:
            a Conversation (its ``start_result`` is None).

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: a missing or unsafe id or token, a malformed
                ``token_expires_at``, or ``reconnect`` on 1.1; nothing was sent.
            TokenExpiredError: with ``reconnect``, the token has expired.
            DirectLineError: with ``reconnect``, a network or service failure.
        """
        state: dict[str, Any] = {"conversationId": conversation_id}
        for key, value in (("token", token), ("watermark", watermark), ("streamUrl", stream_url),
                           ("tokenExpiresAt", token_expires_at)):
            if value is not None:
                state[key] = value
        return self._open(state, reconnect)

    def resume(self, state: Mapping[str, Any], *, reconnect: bool = False) -> Conversation:
        """Reopens a conversation saved with ``Conversation.state()``.

        Reading goes on from the saved watermark, so no reply is lost or
        repeated, and a token whose expiry was saved is refreshed
        automatically. Sends nothing, unless ``reconnect``.

        Args:
            state: the dict ``Conversation.state()`` returned (possibly after
                a JSON round trip): ``conversationId`` and optionally
                ``token``, ``watermark``, ``streamUrl``, ``tokenExpiresAt``,
                ``tokenLifetime``. A None ``token`` means the client's own
                credential. Passed to the library as is.
            reconnect: as in ``open_conversation`` (3.0 only).

        Returns:
            a Conversation (its ``start_result`` is None).

        Raises:
            ValueError: the client is closed.
            InvalidArgumentError: ``state`` is not a dict, lacks
                ``conversationId`` or has an unknown key; ``reconnect`` on
                1.1. Nothing was sent.
            TokenExpiredError: with ``reconnect``, the saved token has expired.
            DirectLineError: with ``reconnect``, a network or service failure.
        """
        if not isinstance(state, Mapping):
            raise InvalidArgumentError.local(f"state must be a dict, not {type(state).__name__}")
        return self._open(dict(state), reconnect)

    def _open(self, state: dict[str, Any], reconnect: bool) -> Conversation:
        """``dl_conversation_open`` with ``state`` (the C spelling)."""
        if not isinstance(reconnect, bool):
            raise InvalidArgumentError.local(f"reconnect must be a bool, not {type(reconnect).__name__}")
        if reconnect:
            state["reconnect"] = True
        body = _native.encode_json(state, "conversation state")
        with self._borrow() as handle:
            conversation, _ = _native.call_constructor(lib.dl_conversation_open, handle, body)
        return Conversation(self, conversation, start_result=None)
