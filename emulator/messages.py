"""HTTP request/response values and the strict parsers for what they carry.

Nothing here touches sockets: the server turns bytes into a `Request`, the
application answers with a `Response`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

from .errors import ApiError, bad_argument

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
SEND_LIMIT_BYTES = 262_144


@dataclass
class Request:
    method: str
    raw_path: str
    segments: list[str]
    query: dict[str, str]
    headers: Message
    body: bytes
    base_url: str
    stream_base_url: str
    # Its request log entry (None for control requests), for handlers to annotate.
    log_entry: dict | None = None

    @property
    def legacy(self) -> bool:
        """True for Direct Line 1.1 paths, whose errors carry `statusCode`."""
        return is_legacy_path(self.raw_path)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def encode_json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, value, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, encode_json(value), JSON_CONTENT_TYPE, list(headers or []))


def empty_response(status: int = 204) -> Response:
    return Response(status)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes, what: str):
    """Decode strict JSON: UTF-8 without BOM, no NaN/Infinity, no lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_argument(f"{what} is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise bad_argument(f"{what} is not valid JSON: {exc}") from None
    try:
        encode_json(value)
    except UnicodeEncodeError:
        raise bad_argument(f"{what} contains an unpaired surrogate escape") from None
    return value


def parse_json_object(body: bytes, what: str) -> dict:
    value = parse_json(body, what)
    if not isinstance(value, dict):
        raise bad_argument(f"{what} must be a JSON object")
    return value


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _ParamScanner:
    """RFC 9110 `token *( OWS ";" OWS parameter )` with quoted-string values."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def fail(self) -> ApiError:
        return bad_argument(f"malformed {self.what} header")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        match = _TOKEN.match(self.text, self.pos)
        if not match:
            raise self.fail()
        self.pos = match.end()
        return match.group(0)

    def quoted(self) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
                char = self.text[self.pos]
            out.append(char)
            self.pos += 1
        raise self.fail()

    def value(self, name: str) -> str:
        if self.peek() != '"':
            return self.token()
        if name.endswith("*"):  # RFC 8187 ext-value: never a quoted-string
            raise bad_argument(f"{name} in {self.what} must not be quoted")
        return self.quoted()

    def parameters(self) -> dict[str, str]:
        params: dict[str, str] = {}
        while True:
            self.skip_space()
            if self.at_end():
                return params
            if self.peek() != ";":
                raise self.fail()
            self.pos += 1
            self.skip_space()
            if self.at_end():
                return params
            name = self.token().lower()
            if self.peek() != "=":
                raise self.fail()
            self.pos += 1
            if name in params:
                raise self.fail()
            params[name] = self.value(name)


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; k=v` -> ("type/subtype" lower-cased, {k: v})."""
    scanner = _ParamScanner(value, "Content-Type")
    scanner.skip_space()
    main = scanner.token()
    if scanner.peek() != "/":
        raise scanner.fail()
    scanner.pos += 1
    sub = scanner.token()
    return f"{main}/{sub}".lower(), scanner.parameters()


def parse_content_disposition(value: str) -> tuple[str | None, dict[str, str]]:
    """Content-Disposition with an optional disposition type.

    The Direct Line documentation's single-upload form is
    `name="file"; filename="x"`, which has no type, so that is accepted too.
    """
    scanner = _ParamScanner(value, "Content-Disposition")
    scanner.skip_space()
    first = scanner.token()
    if scanner.peek() == "=":
        scanner.pos += 1
        params = {first.lower(): scanner.value(first.lower())}
        for name, param in scanner.parameters().items():
            if name in params:
                raise scanner.fail()
            params[name] = param
        return None, params
    return first.lower(), scanner.parameters()


_FORM_ESCAPES = re.compile(r"%(22|0d|0a|25)", re.IGNORECASE)
_FORM_UNESCAPED = {"22": '"', "0d": "\r", "0a": "\n", "25": "%"}
# RFC 8187 ext-value: charset "'" [ language ] "'" value-chars, where
# value-chars are attr-chars and %XX escapes. Only UTF-8 is accepted: RFC 8187
# makes producers use it and leaves other charsets for future use.
_EXT_VALUE = re.compile(r"(?P<charset>[^']*)'(?P<language>[^']*)'(?P<value>.*)", re.DOTALL)
_LANGUAGE = re.compile(r"[A-Za-z0-9-]*")
_VALUE_CHARS = re.compile(r"(?:[A-Za-z0-9!#$&+\-.^_`|~]|%[0-9A-Fa-f]{2})+")
_ILLEGAL_VALUE_CHAR = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9!#$&+\-.^_`|~%]")


def _decode_ext_value(encoded: str) -> str:
    """A `filename*` value, strictly per RFC 8187, UTF-8 only."""
    parts = _EXT_VALUE.fullmatch(encoded)
    if parts is None or not _LANGUAGE.fullmatch(parts["language"]):
        raise bad_argument("filename* in Content-Disposition must be UTF-8'[language]'<percent-encoded name> "
                           "(RFC 8187)")
    if parts["charset"].lower() != "utf-8":
        raise bad_argument("filename* in Content-Disposition must use the UTF-8 charset, "
                           f"not {parts['charset'] or 'none'!r}")
    value = parts["value"]
    if not value:
        raise bad_argument("filename* in Content-Disposition is empty")
    if not _VALUE_CHARS.fullmatch(value):
        bad = _ILLEGAL_VALUE_CHAR.search(value)
        what = "a % not followed by two hex digits" if bad[0] == "%" else f"the character {bad[0]!r}"
        raise bad_argument(f"filename* in Content-Disposition holds {what}; "
                           "RFC 8187 allows only attr-chars and %XX escapes")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_argument("filename* in Content-Disposition does not decode to valid UTF-8") from None


def decode_filename(params: dict[str, str], multipart: bool) -> str | None:
    """The file name a client meant, from a Content-Disposition's parameters.

    A raw upload's header may carry `filename*` (RFC 8187, UTF-8 only), which
    wins over `filename` (RFC 6266). A multipart part must not (RFC 7578
    section 4.2): its `filename` holds the UTF-8 name itself.

    In `filename`, the HTML form escapes %22, %0D and %0A are decoded, and
    %25 (which this library sends for `%`, so that a name containing `%22`
    survives); any other `%` is literal, as browsers send it.
    """
    extended = params.get("filename*")
    if extended is not None:
        if multipart:
            raise bad_argument("a multipart/form-data part must not carry filename* (RFC 7578 section 4.2): "
                               "send the UTF-8 name in filename")
        return _decode_ext_value(extended)
    plain = params.get("filename")
    if plain is None:
        return None
    return _FORM_ESCAPES.sub(lambda m: _FORM_UNESCAPED[m.group(1).lower()], plain)


def header_text(raw: str) -> str:
    """Header text as the client's UTF-8, falling back to the Latin-1 it was read as."""
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        data = raw.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# `/region/<name>` before a Direct Line path: the host a regional settings
# answer points at (the emulator serves every region itself).
_REGION_PREFIX = re.compile(r"/region/[^/]+(?=/(?:v3|api)/)", re.IGNORECASE)


def service_path(raw_path: str) -> str:
    """The Direct Line path a raw path names, without a `/region/<name>` prefix."""
    match = _REGION_PREFIX.match(raw_path)
    return raw_path[match.end():] if match else raw_path


def is_legacy_path(raw_path: str) -> bool:
    return service_path(raw_path).startswith("/api/")


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of an origin-form or absolute-form request target."""
    if not target.startswith("/"):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query


def first_values(query: str) -> dict[str, str]:
    """Each query parameter's first value (blank values kept)."""
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, value)
    return values


# Bodies of the `garbage` and `wrong_type` faults.
GARBAGE_BODY = b'{"activities": [ this is not JSON'
WRONG_TYPE_BODY = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
                   b"<body><h1>Service Unavailable</h1></body></html>\n")
