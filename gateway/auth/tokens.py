"""Bearer tokens for the HTTP binding: self-issued ES256 JWTs, verified and cached.

A consumer signs its own token with its P-256 key: header ``{"alg": "ES256", "typ": "JWT",
"kid": ID}``, claims iss = sub = ID (its RFC 7638 thumbprint), aud = the gateway id, iat,
nbf, exp (short-lived) and jti. The gateway finds the key by iss through `key_lookup`
(the owner, or a granted and non-revoked subject of the ACL).

Verification order (cheap refusals first, the header before any key use): size, shape,
alg (ES256 only: "none", HS256 keyed with the public key, RS*, ... are refused here),
issuer key, signature (joserfc), then the claims. A successful verification is cached
by the exact token string until the token expires, so the request hot path does not
repeat an ES256 verification; `invalidate()` drops the cache when the ACL changes.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from gateway import jsonsafe
from gateway.compact import json_segment, peek_header
from gateway.errors import AuthError, IdentityError
from gateway.identity import KeyPair, PublicIdentity, public_from_jwk

JWT_ALG = "ES256"  # the only accepted algorithm: every identity is a P-256 key
JWT_TYP = "JWT"  # header typ of a bearer token (an ACL or a message is not a token)
MAX_TOKEN_BYTES = 4 * 1024  # a token with the standard claims is ~ 400 bytes
DEFAULT_TTL_S = 300  # issued tokens live five minutes by default
DEFAULT_MAX_TTL_S = 86_400  # refuse tokens meant to live longer than a day
DEFAULT_LEEWAY_S = 30  # tolerated clock skew between peer and gateway
CACHE_SIZE = 4096  # verified tokens kept; least recently used ones are dropped first
JTI_BYTES = 16  # 128 random bits: a token id never repeats
REQUIRED_CLAIMS = ("iss", "aud", "iat", "exp", "jti")
_TOKEN_JSON = jsonsafe.JsonLimits(max_bytes=MAX_TOKEN_BYTES)
_REGISTRY = JWSRegistry(algorithms=[JWT_ALG])


@dataclass(frozen=True)
class Principal:
    """An authenticated requester: its id, when its token expires, and the token's jti."""

    id: str
    exp: float
    jti: str
    embedded: bool = False  # proven by the token's own `jwk` (a delegation chain's holder)


def issue_token(
    kp: KeyPair,
    *,
    audience: str,
    ttl: int = DEFAULT_TTL_S,
    now: float | None = None,
    embed_key: bool = False,
) -> str:
    """A bearer token for AUDIENCE (a gateway id), signed by KP, valid for TTL seconds.
    EMBED_KEY puts KP's public key in the header (`jwk`): for a key the gateway's ACL does not
    know, presenting a delegation chain (docs/acl.md "Delegation")."""
    if type(ttl) is not int or ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    iat = int(time.time() if now is None else now)
    header: dict[str, Any] = {"alg": JWT_ALG, "typ": JWT_TYP, "kid": kp.id}
    if embed_key:
        header["jwk"] = dict(kp.public.jwk)
    claims = {
        "iss": kp.id,
        "sub": kp.id,
        "aud": audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl,
        "jti": secrets.token_urlsafe(JTI_BYTES),
    }
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return jws.serialize_compact(header, payload, kp.jose_key(), registry=_REGISTRY)


def _fail(code: str, message: str) -> AuthError:
    return AuthError(message, code=code)


def _embedded_key(jwk: Any, iss: str) -> ECKey:
    """The joserfc key of a header `jwk` whose thumbprint is ISS."""
    try:
        pub = public_from_jwk(jwk)
    except IdentityError:
        raise _fail("bad_format", "token header jwk is not a P-256 public key") from None
    if pub.id != iss:
        raise _fail("bad_format", "token header jwk is not the issuer's key")
    return pub.jose_key()


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("bad_format", f"claim {name!r} must be a number (unix seconds)")
    return float(value)


