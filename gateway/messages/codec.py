"""Strict decoding of untrusted compact-serialization pieces: base64url segments and JSON objects.

Refusals raise `MessageError` with code `bad_format`. JSON is parsed by the bounded policy of
`gateway.jsonsafe`: duplicate member names, NaN/Infinity, numbers that overflow a double (1e400),
over-long numbers, deep nesting, invalid text and non-object documents are refused, so every
implementation reads the same signed bytes the same way.
"""

from __future__ import annotations

import json
from typing import Any, Final

from gateway.b64 import Base64UrlError, b64url_encode
from gateway.b64 import b64url_decode as _decode
from gateway.compact import peek_header
from gateway.errors import MessageError
from gateway.jsonsafe import JsonInputError, JsonLimits, loads_object
from gateway.messages import codes

__all__ = [
    "MESSAGE_JSON_LIMITS",
    "b64url_decode",
    "b64url_encode",
    "header_object",
    "json_bytes",
    "json_object",
]

# A sealed message is at most 64 KiB; its headers and claims are shallow.
MESSAGE_JSON_LIMITS: Final = JsonLimits(max_bytes=64 * 1024, max_depth=32)


def b64url_decode(segment: str, what: str) -> bytes:
    """Decode one unpadded base64url segment (canonical form only, `gateway.b64`)."""
    try:
        return _decode(segment, what)
    except Base64UrlError:
        raise MessageError(f"{what} is not base64url", code=codes.BAD_FORMAT) from None


def header_object(token: str | bytes, what: str) -> dict[str, Any]:
    """The protected header of compact TOKEN (`gateway.compact.peek_header`), unverified."""
    try:
        return peek_header(token, MESSAGE_JSON_LIMITS, what=what)
    except Base64UrlError:
        raise MessageError(f"{what} is not base64url", code=codes.BAD_FORMAT) from None
    except JsonInputError as exc:
        raise MessageError(f"{exc} [{exc.problem}]", code=codes.BAD_FORMAT) from None


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object, within MESSAGE_JSON_LIMITS."""
    try:
        return loads_object(data, MESSAGE_JSON_LIMITS, what=what)
    except JsonInputError as exc:
        raise MessageError(f"{exc} [{exc.problem}]", code=codes.BAD_FORMAT) from None


def json_bytes(obj: dict[str, Any]) -> bytes:
    """Serialize compactly as UTF-8 JSON; refuse values JSON cannot carry (NaN, sets, ...)."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except (TypeError, ValueError) as exc:
        raise MessageError(
            f"claims are not JSON-serializable: {exc}", code=codes.BAD_FORMAT
        ) from None
