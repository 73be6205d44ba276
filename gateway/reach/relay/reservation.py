"""Signed relay reservations (docs/reach.md, "Relays"): the challenge and its compact JWS answer.

The relay sends ``{"type": "challenge", "nonce": <128 random bits, base64url>, "relay": <its id
or "">}`` on the control WebSocket; the reserving node answers ``{"type": "reserve", "jws":
<compact JWS>}`` whose protected header is ``{"alg": "ES256", "typ": "streembit-relay+jws",
"jwk": <signer's public JWK>}`` and whose payload is ``{"id", "nonce", "iat", "exp"}``, with
``id`` the RFC 7638 thumbprint of ``jwk`` and ``exp - iat <= 300``.

`verify_reservation` checks, cheapest first: size, structure, header, payload fields,
thumbprint == id, the nonce, the time, and last the signature (joserfc). Every refusal is a
`ReachError` with code `Code.RELAY_BAD_RESERVATION` and a reason; nothing unverified is returned.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gateway.b64 import Base64UrlError, b64url_encode
from gateway.codes import Code
from gateway.compact import peek_header
from gateway.errors import IdentityError, ReachError
from gateway.identity import KeyPair, public_from_jwk
from gateway.jsonsafe import JsonInputError, JsonLimits, loads_object

__all__ = [
    "CLOCK_SKEW_S",
    "MAX_CONTROL_BYTES",
    "MAX_JWS_BYTES",
    "MAX_LIFETIME_S",
    "NONCE_BYTES",
    "RESERVATION_ALG",
    "RESERVATION_TTL_S",
    "RESERVATION_TYP",
    "Reservation",
    "challenge",
    "new_nonce",
    "parse_control",
    "sign_reservation",
    "verify_reservation",
]

RESERVATION_TYP: Final = "streembit-relay+jws"
RESERVATION_ALG: Final = "ES256"
NONCE_BYTES: Final = 16  # 128 bits: a nonce is never guessed nor repeated
NONCE_CHARS: Final = 22  # base64url of 16 bytes, unpadded
#: A reservation JWS carries one P-256 JWK and four short claims (about 500 bytes).
MAX_JWS_BYTES: Final = 2048
#: One control message (challenge, reserve, reserved, incoming, refused) is well under 4 KiB.
MAX_CONTROL_BYTES: Final = 4096
CONTROL_LIMITS: Final = JsonLimits(max_bytes=MAX_CONTROL_BYTES, max_depth=4)
_JWS_LIMITS: Final = JsonLimits(max_bytes=MAX_JWS_BYTES, max_depth=4)
#: Longest lifetime (exp - iat) of a reservation JWS: it answers one challenge, once.
MAX_LIFETIME_S: Final = 300
#: Lifetime our signer gives it: the relay checks it at once; a minute absorbs slow links.
RESERVATION_TTL_S: Final = 60
#: How far an iat may lie in the future: Pi boards without an RTC drift before NTP syncs.
CLOCK_SKEW_S: Final = 60
MAX_INT: Final = 2**53 - 1  # JSON integers beyond this lose precision elsewhere (JavaScript)
MAX_RELAY_ID: Final = 64  # an id is 43 characters; "" when the relay has none
_HEADER_KEYS: Final = frozenset({"alg", "typ", "jwk"})
_CLAIMS: Final = ("id", "nonce", "iat", "exp")


@dataclass(frozen=True)
class Reservation:
    """A verified reservation request: the reserving node's id and the JWS's validity."""

    id: str
    iat: int
    exp: int


def _fail(reason: str) -> ReachError:
    return ReachError(f"reservation refused: {reason}", code=Code.RELAY_BAD_RESERVATION)


def new_nonce() -> str:
    """A fresh challenge nonce: 128 random bits, base64url."""
    return b64url_encode(secrets.token_bytes(NONCE_BYTES))


def challenge(nonce: str, relay_id: str = "") -> dict[str, str]:
    """The relay's challenge message for NONCE."""
    return {"type": "challenge", "nonce": nonce, "relay": relay_id}


def parse_control(data: str | bytes, what: str = "control message") -> dict[str, Any]:
    """One control message: a bounded JSON object with a string ``type``; ReachError if not."""
    try:
        msg = loads_object(data, CONTROL_LIMITS, what=what)
    except JsonInputError as exc:
        raise ReachError(f"{what}: {exc}", code=Code.RELAY_BAD_RESERVATION) from None
    if not isinstance(msg.get("type"), str):
        raise ReachError(f"{what} has no type", code=Code.RELAY_BAD_RESERVATION)
    return msg


