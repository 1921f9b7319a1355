"""What a request body may be, in one place: its media type, size, nesting and number literals.

Both doors use these: the Lambda resolver (`serving.http`) and the local gateway. Anything
beyond them is the caller's fault, answered with a 4xx in the one error shape that names
the limit (never a `RecursionError` or `ValueError` turned into a 500).

The largest valid request (a batch of 1,000 reports, every field at its longest, indented
JSON with escaped text) is about 1.1 MB, its nesting 3 levels and its longest number 20
characters, so the limits below stop nothing a real client sends.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from avsev.serving.errors import ApiError, ErrorDetail

JSON_MEDIA_TYPE = "application/json"
MAX_BODY_BYTES = 2 * 1024 * 1024
"""Request bodies up to 2 MiB (API Gateway allows 10 MB, Lambda 6 MB)."""
MAX_DEPTH = 16
"""Arrays and objects nested at most 16 levels deep (a valid request needs 3)."""
MAX_NUMBER_CHARS = 100
"""A number literal of at most 100 characters (sign, digits, point and exponent)."""

MEDIA_TYPE_ALLOWED = f"{JSON_MEDIA_TYPE} (optionally with charset=utf-8)"
BODY_SIZE_ALLOWED = f"at most {MAX_BODY_BYTES:,} bytes"
DEPTH_ALLOWED = f"arrays and objects nested at most {MAX_DEPTH} levels deep"
NUMBER_ALLOWED = f"number literals of at most {MAX_NUMBER_CHARS} characters"


def unsupported_media_type(content_type: str) -> ApiError:
    shown = content_type[:100] or "(none)"
    return ApiError(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        f"the request body must be JSON, sent as {JSON_MEDIA_TYPE}; got Content-Type {shown}",
        [
            ErrorDetail(
                field="Content-Type", problem=f"unsupported: {shown}", allowed=MEDIA_TYPE_ALLOWED
            )
        ],
    )


def check_content_type(content_type: str | None) -> None:
    """A body must be JSON: no Content-Type (as API Gateway's tests send) or application/json,
    with no charset but UTF-8. Raises a 415 otherwise."""
    if not content_type or not content_type.strip():
        return
    media, _, params = content_type.partition(";")
    if media.strip().lower() != JSON_MEDIA_TYPE:
        raise unsupported_media_type(content_type)
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise unsupported_media_type(content_type)


CONTENT_ENCODING_ALLOWED = "identity (an uncompressed body; or no Content-Encoding header)"


def unsupported_content_encoding(encoding: str) -> ApiError:
    shown = encoding[:100]
    return ApiError(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_content_encoding",
        f"the request body must be sent uncompressed; got Content-Encoding {shown}",
        [
            ErrorDetail(
                field="Content-Encoding",
                problem=f"unsupported: {shown}",
                allowed=CONTENT_ENCODING_ALLOWED,
            )
        ],
    )


def check_content_encoding(encoding: str | None) -> None:
    """A body must reach the function as sent, uncompressed: no Content-Encoding or only
    `identity`. Raises a 415 otherwise.

    API Gateway REST decompresses a request body only on an API with compression enabled
    (`minimumCompressionSize` set), which this API does not set, so a compressed body is
    passed on as it was sent, with its Content-Encoding header
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gzip-compression-decompression.html);
    where API Gateway itself refuses a coding it cannot read, it answers 415 Unsupported Media
    Type (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-make-request-with-compressed-payload.html),
    and so does the function for a body it cannot read."""
    if not encoding:
        return
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    if any(c != "identity" for c in codings):
        raise unsupported_content_encoding(encoding)


def body_too_large(size: int | None = None) -> ApiError:
    got = f" (got {size:,} bytes)" if size is not None else ""
    return ApiError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "body_too_large",
        f"the request body is too large{got}: {BODY_SIZE_ALLOWED}",
        [ErrorDetail(field="body", problem=f"too large{got}", allowed=BODY_SIZE_ALLOWED)],
    )


def check_size(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise body_too_large(size)


def too_deep() -> ApiError:
    return ApiError(
        HTTPStatus.BAD_REQUEST,
        "body_too_deep",
        f"the request body is nested too deeply: {DEPTH_ALLOWED}",
        [ErrorDetail(field="body", problem="nested too deeply", allowed=DEPTH_ALLOWED)],
    )


def number_too_long(literal: str) -> ApiError:
    shown = f"{literal[:12]}… ({len(literal):,} characters)"
    return ApiError(
        HTTPStatus.BAD_REQUEST,
        "number_too_long",
        f"the request body has a number literal that is too long: {NUMBER_ALLOWED}",
        [ErrorDetail(field="body", problem=f"number too long: {shown}", allowed=NUMBER_ALLOWED)],
    )


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise number_too_long(literal)
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise number_too_long(literal)
    return float(literal)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit`: level by level, no recursion to exhaust."""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return False
    return True


def body_size(text: str | bytes) -> int:
    """The body's size in bytes as sent (UTF-8)."""
    size = len(text)
    if isinstance(text, str) and size * 4 > MAX_BODY_BYTES:  # UTF-8 takes 1 to 4 bytes a character
        size = len(text.encode("utf-8", "surrogatepass"))
    return size


_NUMBER_CHARS = str.maketrans(dict.fromkeys("0123456789+-.eE", "0"))
_TOO_LONG_RUN = "0" * (MAX_NUMBER_CHARS + 1)


def may_have_long_number(text: str) -> bool:
    """Whether `text` has a run of more than `MAX_NUMBER_CHARS` characters that can make up
    a number literal (in C, ~0.1 ms for 300 kB): when it has none, no number literal in it is
    too long, and the text needs no per-number check."""
    return _TOO_LONG_RUN in text.translate(_NUMBER_CHARS)


def decode_json(text: str | bytes) -> Any:
    """`json.loads` within the limits: a 413 or 400 `ApiError` beyond them; a
    `json.JSONDecodeError` for text that is not JSON (the validator answers that one)."""
    check_size(body_size(text))
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float)
    except RecursionError:
        raise too_deep() from None
    # Only a body with more brackets than the limit can nest beyond it: skip the walk otherwise.
    if isinstance(value, dict | list):
        brackets = (
            text.count(b"[") + text.count(b"{")
            if isinstance(text, bytes)
            else text.count("[") + text.count("{")
        )
        if brackets > MAX_DEPTH and _depth_exceeds(value, MAX_DEPTH):
            raise too_deep()
    return value
