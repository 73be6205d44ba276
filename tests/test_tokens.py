"""Bearer tokens: issue/verify, every refusal code, the verification cache, revocation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws

from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant, without_subject
from gateway.auth import MAX_TOKEN_BYTES, Principal, TokenVerifier, issue_token
from gateway.errors import AuthError
from gateway.identity import KeyPair, PublicIdentity, generate_keypair

GW = "gw-under-test"
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


@pytest.fixture(scope="module")
def alice() -> KeyPair:
    return generate_keypair()


@pytest.fixture(scope="module")
def mallory() -> KeyPair:
    return generate_keypair()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(alice: KeyPair, clock: Clock) -> TokenVerifier:
    keys = {alice.id: alice.public}

    def lookup(kid: str) -> PublicIdentity | None:
        return keys.get(kid)

    return TokenVerifier(GW, lookup, clock=clock)


def claims_for(kp: KeyPair, **over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": kp.id,
        "sub": kp.id,
        "aud": GW,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 300,
        "jti": "j1",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def signed(kp: KeyPair, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    h = header or {"alg": "ES256", "typ": "JWT", "kid": kp.id}
    return jws.serialize_compact(
        h, json.dumps(claims).encode(), kp.jose_key(), algorithms=["ES256"]
    )


def refused(v: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as err:
        v.verify(token)
    return err.value.code


def test_issue_and_verify(verifier: TokenVerifier, alice: KeyPair) -> None:
    token = issue_token(alice, audience=GW, ttl=60, now=NOW)
    p = verifier.verify(token)
    assert isinstance(p, Principal) and p.id == alice.id and p.exp == NOW + 60 and p.jti
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "typ": "JWT", "kid": alice.id}
    with pytest.raises(ValueError):
        issue_token(alice, audience=GW, ttl=0)


def test_refusal_codes(
    verifier: TokenVerifier, alice: KeyPair, mallory: KeyPair, clock: Clock
) -> None:
    good = claims_for(alice)
    payload = seg(good)
    hs_input = f"{seg({'alg': 'HS256', 'typ': 'JWT', 'kid': alice.id})}.{payload}"
    hs_key = alice.public.pem()  # the classic attack: HMAC keyed with the public key
    hs_token = f"{hs_input}.{b64(hmac.new(hs_key, hs_input.encode(), hashlib.sha256).digest())}"
    hs_jwk = json.dumps(alice.public.jwk).encode()
    hs_token2 = f"{hs_input}.{b64(hmac.new(hs_jwk, hs_input.encode(), hashlib.sha256).digest())}"
    real = signed(alice, good)
    tampered = f"{real.split('.')[0]}.{seg(dict(good, aud=[GW, 'x']))}.{real.split('.')[2]}"
    cases = {
        "bad_format": ["", "abc", "a.b", "a.b.c", f"{seg([1])}.{payload}.sig", "a.b.c.d.e"],
        "bad_alg": [
            f"{seg({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
            f"{seg({'alg': 'none'})}.{payload}.",
            hs_token,
            hs_token2,
            f"{seg({'alg': 'RS256'})}.{payload}.{b64(b'x' * 256)}",
            f"{seg({'typ': 'JWT'})}.{payload}.{b64(b'x' * 64)}",
        ],
        "unknown_issuer": [signed(mallory, claims_for(mallory))],
        "bad_signature": [
            tampered,
            signed(mallory, good, {"alg": "ES256", "typ": "JWT", "kid": alice.id}),
            f"{real.rsplit('.', 1)[0]}.",
        ],
        "wrong_audience": [signed(alice, claims_for(alice, aud="other-gw"))],
        "expired": [signed(alice, claims_for(alice, iat=int(NOW) - 400, exp=int(NOW) - 31))],
        "not_yet_valid": [
            signed(alice, claims_for(alice, iat=int(NOW) + 60, nbf=None, exp=int(NOW) + 120)),
            signed(alice, claims_for(alice, nbf=int(NOW) + 60)),
        ],
        "missing_claim": [
            signed(alice, claims_for(alice, jti=None)),
            signed(alice, claims_for(alice, exp=None)),
            signed(alice, claims_for(alice, aud=None)),
            f"{seg({'alg': 'ES256'})}.{seg({'aud': GW})}.{b64(b'x' * 64)}",
        ],
        "too_long_lived": [signed(alice, claims_for(alice, exp=int(NOW) + 86_401))],
        "too_large": [real + "A" * MAX_TOKEN_BYTES],
    }
    for code, tokens in cases.items():
        for token in tokens:
            assert refused(verifier, token) == code, (code, token[:80])
    assert verifier.hits == 0
    # within the leeway still valid; the typ of another object is refused
    assert verifier.verify(signed(alice, claims_for(alice, exp=int(NOW) - 29, iat=int(NOW) - 60)))
    acl_typ = signed(alice, good, {"alg": "ES256", "typ": "streembit-acl+jws", "kid": alice.id})
    assert refused(verifier, acl_typ) == "bad_format"


def test_cache_hit_until_expiry(verifier: TokenVerifier, alice: KeyPair, clock: Clock) -> None:
    token = issue_token(alice, audience=GW, ttl=60, now=NOW)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert (verifier.hits, verifier.misses) == (1, 1)
    clock.now = NOW + 60 + 30  # exp + leeway: the cached entry is dead too
    assert refused(verifier, token) == "expired"


def test_cache_is_bounded(alice: KeyPair, clock: Clock) -> None:
    v = TokenVerifier(GW, {alice.id: alice.public}.get, cache_size=3, clock=clock)
    tokens = [issue_token(alice, audience=GW, now=NOW) for _ in range(5)]
    for t in tokens:
        v.verify(t)
    v.verify(tokens[-1])
    v.verify(tokens[0])
    assert (v.hits, v.misses) == (1, 6)


def test_revocation_invalidates_cache_at_once(tmp_path: Path) -> None:
    owner, bob = generate_keypair(), generate_keypair()
    store = AclStore(tmp_path, GW)
    store.pin_owner(owner.public)
    acl = with_grant(new_acl(GW), Grant.for_key(bob.public, things=["*"]))
    store.install(sign_acl(acl, owner))
    v = TokenVerifier(GW, store.key_for)
    store.on_change.append(v.invalidate)
    token = issue_token(bob, audience=GW)
    v.verify(token)
    v.verify(token)
    assert v.hits == 1
    store.install(sign_acl(without_subject(acl, bob.id), owner))
    assert refused(v, token) == "unknown_issuer"
    assert v.verify(issue_token(owner, audience=GW)).id == owner.id


def test_verify_cost_cold_vs_cached(alice: KeyPair) -> None:
    v = TokenVerifier(GW, {alice.id: alice.public}.get)
    tokens = [issue_token(alice, audience=GW) for _ in range(200)]
    t0 = time.perf_counter()
    for t in tokens:
        v.verify(t)
    cold = (time.perf_counter() - t0) / len(tokens)
    t0 = time.perf_counter()
    for _ in range(20):
        for t in tokens:
            v.verify(t)
    cached = (time.perf_counter() - t0) / (20 * len(tokens))
    print(f"\nverify cold {cold * 1e6:.0f} us, cached {cached * 1e6:.2f} us")
    assert cached * 10 < cold
