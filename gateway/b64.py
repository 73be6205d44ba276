"""The one base64url codec (RFC 7515 section 2: unpadded, URL-safe alphabet), strict on input.

`b64url_decode` accepts exactly the canonical unpadded form: only ``A-Z a-z 0-9 - _``, no
``=`` padding, no whitespace, no length of 4n+1, and no set bits beyond the last byte (the
form `b64url_encode` writes). So one value has one spelling, as joserfc requires of a JWS.
Every refusal is a `Base64UrlError` (a ValueError); each caller maps it to its own code.
This module imports nothing of the gateway: every layer may use it.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

__all__ = ["Base64UrlError", "b64url_decode", "b64url_encode"]

_ALPHABET: Final = re.compile(rb"[A-Za-z0-9_-]*")


class Base64UrlError(ValueError):
    """Not canonical unpadded base64url."""


def b64url_encode(data: bytes) -> str:
    """DATA as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str | bytes, what: str = "value") -> bytes:
    """The bytes of one canonical unpadded base64url SEGMENT; Base64UrlError otherwise."""
    if isinstance(segment, str):
        if not segment.isascii():
            raise Base64UrlError(f"{what} is not base64url")
        raw = segment.encode("ascii")
    elif isinstance(segment, bytes):
        raw = segment
    else:
        raise Base64UrlError(f"{what} is not base64url text")
    if _ALPHABET.fullmatch(raw) is None or len(raw) % 4 == 1:
        raise Base64UrlError(f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except binascii.Error:
        raise Base64UrlError(f"{what} is not base64url") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != raw:
        raise Base64UrlError(f"{what} is not canonical base64url")
    return data
