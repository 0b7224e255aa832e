"""Upload bodies: one raw file, or multipart/form-data (RFC 7578 / RFC 2046).

The multipart structure is parsed by the standard library's `email` parser;
anything it flags as a defect (no closing delimiter, no opening delimiter, a
part without a header/body separator, ...) is refused.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from .errors import ApiError, bad_argument, missing_property, size_limit_message
from .messages import (SEND_LIMIT_BYTES, decode_filename, header_text,
                       parse_content_disposition, parse_media_type)

# RFC 2046 boundary: 1-70 characters from this set, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_IDENTITY_ENCODINGS = ("7bit", "8bit", "binary")


@dataclass
class UploadedFile:
    name: str
    content_type: str
    data: bytes


@dataclass
class Upload:
    container: bytes | None
    files: list[UploadedFile]


def _checked_content_type(raw: str, where: str) -> str:
    value = header_text(raw).strip()
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise bad_argument(f"{where} Content-Type contains control characters")
    parse_media_type(value)
    return value


def parse_upload(headers: Message, body: bytes, container_type: str) -> Upload:
    """Split an upload request into its activity/message part and its files.

    `container_type` is the media type of the part that carries the activity
    (3.0) or message (1.1).
    """
    raw_type = headers.get("Content-Type")
    if raw_type is None:
        raise missing_property("an upload needs a Content-Type header")
    media_type, params = parse_media_type(header_text(raw_type))
    if media_type == "multipart/form-data":
        return _parse_multipart(params, body, container_type)
    content_type = _checked_content_type(raw_type, "the upload's")
    disposition = headers.get("Content-Disposition")
    if disposition is None:
        raise missing_property("a single-file upload needs a Content-Disposition header "
                               "with a filename")
    if not disposition.isascii():
        raise bad_argument("a single-file upload's Content-Disposition must be ASCII: send a non-ASCII file "
                           "name as filename*=UTF-8''<percent-encoded> (RFC 6266, RFC 8187)")
    _kind, disposition_params = parse_content_disposition(disposition)
    name = decode_filename(disposition_params, multipart=False)
    if name is None:
        raise missing_property("the upload's Content-Disposition has no filename")
    return Upload(container=None, files=[UploadedFile(name, content_type, body)])


def _parse_multipart(params: dict[str, str], body: bytes, container_type: str) -> Upload:
    boundary = params.get("boundary")
    if boundary is None:
        raise bad_argument("multipart/form-data without a boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise bad_argument("the multipart boundary is not a valid RFC 2046 boundary")
    envelope = (b"MIME-Version: 1.0\r\nContent-Type: multipart/form-data; boundary=\""
                + boundary.encode("ascii") + b"\"\r\n\r\n")
    root = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope + body)
    if root.defects or not root.is_multipart():
        raise bad_argument("malformed multipart body: "
                           + (_describe(root.defects) or "no parts"))
    container: bytes | None = None
    files: list[UploadedFile] = []
    for index, part in enumerate(root.get_payload(), start=1):
        if part.defects:
            raise bad_argument(f"malformed multipart part {index}: {_describe(part.defects)}")
        if part.is_multipart():
            raise bad_argument(f"multipart part {index} is itself multipart")
        headers = {}
        for name, value in part.raw_items():
            if "\r" in value or "\n" in value:
                raise bad_argument(f"multipart part {index} has a folded header")
            if name.lower() in headers:
                raise bad_argument(f"multipart part {index} repeats the {name} header")
            headers[name.lower()] = value
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        if encoding not in _IDENTITY_ENCODINGS:
            raise bad_argument(f"multipart part {index} uses Content-Transfer-Encoding "
                               f"{encoding}; send the bytes as they are")
        if "content-type" not in headers:
            raise bad_argument(f"multipart part {index} has no Content-Type")
        content_type = _checked_content_type(headers["content-type"], f"part {index}'s")
        data = part.get_payload(decode=True)
        if parse_media_type(content_type)[0] == container_type:
            if container is not None:
                raise bad_argument(f"more than one {container_type} part")
            if len(data) > SEND_LIMIT_BYTES:
                raise ApiError(413, "RequestTooLarge", size_limit_message(SEND_LIMIT_BYTES))
            container = data
            continue
        files.append(UploadedFile(_part_filename(headers, index), content_type, data))
    return Upload(container=container, files=files)


def _part_filename(headers: dict[str, str], index: int) -> str:
    """The file's name: its filename, else its form field name."""
    raw = headers.get("content-disposition")
    if raw is None:
        raise bad_argument(f"multipart file part {index} has no Content-Disposition")
    kind, params = parse_content_disposition(header_text(raw))
    if kind != "form-data":
        raise bad_argument(f"multipart file part {index}: Content-Disposition must be form-data")
    if "name" not in params:
        raise bad_argument(f"multipart file part {index}: Content-Disposition has no name")
    filename = decode_filename(params, multipart=True)
    return filename if filename is not None else params["name"]


def _describe(defects: list) -> str:
    return ", ".join(type(defect).__name__ for defect in defects)