class TokenVerifier:
    """Verify bearer tokens for one gateway, with a bounded cache of verified tokens."""

    def __init__(
        self,
        gateway_id: str,
        key_lookup: Callable[[str], PublicIdentity | None],
        *,
        max_ttl: int = DEFAULT_MAX_TTL_S,
        leeway: int = DEFAULT_LEEWAY_S,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway_id = gateway_id
        self.key_lookup = key_lookup
        self.max_ttl = max_ttl
        self.leeway = leeway
        self.cache_size = cache_size
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._keys: dict[str, ECKey] = {}  # joserfc key objects, by id (import is not free)
        self._generation = 0  # bumped by invalidate(): a verification that raced it is not cached
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget every cached verification (call when the ACL or the owner changes)."""
        with self._lock:
            self._cache.clear()
            self._keys.clear()
            self._generation += 1

    def verify(self, token: str, *, embedded_key: bool = False) -> Principal:
        """The token's principal; AuthError with a distinct code if it is refused.

        EMBEDDED_KEY: the request presents a delegation chain, so an issuer the ACL does not
        know may prove its key with the header's `jwk` (its RFC 7638 thumbprint must be iss).
        Such a principal is authenticated only: the chain decides what it may do."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None and cached.embedded and not embedded_key:
                cached = None  # only a request presenting a chain may use a token's own key
            if cached is not None:
                if now < cached.exp + self.leeway:
                    self._cache.move_to_end(token)
                    self.hits += 1
                    return cached
                del self._cache[token]
            generation = self._generation
        self.misses += 1
        principal = self._verify(token, now, embedded_key)
        with self._lock:
            if generation == self._generation:
                self._cache[token] = principal
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str, now: float, embedded_key: bool = False) -> Principal:
        if not isinstance(token, str):
            raise _fail("bad_format", "a bearer token is text")
        if len(token) > MAX_TOKEN_BYTES:
            raise _fail("too_large", f"token longer than {MAX_TOKEN_BYTES} bytes")
        parts = token.split(".")
        if len(parts) != 3 or not token.isascii():  # aiohttp passes odd header bytes through
            raise _fail("bad_format", "not a compact JWS (header.payload.signature)")
        try:
            header = peek_header(token, _TOKEN_JSON, what="token header")
            claims = json_segment(parts[1], _TOKEN_JSON, what="token claims")
        except ValueError:  # Base64UrlError, JsonInputError (not an object included)
            raise _fail("bad_format", "token segments are not base64url JSON objects") from None
        if header.get("alg") != JWT_ALG:
            raise _fail("bad_alg", f"token algorithm must be {JWT_ALG}")
        typ = header.get("typ", JWT_TYP)
        if not isinstance(typ, str) or typ.upper() != JWT_TYP:
            raise _fail("bad_format", f"token typ must be {JWT_TYP}")
        if not parts[2]:
            raise _fail("bad_signature", "token is not signed")
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise _fail("missing_claim", "token lacks the 'iss' claim")
        kid = header.get("kid", iss)
        if kid != iss or claims.get("sub", iss) != iss:
            raise _fail("bad_format", "token kid and sub must equal iss")
        key, embedded = self._key(iss, header.get("jwk") if embedded_key else None)
        try:
            jws.deserialize_compact(token, key, registry=_REGISTRY)
        except BadSignatureError:
            raise _fail("bad_signature", "token signature does not verify") from None
        except JoseError as exc:
            raise _fail("bad_format", f"token refused: {exc}") from None
        principal = self._check_claims(claims, iss, now)
        return replace(principal, embedded=True) if embedded else principal

    def _key(self, iss: str, jwk: Any = None) -> tuple[ECKey, bool]:
        """ISS's key, and whether it is the token's own `jwk` (an issuer the ACL does not know)."""
        with self._lock:
            key = self._keys.get(iss)
        if key is not None:
            return key, False
        pub = self.key_lookup(iss)
        if pub is None and jwk is not None:  # never cached: only a delegation chain admits it
            return _embedded_key(jwk, iss), True
        if pub is None or pub.id != iss:
            raise _fail("unknown_issuer", "token issuer is not known to this gateway")
        key = pub.jose_key()
        with self._lock:
            self._keys[iss] = key
        return key, False

    def _check_claims(self, claims: dict[str, Any], iss: str, now: float) -> Principal:
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise _fail("missing_claim", f"token lacks the {name!r} claim")
        aud = claims["aud"]
        audiences = aud if isinstance(aud, list) else [aud]
        if self.gateway_id not in audiences:
            raise _fail("wrong_audience", "token is for another audience")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise _fail("bad_format", "claim 'jti' must be a non-empty string")
        iat, exp = _number(claims, "iat"), _number(claims, "exp")
        nbf = _number(claims, "nbf") if "nbf" in claims else iat
        if now >= exp + self.leeway:
            raise _fail("expired", "token expired")
        if iat > now + self.leeway or nbf > now + self.leeway:
            raise _fail("not_yet_valid", "token is not valid yet (check the clock)")
        if exp <= iat:
            raise _fail("bad_format", "token expires before it was issued")
        if exp - iat > self.max_ttl:
            raise _fail("too_long_lived", f"token lifetime exceeds {self.max_ttl} s")
        return Principal(id=iss, exp=exp, jti=jti)