def parse_challenge(msg: dict[str, Any]) -> str:
    """The nonce of a challenge message; ReachError if it is not one."""
    nonce, relay = msg.get("nonce"), msg.get("relay", "")
    if msg.get("type") != "challenge" or not isinstance(nonce, str) or len(nonce) != NONCE_CHARS:
        raise ReachError("not a relay challenge", code=Code.RELAY_BAD_RESERVATION)
    if not isinstance(relay, str) or len(relay) > MAX_RELAY_ID:
        raise ReachError("bad relay id in the challenge", code=Code.RELAY_BAD_RESERVATION)
    return nonce


def sign_reservation(
    kp: KeyPair, nonce: str, *, ttl: int = RESERVATION_TTL_S, now: float | None = None
) -> str:
    """The compact JWS (ES256) answering the challenge NONCE as KP."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_LIFETIME_S:
        raise ValueError(f"ttl must be 1..{MAX_LIFETIME_S} seconds")
    iat = int(time.time() if now is None else now)
    payload = {"id": kp.id, "nonce": nonce, "iat": iat, "exp": iat + ttl}
    header = {"alg": RESERVATION_ALG, "typ": RESERVATION_TYP, "jwk": dict(kp.public.jwk)}
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return jws.serialize_compact(header, body, kp.jose_key(), algorithms=[RESERVATION_ALG])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT


def verify_reservation(token: object, *, nonce: str, now: float | None = None) -> Reservation:
    """Verify an untrusted reservation JWS answering the challenge NONCE (see module doc)."""
    if not isinstance(token, str):
        raise _fail("the reservation is not text")
    if len(token) > MAX_JWS_BYTES:
        raise _fail(f"larger than {MAX_JWS_BYTES} bytes")
    if not token.isascii() or token.count(".") != 2:
        raise _fail("not a compact JWS")
    try:
        header = peek_header(token, _JWS_LIMITS)
        obj = jws.extract_compact(token.encode("ascii"))
    except (JsonInputError, Base64UrlError, JoseError, ValueError, TypeError) as exc:
        raise _fail(f"not a compact JWS: {type(exc).__name__}") from None
    if set(header) != _HEADER_KEYS:
        raise _fail("header members must be exactly alg, typ, jwk")
    if header["alg"] != RESERVATION_ALG or header["typ"] != RESERVATION_TYP:
        raise _fail(f"header must say alg {RESERVATION_ALG} and typ {RESERVATION_TYP}")
    try:
        signer = public_from_jwk(header["jwk"])
    except IdentityError:
        raise _fail("header jwk is not a P-256 public key") from None
    try:
        claims = loads_object(obj.payload, _JWS_LIMITS, what="payload")
    except JsonInputError as exc:
        raise _fail(f"payload: {exc.problem}") from None
    for name in _CLAIMS:
        if name not in claims:
            raise _fail(f"payload lacks {name!r}")
    if not isinstance(claims["id"], str) or not isinstance(claims["nonce"], str):
        raise _fail("id and nonce must be strings")
    if not (_is_int(claims["iat"]) and _is_int(claims["exp"])):
        raise _fail("iat and exp must be integers in [0, 2**53)")
    if signer.id != claims["id"]:
        raise _fail("id is not the thumbprint of the signing key")
    if not hmac.compare_digest(claims["nonce"].encode(), nonce.encode()):
        raise _fail("the nonce is not the one of this challenge")
    iat, exp = claims["iat"], claims["exp"]
    t = time.time() if now is None else now
    if not iat < exp <= iat + MAX_LIFETIME_S:
        raise _fail(f"exp must be after iat, by at most {MAX_LIFETIME_S} s")
    if exp <= t:
        raise _fail(f"expired at {exp} (now {int(t)})")
    if iat > t + CLOCK_SKEW_S:
        raise _fail(f"iat {iat} is in the future (now {int(t)})")
    try:
        ok = jws.validate_compact(obj, ECKey.import_key(signer.key), algorithms=[RESERVATION_ALG])
    except JoseError:
        ok = False
    if not ok:
        raise _fail("the signature does not verify")
    return Reservation(id=signer.id, iat=iat, exp=exp)
