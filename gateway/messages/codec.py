"""Strict decoding of untrusted compact-serialization pieces: base64url segments and JSON objects.

Refusals raise `MessageError` with code `bad_format`. JSON is parsed strictly: duplicate member
names, NaN/Infinity and non-object documents are refused, so every implementation reads the same
signed bytes the same way.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

from gateway.errors import MessageError
from gateway.messages import codes


def b64url_decode(segment: str, what: str) -> bytes:
    """Decode one unpadded base64url segment (canonical form only)."""
    try:
        return urlsafe_b64decode(segment.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MessageError(f"{what} is not base64url", code=codes.BAD_FORMAT) from None


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url text."""
    return urlsafe_b64encode(data).decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object; refuse duplicates and non-finite numbers."""
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MessageError(f"{what} is not valid JSON", code=codes.BAD_FORMAT) from None
    if not isinstance(obj, dict):
        raise MessageError(f"{what} is not a JSON object", code=codes.BAD_FORMAT)
    return obj


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
