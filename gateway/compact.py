"""Read a compact JWS/JWE before it is verified: its protected header, or one JSON segment.

Every verifier looks at the protected header first (alg, typ, kid, jwk) to refuse ``none``,
HS*, a foreign key or a wrong type before any key is used; `peek_header` is that one step:
segment 0 of ``HEADER.REST...``, canonical base64url (`gateway.b64`), one JSON object under
the caller's `JsonLimits` (`gateway.jsonsafe`). Nothing here is verified: the caller still
checks the signature (joserfc). Refusals are `Base64UrlError` or `JsonInputError`, both
ValueErrors, which the caller maps to its own refusal code.
"""

from __future__ import annotations

from typing import Any

from gateway.b64 import Base64UrlError, b64url_decode
from gateway.jsonsafe import JsonLimits, loads_object

__all__ = ["json_segment", "peek_header"]


def json_segment(segment: str | bytes, limits: JsonLimits, *, what: str) -> dict[str, Any]:
    """One base64url segment holding a JSON object (a header, unverified claims)."""
    return loads_object(b64url_decode(segment, what), limits, what=what)


def peek_header(token: str | bytes, limits: JsonLimits, *, what: str = "header") -> dict[str, Any]:
    """The protected header of compact serialization TOKEN, unverified."""
    head: str | bytes
    if isinstance(token, str):
        head, dot, _ = token.partition(".")
    else:
        head, dotb, _ = token.partition(b".")
        dot = dotb.decode()
    if not dot:
        raise Base64UrlError(f"{what}: not compact serialization (no '.')")
    return json_segment(head, limits, what=what)
