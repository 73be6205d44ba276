"""Offline delegation chains: signed links that can only narrow an owner-granted right.

A link is a compact JWS (ES256), header exactly ``{"alg": "ES256", "typ":
"streembit-dlg+jws", "jwk": ISSUER_PUBLIC_JWK}``, payload::

    {"iss": ID, "sub": DELEGATEE_ID, "aud": GATEWAY_ID, "iat": 1, "exp": 2, "jti": "...",
     "prev": B64URL_SHA256, "things": [...], "affordances": [...], "ops": [...],
     "depth": 0, "nbf": 1, "schedule": "tue 09:00-12:00", "uses": 3}

("nbf", "schedule", "uses" optional). The first link's issuer must hold a grant in the
installed ACL with ``delegate`` > 0; each next issuer is the previous link's ``sub``.
``prev`` binds a link to its parent: for the first link the SHA-256 of
``"streembit-dlg-root:" + GATEWAY_ID + ":" + ISSUER_ID`` (the grant reference: the issuer's
grant on this gateway, whatever its ACL version), else the SHA-256 of the parent link's
compact text. `verify_chain` checks every link against the CURRENT ACL on every call, so a
revoked or removed issuer ends every chain through it at once. Checks and codes: docs/acl.md
"Delegation".
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError

from gateway.acl.model import BASE_OPS, MAX_NAME_LEN, WILDCARD, Schedule
from gateway.b64 import Base64UrlError, b64url_encode
from gateway.codes import Code
from gateway.compact import peek_header
from gateway.errors import AclError
from gateway.identity import KeyPair
from gateway.jsonsafe import JsonInputError, JsonLimits, loads_object

DLG_TYP: Final = "streembit-dlg+jws"
DLG_ALG: Final = "ES256"
SEPARATOR: Final = "~"  # between links in the HTTP header: not in a compact JWS
HTTP_HEADER: Final = "Streembit-Delegation"
MAX_LINKS: Final = 4
MAX_LINK_BYTES: Final = 4096
MAX_LIFETIME_S: Final = 30 * 86400  # exp - iat of one link
CLOCK_SKEW_S: Final = 60
MAX_INT: Final = 2**53 - 1
MAX_LIST: Final = 64
MAX_USES: Final = 1_000_000
ROOT_PREFIX: Final = "streembit-dlg-root:"
PARSE_CACHE: Final = 1024  # parsed links kept (each <= 4 KiB): a chain is parsed once, not per use
_LIMITS: Final = JsonLimits(max_bytes=MAX_LINK_BYTES, max_depth=4)
_HEADER_KEYS: Final = frozenset({"alg", "typ", "jwk"})
_REQUIRED: Final = ("iss", "sub", "aud", "iat", "exp", "jti", "prev", "things", "ops", "depth")
_CLAIMS: Final = frozenset({*_REQUIRED, "affordances", "nbf", "schedule", "uses"})


class DelegationError(AclError):
    """A delegation chain was refused; `code` is one of the DELEGATION_* codes."""

    code: str = Code.DELEGATION_MALFORMED


def _err(code: Code, reason: str) -> DelegationError:
    return DelegationError(f"delegation refused: {reason}", code=code)


@dataclass(frozen=True)
class Link:
    """One parsed (not yet verified) link."""

    text: str
    jwk: dict[str, Any]
    iss: str
    sub: str
    aud: str
    iat: int
    exp: int
    jti: str
    prev: str
    things: tuple[str, ...]
    affordances: tuple[str, ...]
    ops: frozenset[str]
    depth: int
    nbf: int | None
    schedule: Schedule | None
    uses: int | None

    @property
    def digest(self) -> str:
        return digest(self.text)


@dataclass(frozen=True)
class Chain:
    """A verified chain: the holder's effective rights are the last link's (all narrower)."""

    links: tuple[Link, ...]
    holder: str
    rule: str  # "dlg:ISSUER8>ISSUER8>...>HOLDER8", for the audit

    @property
    def last(self) -> Link:
        return self.links[-1]

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(link.iss for link in self.links)


def digest(text: str) -> str:
    """base64url(SHA-256(TEXT)): the `prev` of a child link, and the key of use counts."""
    return b64url_encode(hashlib.sha256(text.encode("utf-8")).digest())


def root_ref(gateway_id: str, issuer_id: str) -> str:
    """The `prev` of a first link: the reference of ISSUER_ID's grant on GATEWAY_ID."""
    return digest(f"{ROOT_PREFIX}{gateway_id}:{issuer_id}")


# ---------------------------------------------------------------------------- signing
def sign_link(
    issuer: KeyPair,
    *,
    to: str,
    gateway_id: str,
    things: Sequence[str],
    ops: Sequence[str],
    exp: int,
    affordances: Sequence[str] = (WILDCARD,),
    depth: int = 0,
    nbf: int | None = None,
    schedule: str | None = None,
    uses: int | None = None,
    parent: str | None = None,
    jti: str | None = None,
    now: int | None = None,
) -> str:
    """A link from ISSUER to TO; PARENT is the previous link's text (None: first link)."""
    iat = int(time.time()) if now is None else now
    payload: dict[str, Any] = {
        "iss": issuer.id,
        "sub": to,
        "aud": gateway_id,
        "iat": iat,
        "exp": exp,
        "jti": jti or b64url_encode(secrets.token_bytes(16)),
        "prev": root_ref(gateway_id, issuer.id) if parent is None else digest(parent),
        "things": list(things),
        "affordances": list(affordances),
        "ops": sorted(set(ops)),
        "depth": depth,
    }
    for name, value in (("nbf", nbf), ("schedule", schedule), ("uses", uses)):
        if value is not None:
            payload[name] = value
    header = {"alg": DLG_ALG, "typ": DLG_TYP, "jwk": dict(issuer.public.jwk)}
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return jws.serialize_compact(header, body, issuer.jose_key(), algorithms=[DLG_ALG])


