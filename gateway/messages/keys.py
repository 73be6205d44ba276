"""joserfc keys for identities, cached: importing a key costs 35-40 us and a message needs two.

Local key pairs and known recipients are cached weakly (an entry lives as long as the identity
object). Sender keys taken from untrusted message headers go through `sender_from_jwk`, which
validates the JWK (P-256, public only, point on the curve) and keeps a small LRU of validated
keys, so a chatty peer does not pay for the validation on every message.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Final

from joserfc.jwk import ECKey

from gateway.errors import IdentityError, MessageError
from gateway.identity import KeyPair, PublicIdentity, public_from_jwk
from gateway.messages import codes

#: Validated sender keys kept; a gateway has few peers, and the bound caps memory under floods.
SENDER_CACHE_SIZE: Final = 1024
#: JWK members that carry private key material (EC "d"; the others are RSA/oct/OKP members).
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_private_keys: weakref.WeakKeyDictionary[KeyPair, ECKey] = weakref.WeakKeyDictionary()
_public_keys: weakref.WeakKeyDictionary[PublicIdentity, ECKey] = weakref.WeakKeyDictionary()
_senders: OrderedDict[tuple[str, str], tuple[PublicIdentity, ECKey]] = OrderedDict()


def private_key(pair: KeyPair) -> ECKey:
    """The joserfc private key of PAIR (signing, decrypting)."""
    key = _private_keys.get(pair)
    if key is None:
        key = _private_keys[pair] = pair.jose_key()
    return key


def public_key(identity: PublicIdentity) -> ECKey:
    """The joserfc public key of IDENTITY (encrypting to it, verifying it)."""
    key = _public_keys.get(identity)
    if key is None or key.get("x") != identity.jwk["x"] or key.get("y") != identity.jwk["y"]:
        key = _public_keys[identity] = identity.jose_key()
    return key


def check_public_jwk(jwk: Any, what: str) -> dict[str, Any]:
    """Structural checks on an untrusted EC public JWK; raises `bad_key`."""
    if not isinstance(jwk, dict):
        raise MessageError(f"{what} is not a JWK object", code=codes.BAD_KEY)
    if PRIVATE_MEMBERS & jwk.keys():
        raise MessageError(f"{what} contains private key material", code=codes.BAD_KEY)
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise MessageError(f"{what} is not an EC P-256 key", code=codes.BAD_KEY)
    if not isinstance(jwk.get("x"), str) or not isinstance(jwk.get("y"), str):
        raise MessageError(f"{what} lacks x/y coordinates", code=codes.BAD_KEY)
    return jwk


def validate_public_jwk(jwk: Any, what: str) -> PublicIdentity:
    """Full validation of an untrusted EC P-256 public JWK (point on the curve); `bad_key`."""
    check_public_jwk(jwk, what)
    try:
        return public_from_jwk(jwk)
    except IdentityError as exc:
        raise MessageError(f"{what}: {exc}", code=codes.BAD_KEY) from None


def sender_from_jwk(jwk: Any) -> tuple[PublicIdentity, ECKey]:
    """Validate a sender's header JWK; return its identity and joserfc key (LRU cached)."""
    check_public_jwk(jwk, "sender jwk")
    cache_key = (jwk["x"], jwk["y"])
    hit = _senders.get(cache_key)
    if hit is not None:
        _senders.move_to_end(cache_key)
        return hit
    identity = validate_public_jwk(jwk, "sender jwk")
    entry = (identity, identity.jose_key())
    _senders[cache_key] = entry
    if len(_senders) > SENDER_CACHE_SIZE:
        _senders.popitem(last=False)
    return entry
