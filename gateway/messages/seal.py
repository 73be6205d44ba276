"""Sealed peer messages: a compact JWS (ES256) nested in a compact JWE (ECDH-ES, A256GCM).

`seal` signs the claims with the sender's key (the sender's public JWK rides in the JWS header)
and encrypts the JWS to the recipient's P-256 key with a fresh ephemeral key. `open_sealed`
refuses anything else, each refusal with its own `MessageError` code (see `codes` and
docs/protocol.md), and returns nothing to act on unless every check passed. Checks run from the
cheapest to the most expensive: size, framing, headers (before any key is used), decryption,
signature, claims, and last the replay cache (recorded only for fully verified messages).

All cryptography is joserfc's, restricted by registries to exactly ECDH-ES + A256GCM and ES256.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jwe, jws
from joserfc.errors import (
    BadSignatureError,
    ExceededSizeError,
    JoseError,
    UnsupportedAlgorithmError,
)

from gateway.errors import MessageError
from gateway.identity import KeyPair, PublicIdentity
from gateway.messages import claims as cl
from gateway.messages import codes
from gateway.messages.codec import (
    b64url_decode,
    b64url_encode,
    header_object,
    json_bytes,
    json_object,
)
from gateway.messages.keys import check_public_jwk, private_key, public_key, sender_from_jwk
from gateway.messages.replay import CLOCK_LEEWAY_S, ReplayCache

JWE_ALG: Final = "ECDH-ES"  # direct key agreement with an ephemeral key: forward secrecy for sender
JWE_ENC: Final = "A256GCM"  # authenticated encryption; the only content cipher accepted
JWS_ALG: Final = "ES256"  # P-256 ECDSA, the identity key type; the only signature accepted
JWS_TYP: Final = "streembit-msg+jws"  # explicit typing (RFC 8725 3.11): not a generic JWT
JWE_CTY: Final = JWS_TYP  # the JWE carries exactly one such JWS

DEFAULT_TTL_S: Final = 30  # a request is answered in well under a second; 30 s covers retries
MAX_TTL_S: Final = 300  # bounds how long a captured message stays replayable (and cache memory)
MAX_MESSAGE_BYTES: Final = 64 * 1024  # one WebSocket text frame; Thing payloads are small

GCM_IV_BYTES: Final = 12  # A256GCM uses a 96-bit IV
GCM_TAG_BYTES: Final = 16  # and a 128-bit tag
#: Outer header members accepted ("apu"/"apv" are optional ECDH-ES KDF inputs).
JWE_HEADER_MEMBERS: Final = frozenset({"alg", "enc", "epk", "kid", "cty", "apu", "apv"})
JWS_HEADER_MEMBERS: Final = frozenset({"alg", "typ", "jwk", "kid"})

_JWE_REGISTRY: Final = jwe.JWERegistry(algorithms=[JWE_ALG, JWE_ENC])
_JWS_REGISTRY: Final = jws.JWSRegistry(algorithms=[JWS_ALG])


@dataclass(frozen=True)
class Opened:
    """A message that passed every check: the verified sender and all its claims."""

    sender: PublicIdentity
    claims: dict[str, Any]
    #: The session id when the message came as a session frame (docs/protocol.md §8), else
    #: None: a sealed message, signed by `sender`.
    session: str | None = None

    @property
    def typ(self) -> str:
        return str(self.claims["typ"])

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])


def new_jti() -> str:
    """A fresh message id: 128 random bits, base64url."""
    return b64url_encode(secrets.token_bytes(cl.JTI_BYTES))


def _fail(code: str, message: str) -> MessageError:
    return MessageError(message, code=code)


def seal(
    claims_body: Mapping[str, Any],
    *,
    sender: KeyPair,
    recipient: PublicIdentity,
    typ: str,
    ttl: int = DEFAULT_TTL_S,
    now: float | None = None,
    jti: str | None = None,
) -> str:
    """Sign CLAIMS_BODY as SENDER and encrypt it to RECIPIENT; return the compact JWE.

    The envelope claims (iss, aud, iat, exp, jti, typ) are set here and must not be in the
    body. Pass JTI (see `new_jti`) to know the id a reply will refer to. Raises `MessageError`
    (`bad_type`, `missing_claim`, `bad_format`, `too_long_lived`, `too_large`) for a message the
    recipient would refuse.
    """
    cl.check_type(typ)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_S:
        raise _fail(codes.TOO_LONG_LIVED, f"ttl must be 1..{MAX_TTL_S} seconds")
    reserved = sorted(set(claims_body) & set(cl.ENVELOPE_CLAIMS))
    if reserved:
        raise _fail(codes.BAD_FORMAT, f"body must not set envelope claims {reserved}")
    cl.check_body(typ, claims_body)
    iat = int(time.time() if now is None else now)
    claims = {
        "iss": sender.id,
        "aud": recipient.id,
        "iat": iat,
        "exp": iat + ttl,
        "jti": new_jti() if jti is None else cl.check_jti(jti),
        "typ": typ,
        **claims_body,
    }
    header = {"alg": JWS_ALG, "typ": JWS_TYP, "jwk": dict(sender.public.jwk), "kid": sender.id}
    inner = jws.serialize_compact(
        header, json_bytes(claims), private_key(sender), registry=_JWS_REGISTRY
    )
    protected = {"alg": JWE_ALG, "enc": JWE_ENC, "cty": JWE_CTY, "kid": recipient.id}
    token = jwe.encrypt_compact(protected, inner, public_key(recipient), registry=_JWE_REGISTRY)
    if len(token) > MAX_MESSAGE_BYTES:
        raise _fail(codes.TOO_LARGE, f"sealed message exceeds {MAX_MESSAGE_BYTES} bytes")
    return token


def check_segments(parts: list[str], empty_key: str) -> None:
    """The segments of a compact JWE with a direct key (`ECDH-ES` or `dir`): an empty
    encrypted key (else `bad_format` with EMPTY_KEY), a 96-bit IV, a 128-bit tag, base64url."""
    _, ek_seg, iv_seg, ct_seg, tag_seg = parts
    if ek_seg:
        raise _fail(codes.BAD_FORMAT, empty_key)
    if len(b64url_decode(iv_seg, "iv")) != GCM_IV_BYTES:
        raise _fail(codes.BAD_FORMAT, "iv must be 96 bits")
    if len(b64url_decode(tag_seg, "tag")) != GCM_TAG_BYTES:
        raise _fail(codes.BAD_FORMAT, "tag must be 128 bits")
    b64url_decode(ct_seg, "ciphertext")


def open_sealed(
    token: str | bytes,
    *,
    recipient: KeyPair,
    replay: ReplayCache | None,
    now: float | None = None,
    max_size: int = MAX_MESSAGE_BYTES,
    leeway: float = CLOCK_LEEWAY_S,
) -> Opened:
    """Decrypt, verify and check a sealed message addressed to RECIPIENT.

    Raises `MessageError` with a distinct code for every refusal. REPLAY records the message
    id once everything else passed; pass None only where replays are harmless (tests, tools).
    """
    if not isinstance(token, str | bytes):
        raise _fail(codes.BAD_FORMAT, "message must be text")
    if len(token) > max_size:  # before any parsing
        raise _fail(codes.TOO_LARGE, f"message exceeds {max_size} bytes")
    if replay is not None and replay.leeway < leeway:
        raise ValueError("the replay cache must keep entries at least as long as the leeway")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise _fail(codes.BAD_FORMAT, "message is not ASCII") from None
    now = time.time() if now is None else now
    inner = _decrypt(token, recipient)
    sender, claims = _verify(inner)
    with attributed(sender):
        check_claims(claims, sender, recipient.public, now, leeway)
        if replay is not None:
            replay.check_and_add(sender.id, claims["jti"], claims["exp"], now)
    return Opened(sender=sender, claims=claims)


@contextlib.contextmanager
def attributed(sender: PublicIdentity) -> Iterator[None]:
    """Refusals raised inside carry SENDER, already authenticated (for the audit only)."""
    try:
        yield
    except MessageError as exc:
        exc.sender = sender
        raise


def _check_jwe_header(header: dict[str, Any], recipient: PublicIdentity) -> None:
    if "zip" in header:
        raise _fail(codes.BAD_ALG, "compressed messages are not accepted")
    if header.get("alg") != JWE_ALG or header.get("enc") != JWE_ENC:
        raise _fail(codes.BAD_ALG, f"outer alg/enc must be {JWE_ALG}/{JWE_ENC}")
    extra = header.keys() - JWE_HEADER_MEMBERS
    if extra:
        raise _fail(codes.BAD_FORMAT, f"unexpected outer header members {sorted(extra)}")
    if header.get("cty") != JWE_CTY:
        raise _fail(codes.BAD_FORMAT, f"outer cty must be {JWE_CTY!r}")
    if "kid" not in header:
        raise _fail(codes.BAD_FORMAT, "outer header lacks kid")
    if header["kid"] != recipient.id:
        raise _fail(codes.WRONG_AUDIENCE, "message is encrypted to another recipient")
    # Structure only; joserfc's import of the key checks the point is on the curve (an off-curve
    # key fails the key agreement: decrypt_failed). Validating it here too would cost ~30 us.
    check_public_jwk(header.get("epk"), "ephemeral key")


def _decrypt(token: str, recipient: KeyPair) -> bytes:
    parts = token.split(".")
    if len(parts) != 5:
        raise _fail(codes.BAD_FORMAT, "not a compact JWE (5 segments)")
    header = header_object(token, "outer header")
    _check_jwe_header(header, recipient.public)
    check_segments(parts, "ECDH-ES direct agreement has an empty encrypted key")
    try:
        obj = jwe.decrypt_compact(token, private_key(recipient), registry=_JWE_REGISTRY)
    except ExceededSizeError:
        raise _fail(codes.TOO_LARGE, "message part exceeds the size limits") from None
    except UnsupportedAlgorithmError:
        raise _fail(codes.BAD_ALG, "algorithm not allowed") from None
    except (JoseError, ValueError):
        raise _fail(codes.DECRYPT_FAILED, "cannot decrypt (wrong key or tampered)") from None
    if obj.plaintext is None:
        raise _fail(codes.DECRYPT_FAILED, "cannot decrypt")
    return obj.plaintext


def _verify(inner: bytes) -> tuple[PublicIdentity, dict[str, Any]]:
    parts = inner.split(b".")
    if len(parts) != 3:
        raise _fail(codes.BAD_FORMAT, "the JWE does not contain a compact JWS")
    header = header_object(inner, "inner header")
    if header.get("alg") != JWS_ALG:
        raise _fail(codes.BAD_ALG, f"inner alg must be {JWS_ALG}, got {header.get('alg')!r}")
    if header.get("typ") != JWS_TYP:
        raise _fail(codes.BAD_TYPE, f"inner typ must be {JWS_TYP!r}")
    extra = header.keys() - JWS_HEADER_MEMBERS
    if extra:
        raise _fail(codes.BAD_FORMAT, f"unexpected inner header members {sorted(extra)}")
    if "jwk" not in header:
        raise _fail(codes.BAD_KEY, "inner header lacks the sender jwk")
    sender, sender_key = sender_from_jwk(header["jwk"])
    if "kid" not in header:
        raise _fail(codes.BAD_FORMAT, "inner header lacks kid")
    if header["kid"] != sender.id:
        raise _fail(codes.ISSUER_MISMATCH, "inner kid is not the thumbprint of the jwk")
    try:
        obj = jws.deserialize_compact(inner, sender_key, registry=_JWS_REGISTRY)
    except BadSignatureError:
        raise _fail(codes.BAD_SIGNATURE, "signature does not verify") from None
    except ExceededSizeError:
        raise _fail(codes.TOO_LARGE, "inner message exceeds the size limits") from None
    except UnsupportedAlgorithmError:
        raise _fail(codes.BAD_ALG, "algorithm not allowed") from None
    except (JoseError, ValueError):
        raise _fail(codes.BAD_FORMAT, "inner JWS is malformed") from None
    return sender, json_object(obj.payload, "claims")


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(codes.BAD_FORMAT, f"claim {name!r} must be an integer (seconds)")
    return value


def check_claims(
    claims: dict[str, Any],
    sender: PublicIdentity,
    recipient: PublicIdentity,
    now: float,
    leeway: float,
) -> None:
    for name in cl.ENVELOPE_CLAIMS:
        if name not in claims:
            raise _fail(codes.MISSING_CLAIM, f"claim {name!r} is missing")
    if claims["iss"] != sender.id:
        raise _fail(codes.ISSUER_MISMATCH, "iss is not the thumbprint of the signing key")
    if claims["aud"] != recipient.id:
        raise _fail(codes.WRONG_AUDIENCE, "message is addressed to another peer")
    cl.check_type(claims["typ"])
    cl.check_jti(claims["jti"])
    iat, exp = _int_claim(claims, "iat"), _int_claim(claims, "exp")
    if exp <= iat:
        raise _fail(codes.BAD_FORMAT, "exp must be after iat")
    if exp - iat > MAX_TTL_S:
        raise _fail(codes.TOO_LONG_LIVED, f"lifetime exceeds {MAX_TTL_S} s")
    if iat > now + leeway:
        raise _fail(codes.NOT_YET_VALID, "iat is in the future")
    if now >= exp + leeway:
        raise _fail(codes.EXPIRED, "message has expired")
    cl.check_body(claims["typ"], claims)