# ---------------------------------------------------------------------------- parsing
def split_header(value: str) -> list[str]:
    """The links of an HTTP `Streembit-Delegation` header value (LINK~LINK~...)."""
    if not isinstance(value, str) or len(value) > MAX_LINKS * (MAX_LINK_BYTES + 1):
        raise _err(Code.DELEGATION_MALFORMED, "header too long")
    return [part.strip() for part in value.split(SEPARATOR)]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT


def _names(v: Any, label: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_LIST:
        raise _err(Code.DELEGATION_MALFORMED, f"{label} must be a list of 1..{MAX_LIST} names")
    for n in v:
        if not isinstance(n, str) or not 1 <= len(n) <= MAX_NAME_LEN:
            raise _err(Code.DELEGATION_MALFORMED, f"{label}: names are 1..{MAX_NAME_LEN} chars")
    return tuple(v)


def parse_link(text: object) -> Link:
    """Parse one link's structure (no signature or chain check); DelegationError if malformed.
    Pure in TEXT, so a link presented again (every request of a chain) is parsed once."""
    if not isinstance(text, str):
        raise _err(Code.DELEGATION_MALFORMED, f"a link is ASCII text of <= {MAX_LINK_BYTES} bytes")
    return _parse_link(text)


@functools.lru_cache(maxsize=PARSE_CACHE)
def _parse_link(text: str) -> Link:
    if not isinstance(text, str) or not text.isascii() or len(text) > MAX_LINK_BYTES:
        raise _err(Code.DELEGATION_MALFORMED, f"a link is ASCII text of <= {MAX_LINK_BYTES} bytes")
    if text.count(".") != 2:
        raise _err(Code.DELEGATION_MALFORMED, "a link is a compact JWS")
    try:
        header = peek_header(text, _LIMITS)
        obj = jws.extract_compact(text.encode("ascii"))
        claims = loads_object(obj.payload, _LIMITS, what="payload")
    except (JsonInputError, Base64UrlError, JoseError, ValueError, TypeError) as exc:
        raise _err(Code.DELEGATION_MALFORMED, f"not a compact JWS ({type(exc).__name__})") from None
    if set(header) != _HEADER_KEYS or header["alg"] != DLG_ALG or header["typ"] != DLG_TYP:
        raise _err(Code.DELEGATION_MALFORMED, f"header must be alg {DLG_ALG}, typ {DLG_TYP}, jwk")
    if not isinstance(header["jwk"], dict):
        raise _err(Code.DELEGATION_MALFORMED, "header jwk must be an object")
    missing = [n for n in _REQUIRED if n not in claims]
    if missing or set(claims) - _CLAIMS:
        raise _err(Code.DELEGATION_MALFORMED, "payload members missing or unknown")
    for n in ("iss", "sub", "aud", "jti", "prev"):
        if not isinstance(claims[n], str) or not 1 <= len(claims[n]) <= MAX_NAME_LEN:
            raise _err(Code.DELEGATION_MALFORMED, f"{n} must be a short string")
    for n in ("iat", "exp", "depth", "nbf", "uses"):
        if n in claims and not _int(claims[n]):
            raise _err(Code.DELEGATION_MALFORMED, f"{n} must be a non-negative integer")
    ops = frozenset(_names(claims["ops"], "ops"))
    if not ops <= BASE_OPS:
        raise _err(Code.DELEGATION_MALFORMED, f"ops must be a subset of {sorted(BASE_OPS)}")
    nbf, uses = claims.get("nbf"), claims.get("uses")
    if uses is not None and not 1 <= uses <= MAX_USES:
        raise _err(Code.DELEGATION_MALFORMED, f"uses must be 1..{MAX_USES}")
    if not claims["iat"] < claims["exp"] <= claims["iat"] + MAX_LIFETIME_S:
        raise _err(Code.DELEGATION_MALFORMED, f"exp after iat by at most {MAX_LIFETIME_S} s")
    if nbf is not None and nbf >= claims["exp"]:
        raise _err(Code.DELEGATION_MALFORMED, "exp must be after nbf")
    spec = claims.get("schedule")
    try:
        schedule = Schedule.parse(spec) if spec is not None else None
    except AclError:
        raise _err(Code.DELEGATION_MALFORMED, "schedule is malformed") from None
    return Link(
        text=text,
        jwk=header["jwk"],
        iss=claims["iss"],
        sub=claims["sub"],
        aud=claims["aud"],
        iat=claims["iat"],
        exp=claims["exp"],
        jti=claims["jti"],
        prev=claims["prev"],
        things=_names(claims["things"], "things"),
        affordances=_names(claims.get("affordances", [WILDCARD]), "affordances"),
        ops=ops,
        depth=claims["depth"],
        nbf=nbf,
        schedule=schedule,
        uses=uses,
    )


def parse_chain(links: object) -> tuple[Link, ...]:
    """Parse a presented chain (a list of link texts); DelegationError if malformed."""
    if not isinstance(links, (list, tuple)) or not 1 <= len(links) <= MAX_LINKS:
        raise _err(Code.DELEGATION_MALFORMED, f"a chain is a list of 1..{MAX_LINKS} links")
    return tuple(parse_link(text) for text in links)
