"""Sealed messages: test vectors, round trips, every refusal code, replay cache, rate limiter.

Bad tokens are crafted with joserfc and cryptography (never with the code under test), so
the receiver is checked against what a hostile or broken peer could really send.

Regenerate tests/vectors/messages.json (keeps the keys, makes fresh randomized tokens):
    .venv/bin/python tests/test_messages.py --write-vectors
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwe
from joserfc.jwk import ECKey
from joserfc.util import urlsafe_b64encode

from gateway.errors import MessageError
from gateway.identity import KeyPair, PublicIdentity, generate_keypair
from gateway.messages import (
    CLOCK_LEEWAY_S,
    MAX_MESSAGE_BYTES,
    MAX_TTL_S,
    OPS,
    Opened,
    RateLimiter,
    ReplayCache,
    codes,
    new_jti,
    open_sealed,
    seal,
)

# `gateway.messages.seal` the attribute is the function; the module is needed for monkeypatching.
seal_module = importlib.import_module("gateway.messages.seal")

VECTORS = Path(__file__).parent / "vectors" / "messages.json"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: the vectors' issue time
JWS_TYP = "streembit-msg+jws"


# ---------------------------------------------------------------- keys


def keypair_from_jwk(jwk: dict[str, Any]) -> KeyPair:
    priv = ECKey.import_key(jwk).private_key
    assert isinstance(priv, ec.EllipticCurvePrivateKey)
    return KeyPair(private=priv, public=PublicIdentity.from_key(priv.public_key()))


def private_jwk(kp: KeyPair) -> dict[str, Any]:
    return dict(ECKey.import_key(kp.private_pem()).as_dict(private=True))


# ---------------------------------------------------------------- crafting


def b64(data: bytes) -> str:
    return urlsafe_b64encode(data).decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def es256(kp: KeyPair) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(kp.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(data)
        return mac.finalize()

    return sign


def raw_jws(header: dict[str, Any], payload: Any, signer: Callable[[bytes], bytes] | None) -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64json(header)}.{b64(body)}"
    sig = signer(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64(sig)}"


def inner_header(kp: KeyPair, **over: Any) -> dict[str, Any]:
    header = {"alg": "ES256", "typ": JWS_TYP, "jwk": dict(kp.public.jwk), "kid": kp.id}
    header.update(over)
    return {k: v for k, v in header.items() if v is not None}


def request_claims(sender: KeyPair, aud: Any, now: int = T0, **over: Any) -> dict[str, Any]:
    claims = {
        "iss": sender.id,
        "aud": aud,
        "iat": now,
        "exp": now + 30,
        "jti": new_jti(),
        "typ": "request",
        "op": "readproperty",
        "thing": "front-door",
        "name": "locked",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


_LAX = jwe.JWERegistry(
    algorithms=["ECDH-ES", "ECDH-ES+A256KW", "A256GCM", "A128GCM", "DEF"],
    strict_check_header=False,
)


def encrypt(plaintext: str | bytes, to: PublicIdentity, kid: str | None = None, **hdr: Any) -> str:
    header: dict[str, Any] = {
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "cty": JWS_TYP,
        "kid": to.id if kid is None else kid,
    }
    header.update(hdr)
    return jwe.encrypt_compact(header, plaintext, to.jose_key(), registry=_LAX)


def craft(
    sender: KeyPair,
    to: PublicIdentity,
    *,
    header: dict[str, Any] | None = None,
    claims: Any = None,
    signer: Callable[[bytes], bytes] | None = None,
    **outer: Any,
) -> str:
    """A sealed message built by hand: any inner header, claims, signature and outer header."""
    inner = raw_jws(
        header if header is not None else inner_header(sender),
        claims if claims is not None else request_claims(sender, to.id),
        signer if signer is not None else es256(sender),
    )
    return encrypt(inner, to, **outer)


def reencode_outer(token: str, **hdr: Any) -> str:
    """Change outer header members (which also breaks the AAD; header checks come first)."""
    parts = token.split(".")
    header = json.loads(urlsafe_b64decode_str(parts[0]))
    header.update(hdr)
    parts[0] = b64json(header)
    return ".".join(parts)


def urlsafe_b64decode_str(seg: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def p384_jwk() -> dict[str, str]:
    nums = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-384",
        "x": b64(nums.x.to_bytes(48, "big")),
        "y": b64(nums.y.to_bytes(48, "big")),
    }


def off_curve(jwk: dict[str, str]) -> dict[str, str]:
    return {**jwk, "y": jwk["x"]}


# ---------------------------------------------------------------- vectors


def build_vectors(s: KeyPair, r: KeyPair, t: KeyPair) -> list[dict[str, Any]]:
    """The vector set: sender S, recipient R (who opens every vector), third party T."""
    rp = r.public
    req_body = {
        "op": "writeproperty",
        "thing": "hall-thermostat",
        "name": "setpoint",
        "input": 21.5,
    }
    valid = seal(req_body, sender=s, recipient=rp, typ="request", now=T0)
    event_body = {"thing": "front-door", "name": "jammed", "data": {"since": T0 - 3}, "seq": 7}
    event = seal(event_body, sender=s, recipient=rp, typ="event", now=T0, ttl=60)
    pub_pem = s.public.pem()
    tampered = valid.split(".")
    ct = tampered[3]
    tampered[3] = ct[:10] + ("A" if ct[10] != "A" else "B") + ct[11:]
    out: list[dict[str, Any]] = []

    def add(name: str, desc: str, token: str, expect: str | None, now: int = T0 + 1) -> None:
        item: dict[str, Any] = {"name": name, "description": desc, "token": token, "now": now}
        item["expect_error" if expect else "expect_claims"] = expect
        out.append(item)

    add("request", "valid writeproperty request", valid, None)
    add("event", "valid event, 60 s lifetime", event, None, now=T0 + 59)
    add("tampered", "one ciphertext character changed", ".".join(tampered), "decrypt_failed")
    add(
        "wrong_key",
        "encrypted to T's key, kid says R",
        encrypt(raw_jws(inner_header(s), request_claims(s, r.id), es256(s)), t.public, kid=r.id),
        "decrypt_failed",
    )
    add(
        "wrong_audience",
        "aud is T, encrypted to R",
        craft(s, rp, claims=request_claims(s, t.id)),
        "wrong_audience",
    )
    add("expired", "the valid request opened 60 s after iat", valid, "expired", now=T0 + 60)
    add(
        "not_yet_valid",
        "the valid request opened 60 s before iat",
        valid,
        "not_yet_valid",
        now=T0 - 60,
    )
    add(
        "alg_none",
        "inner alg none, empty signature",
        craft(s, rp, header=inner_header(s, alg="none"), signer=lambda _: b""),
        "bad_alg",
    )
    add(
        "hs256_public_key",
        "inner HS256 keyed with the sender's public key PEM",
        craft(s, rp, header=inner_header(s, alg="HS256"), signer=hs256(pub_pem)),
        "bad_alg",
    )
    add(
        "outer_kw",
        "outer alg ECDH-ES+A256KW",
        encrypt(
            raw_jws(inner_header(s), request_claims(s, r.id), es256(s)), rp, alg="ECDH-ES+A256KW"
        ),
        "bad_alg",
    )
    add(
        "bare_jws",
        "a signed JWS, not encrypted",
        raw_jws(inner_header(s), request_claims(s, r.id), es256(s)),
        "bad_format",
    )
    add(
        "jwe_of_json",
        "JWE whose plaintext is the claims JSON, unsigned",
        encrypt(json.dumps(request_claims(s, r.id)), rp),
        "bad_format",
    )
    add(
        "jwk_p384",
        "sender jwk on P-384",
        craft(s, rp, header=inner_header(s, jwk=p384_jwk())),
        "bad_key",
    )
    add(
        "jwk_private",
        "sender jwk includes d",
        craft(s, rp, header=inner_header(s, jwk=private_jwk(s))),
        "bad_key",
    )
    add(
        "jwk_off_curve",
        "sender jwk point not on P-256",
        craft(s, rp, header=inner_header(s, jwk=off_curve(s.public.jwk))),
        "bad_key",
    )
    add(
        "bad_signature",
        "S's jwk and kid, signed by T",
        craft(s, rp, signer=es256(t)),
        "bad_signature",
    )
    add(
        "issuer_mismatch",
        "signed by S, iss is T",
        craft(s, rp, claims=request_claims(s, r.id, iss=t.id)),
        "issuer_mismatch",
    )
    add(
        "too_long_lived",
        "exp - iat = 3600 s",
        craft(s, rp, claims=request_claims(s, r.id, exp=T0 + 3600)),
        "too_long_lived",
    )
    add(
        "missing_jti",
        "no jti claim",
        craft(s, rp, claims=request_claims(s, r.id, jti=None)),
        "missing_claim",
    )
    add(
        "bad_type",
        "typ claim 'command'",
        craft(s, rp, claims=request_claims(s, r.id, typ="command")),
        "bad_type",
    )
    return out


def identities(doc: dict[str, Any]) -> tuple[KeyPair, KeyPair, KeyPair]:
    keys = doc["keys"]
    return (
        keypair_from_jwk(keys["sender"]),
        keypair_from_jwk(keys["recipient"]),
        keypair_from_jwk(keys["third"]),
    )


def write_vectors() -> None:
    if VECTORS.exists():
        s, r, t = identities(json.loads(VECTORS.read_text()))
    else:
        s, r, t = generate_keypair(), generate_keypair(), generate_keypair()
    vectors = build_vectors(s, r, t)
    for v in vectors:
        if "expect_claims" in v:
            v["expect_claims"] = open_sealed(
                v["token"], recipient=r, replay=None, now=v["now"]
            ).claims
    doc = {
        "description": (
            "Streembit sealed-message vectors (docs/protocol.md). Open each token with the "
            "recipient key at time `now` (Unix seconds, leeway 5 s, no replay state) and expect "
            "exactly `expect_claims` or a refusal with `expect_error`. Tokens are randomized "
            "(ephemeral ECDH key, IV, ECDSA nonce): the check is opening, not re-sealing."
        ),
        "leeway": CLOCK_LEEWAY_S,
        "keys": {"sender": private_jwk(s), "recipient": private_jwk(r), "third": private_jwk(t)},
        "ids": {"sender": s.id, "recipient": r.id, "third": t.id},
        "vectors": vectors,
    }
    VECTORS.write_text(json.dumps(doc, indent=2) + "\n")


def check_vector(v: dict[str, Any], recipient: KeyPair) -> None:
    if "expect_claims" in v:
        opened = open_sealed(v["token"], recipient=recipient, replay=ReplayCache(), now=v["now"])
        if v["expect_claims"] is not None:
            assert opened.claims == v["expect_claims"], v["name"]
    else:
        with pytest.raises(MessageError) as err:
            open_sealed(v["token"], recipient=recipient, replay=ReplayCache(), now=v["now"])
        assert err.value.code == v["expect_error"], (v["name"], str(err.value))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return dict(json.loads(VECTORS.read_text()))


@pytest.fixture(scope="module")
def keys(doc: dict[str, Any]) -> tuple[KeyPair, KeyPair, KeyPair]:
    return identities(doc)


def test_stored_vectors(doc: dict[str, Any], keys: tuple[KeyPair, KeyPair, KeyPair]) -> None:
    s, r, t = keys
    assert doc["ids"] == {"sender": s.id, "recipient": r.id, "third": t.id}
    names = {v["name"] for v in doc["vectors"]}
    assert {"request", "tampered", "wrong_audience", "expired", "alg_none", "hs256_public_key"} <= (
        names
    )
    for v in doc["vectors"]:
        check_vector(v, r)
    request = next(v for v in doc["vectors"] if v["name"] == "request")
    assert request["expect_claims"]["iss"] == s.id
    assert request["expect_claims"]["aud"] == r.id


def test_protocol_doc_lists_the_vectors(doc: dict[str, Any]) -> None:
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    for ident in doc["ids"].values():
        assert ident in text
    for v in doc["vectors"]:
        assert f"| `{v['name']}` |" in text, v["name"]
        if "expect_error" in v:
            assert f"| {v['now']} | `{v['expect_error']}` |" in text, v["name"]
    assert doc["vectors"][0]["expect_claims"]["jti"] in text  # the example claims of section 2.3
    for code in codes.ALL_CODES:
        assert f"| `{code}` |" in text, code


def test_fresh_vectors_match_stored_expectations(doc: dict[str, Any]) -> None:
    s, r, t = generate_keypair(), generate_keypair(), generate_keypair()
    expected = {v["name"]: v.get("expect_error") for v in doc["vectors"]}
    fresh = build_vectors(s, r, t)
    assert {v["name"]: v.get("expect_error") for v in fresh} == expected
    for v in fresh:
        check_vector(v, r)


# ---------------------------------------------------------------- round trips


@pytest.fixture
def s() -> KeyPair:
    return generate_keypair()


@pytest.fixture
def r() -> KeyPair:
    return generate_keypair()


@pytest.fixture
def t() -> KeyPair:
    return generate_keypair()


BODIES: dict[str, dict[str, Any]] = {
    "request": {"op": "invokeaction", "thing": "front-door", "name": "unlock", "input": {"s": 5}},
    "reply": {"status": 200, "output": {"locked": False}, "re": "A" * 22},
    "event": {"thing": "front-door", "name": "opened", "data": None, "seq": 0},
    "error": {"code": "forbidden", "message": "grant expired", "re": "B" * 22, "status": 403},
}


@pytest.mark.parametrize("typ", sorted(BODIES))
def test_round_trip(typ: str, s: KeyPair, r: KeyPair) -> None:
    cache = ReplayCache()
    token = seal(BODIES[typ], sender=s, recipient=r.public, typ=typ)
    assert token.count(".") == 4 and len(token) < 2048
    opened = open_sealed(token, recipient=r, replay=cache)
    assert isinstance(opened, Opened)
    assert opened.sender.id == s.id and opened.sender.jwk == s.public.jwk
    assert opened.typ == typ and opened.claims["iss"] == s.id and opened.claims["aud"] == r.id
    assert opened.claims["exp"] - opened.claims["iat"] == 30
    for k, v in BODIES[typ].items():
        assert opened.claims[k] == v
    assert (s.id, opened.jti) in cache


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_round_trips(op: str, s: KeyPair, r: KeyPair) -> None:
    body: dict[str, Any] = {"op": op, "thing": "t1", "name": "n1", "input": "x"}
    if op == "punch":  # a punch step is an object (docs/reach.md, "Direct upgrade")
        body["input"] = {"type": "sync"}
    if op == "auditrecords":  # a page of the audit log (docs/audit.md §6)
        body["input"] = {"after": 0, "limit": 10}
    token = seal(body, sender=s, recipient=r.public, typ="request")
    assert open_sealed(token, recipient=r, replay=None).claims["op"] == op


def test_seal_with_chosen_jti_and_bytes_input(s: KeyPair, r: KeyPair) -> None:
    jti = new_jti()
    token = seal(BODIES["request"], sender=s, recipient=r.public, typ="request", jti=jti, ttl=300)
    opened = open_sealed(token.encode(), recipient=r, replay=None)
    assert opened.jti == jti and opened.claims["exp"] - opened.claims["iat"] == MAX_TTL_S


def test_header_layout(s: KeyPair, r: KeyPair) -> None:
    token = seal(BODIES["request"], sender=s, recipient=r.public, typ="request")
    outer = json.loads(urlsafe_b64decode_str(token.split(".")[0]))
    assert outer["alg"] == "ECDH-ES" and outer["enc"] == "A256GCM"
    assert outer["cty"] == JWS_TYP and outer["kid"] == r.id
    assert outer["epk"]["crv"] == "P-256" and "d" not in outer["epk"]
    assert token.split(".")[1] == ""
    inner = jwe.decrypt_compact(token, r.jose_key(), algorithms=["ECDH-ES", "A256GCM"])
    assert inner.plaintext is not None
    header = json.loads(urlsafe_b64decode_str(inner.plaintext.decode().split(".")[0]))
    assert header == {"alg": "ES256", "typ": JWS_TYP, "jwk": s.public.jwk, "kid": s.id}


# ---------------------------------------------------------------- seal refuses what peers refuse


@pytest.mark.parametrize(
    ("body", "typ", "kwargs", "code"),
    [
        (BODIES["request"], "command", {}, "bad_type"),
        ({**BODIES["request"], "iss": "x"}, "request", {}, "bad_format"),
        ({**BODIES["request"], "exp": 1}, "request", {}, "bad_format"),
        ({"thing": "t", "name": "n"}, "request", {}, "missing_claim"),
        ({"op": "reboot"}, "request", {}, "bad_format"),
        ({"op": "writeproperty", "thing": "t", "name": "n"}, "request", {}, "missing_claim"),
        ({"op": "aclpush", "input": {"not": "a jws"}}, "request", {}, "bad_format"),
        ({"status": 200}, "reply", {}, "missing_claim"),
        ({"status": 500, "re": "A" * 22}, "reply", {}, "bad_format"),
        ({"status": 200, "re": "short"}, "reply", {}, "bad_format"),
        ({"thing": "t", "name": "n", "seq": -1}, "event", {}, "bad_format"),
        ({"message": "m"}, "error", {}, "missing_claim"),
        (BODIES["request"], "request", {"ttl": 0}, "too_long_lived"),
        (BODIES["request"], "request", {"ttl": MAX_TTL_S + 1}, "too_long_lived"),
        ({**BODIES["request"], "input": float("nan")}, "request", {}, "bad_format"),
        ({**BODIES["request"], "input": "x" * MAX_MESSAGE_BYTES}, "request", {}, "too_large"),
        (BODIES["request"], "request", {"jti": "not a jti!"}, "bad_format"),
    ],
)
def test_seal_refuses(
    body: dict[str, Any], typ: str, kwargs: dict[str, Any], code: str, s: KeyPair, r: KeyPair
) -> None:
    with pytest.raises(MessageError) as err:
        seal(body, sender=s, recipient=r.public, typ=typ, **kwargs)
    assert err.value.code == code


# ---------------------------------------------------------------- every refusal code


def refused(token: Any, r: KeyPair, **kwargs: Any) -> str:
    kwargs.setdefault("now", T0 + 1)
    with pytest.raises(MessageError) as err:
        open_sealed(token, recipient=r, replay=kwargs.pop("replay", None), **kwargs)
    return err.value.code


def test_codes_are_distinct() -> None:
    assert len(set(codes.ALL_CODES)) == len(codes.ALL_CODES)


def test_too_large_checked_before_parsing(r: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise AssertionError("parsed an oversized message")

    monkeypatch.setattr(seal_module, "_decrypt", boom)
    assert refused("!" * (MAX_MESSAGE_BYTES + 1), r) == "too_large"
    assert refused(b"." * 101, r, max_size=100) == "too_large"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b.c",
        "a.b.c.d.e.f",
        "!!!!.." + "." + ".",
        b64(b"not json") + "....",
        b64json([1, 2]) + "....",
        "eyJhbGciOiJFQ0RILUVTIn0=....",  # padded base64
        "héllo....",
        b"\xff\xfe....",
        12345,
    ],
)
def test_bad_format_framing(token: Any, r: KeyPair) -> None:
    assert refused(token, r) == "bad_format"


def test_bad_format_nesting_and_headers(s: KeyPair, r: KeyPair) -> None:
    rp = r.public
    inner = raw_jws(inner_header(s), request_claims(s, r.id), es256(s))
    assert refused(inner, r) == "bad_format"  # bare JWS
    assert refused(encrypt(b"hello", rp), r) == "bad_format"  # JWE of a non-JWS
    assert refused(encrypt(inner + "." + inner, rp), r) == "bad_format"
    assert refused(encrypt(inner, rp, cty="JWT"), r) == "bad_format"
    assert refused(encrypt(inner, rp, foo="bar"), r) == "bad_format"
    assert refused(reencode_outer(encrypt(inner, rp), crit=["foo"], foo=1), r) == "bad_format"
    ok = encrypt(inner, rp).split(".")
    assert refused(".".join([ok[0], "AAAA", *ok[2:]]), r) == "bad_format"  # non-empty ek
    assert refused(".".join([*ok[:2], b64(b"\0" * 16), *ok[3:]]), r) == "bad_format"  # iv size
    assert refused(".".join([*ok[:4], ok[4][:-2]]), r) == "bad_format"  # tag size
    assert refused(".".join([*ok[:3], "a+b/", ok[4]]), r) == "bad_format"  # ciphertext b64
    no_kid = reencode_outer(".".join(ok))
    header = json.loads(urlsafe_b64decode_str(no_kid.split(".")[0]))
    del header["kid"]
    assert refused(".".join([b64json(header), *no_kid.split(".")[1:]]), r) == "bad_format"
    # inner header: unknown member, b64=false (RFC 7797), missing kid
    for hdr in (inner_header(s, x5u="https://x"), inner_header(s, b64=False)):
        assert refused(craft(s, rp, header=hdr), r) == "bad_format"
    assert refused(craft(s, rp, header=inner_header(s, kid=None)), r) == "bad_format"
    # claims: not JSON, duplicate members, non-integer times, bad jti, exp before iat
    assert refused(craft(s, rp, claims=b"[1]"), r) == "bad_format"
    dup = json.dumps(request_claims(s, r.id))[:-1] + ', "aud": "' + r.id + '"}'
    assert refused(craft(s, rp, claims=dup.encode()), r) == "bad_format"
    assert refused(craft(s, rp, claims=b'{"iat": NaN}'), r) == "bad_format"
    for over in ({"iat": float(T0)}, {"exp": True}, {"jti": "x"}, {"exp": T0 - 1}):
        claims = request_claims(s, r.id, **over)
        assert refused(craft(s, rp, claims=claims), r, now=T0) == "bad_format", over
    assert refused(craft(s, rp, claims=request_claims(s, r.id, op="reboot")), r, now=T0) == (
        "bad_format"
    )


def test_bad_alg_checked_before_key_use(
    s: KeyPair, r: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    rp = r.public
    inner = raw_jws(inner_header(s), request_claims(s, r.id), es256(s))

    def no_crypto(*_: Any, **__: Any) -> Any:
        raise AssertionError("key used before the algorithm was checked")

    outer_bad = [
        encrypt(inner, rp, alg="ECDH-ES+A256KW"),
        encrypt(inner, rp, enc="A128GCM"),
        encrypt(inner, rp, zip="DEF"),
        reencode_outer(encrypt(inner, rp), alg="RSA-OAEP"),
        reencode_outer(encrypt(inner, rp), alg="dir"),
    ]
    inner_bad = [
        craft(s, rp, header=inner_header(s, alg="none"), signer=lambda _: b""),
        craft(s, rp, header=inner_header(s, alg="HS256"), signer=hs256(s.public.pem())),
        craft(
            s,
            rp,
            header=inner_header(s, alg="HS256"),
            signer=hs256(
                s.public.key.public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
            ),
        ),
        craft(s, rp, header=inner_header(s, alg="ES384")),
        craft(s, rp, header=inner_header(s, alg="EdDSA")),
        craft(s, rp, header=inner_header(s, alg=None)),
    ]
    with monkeypatch.context() as m:
        m.setattr(seal_module.jwe, "decrypt_compact", no_crypto)
        for token in outer_bad:
            assert refused(token, r) == "bad_alg"
    with monkeypatch.context() as m:
        m.setattr(seal_module, "sender_from_jwk", no_crypto)
        m.setattr(seal_module.jws, "deserialize_compact", no_crypto)
        for token in inner_bad:
            assert refused(token, r) == "bad_alg"


def test_bad_key(s: KeyPair, r: KeyPair) -> None:
    rp = r.public
    good = seal(BODIES["request"], sender=s, recipient=rp, typ="request")
    epk = json.loads(urlsafe_b64decode_str(good.split(".")[0]))["epk"]
    for bad_epk in (p384_jwk(), {**epk, "d": private_jwk(s)["d"]}, {**epk, "x": 1}, "x", None):
        assert refused(reencode_outer(good, epk=bad_epk), r) == "bad_key", bad_epk
    # An off-curve ephemeral key is refused by the key agreement itself.
    assert refused(reencode_outer(good, epk=off_curve(epk)), r) == "decrypt_failed"
    for jwk in (
        p384_jwk(),
        private_jwk(s),
        off_curve(s.public.jwk),
        {"kty": "oct", "k": "AAAA"},
        {**s.public.jwk, "x": "AAAA"},
        "not a jwk",
        None,
    ):
        assert refused(craft(s, rp, header=inner_header(s, jwk=jwk)), r) == "bad_key", jwk


def test_decrypt_failed(s: KeyPair, r: KeyPair, t: KeyPair) -> None:
    good = seal(BODIES["request"], sender=s, recipient=r.public, typ="request").split(".")
    for i in (2, 3, 4):  # iv, ciphertext, tag
        seg = good[i]
        flipped = seg[:3] + ("A" if seg[3] != "A" else "B") + seg[4:]
        assert refused(".".join([*good[:i], flipped, *good[i + 1 :]]), r) == "decrypt_failed"
    inner = raw_jws(inner_header(s), request_claims(s, r.id), es256(s))
    assert refused(encrypt(inner, t.public, kid=r.id), r) == "decrypt_failed"


def test_bad_signature(s: KeyPair, r: KeyPair, t: KeyPair) -> None:
    rp = r.public
    assert refused(craft(s, rp, signer=es256(t)), r) == "bad_signature"
    assert refused(craft(s, rp, signer=lambda _: b"\0" * 64), r) == "bad_signature"
    assert refused(craft(s, rp, signer=lambda d: es256(s)(d)[:-1]), r) == "bad_signature"
    # a valid signature over other claims, spliced onto these
    other = raw_jws(inner_header(s), request_claims(s, r.id), es256(s)).split(".")
    mine = raw_jws(inner_header(s), request_claims(s, r.id, name="x"), es256(s)).split(".")
    assert refused(encrypt(".".join([mine[0], mine[1], other[2]]), rp), r) == "bad_signature"


def test_issuer_mismatch(s: KeyPair, r: KeyPair, t: KeyPair) -> None:
    rp = r.public
    assert refused(craft(s, rp, claims=request_claims(s, r.id, iss=t.id)), r) == ("issuer_mismatch")
    assert refused(craft(s, rp, header=inner_header(s, kid=t.id)), r) == "issuer_mismatch"
    # T signs, but claims to be S by putting S's id in iss: the jwk says T.
    assert refused(craft(t, rp, claims=request_claims(s, r.id)), r) == "issuer_mismatch"


def test_wrong_audience(s: KeyPair, r: KeyPair, t: KeyPair) -> None:
    rp = r.public
    assert refused(craft(s, rp, claims=request_claims(s, t.id)), r) == "wrong_audience"
    assert refused(craft(s, rp, claims=request_claims(s, [r.id])), r) == "wrong_audience"
    assert refused(craft(s, rp, kid=t.id), r) == "wrong_audience"
    to_t = seal(BODIES["request"], sender=s, recipient=t.public, typ="request")
    assert refused(to_t, r) == "wrong_audience"


def test_a_refusal_names_its_sender_only_once_the_signature_verified(
    s: KeyPair, r: KeyPair, t: KeyPair
) -> None:
    """`MessageError.sender` (the audit's subject) is the verified signer, never a claim."""

    def sender_of(token: str, **kwargs: Any) -> tuple[str, str | None]:
        kwargs.setdefault("now", T0 + 1)
        with pytest.raises(MessageError) as err:
            open_sealed(token, recipient=r, replay=kwargs.pop("replay", None), **kwargs)
        sender = err.value.sender
        return err.value.code, None if sender is None else sender.id

    rp = r.public
    # Refused after the signature verified: the signer, whatever `iss` claims.
    assert sender_of(craft(t, rp, claims=request_claims(s, r.id))) == ("issuer_mismatch", t.id)
    assert sender_of(craft(s, rp, claims=request_claims(s, t.id))) == ("wrong_audience", s.id)
    token = seal(BODIES["request"], sender=s, recipient=rp, typ="request", now=T0)
    assert sender_of(token, now=T0 + 10_000) == ("expired", s.id)
    cache = ReplayCache()
    open_sealed(token, recipient=r, replay=cache, now=T0 + 1)
    assert sender_of(token, replay=cache) == ("replayed", s.id)
    # Refused before: nobody, although the claims name S.
    assert sender_of(craft(s, rp, signer=es256(t))) == ("bad_signature", None)
    head, ek, iv, ct, tag = token.split(".")
    ct = ("A" if ct[0] != "A" else "B") + ct[1:]
    assert sender_of(".".join([head, ek, iv, ct, tag])) == ("decrypt_failed", None)


def test_time_window(s: KeyPair, r: KeyPair) -> None:
    token = seal(BODIES["request"], sender=s, recipient=r.public, typ="request", now=T0)
    lw = CLOCK_LEEWAY_S
    open_sealed(token, recipient=r, replay=None, now=T0 - lw)
    open_sealed(token, recipient=r, replay=None, now=T0 + 30 + lw - 0.001)
    assert refused(token, r, now=T0 - lw - 1) == "not_yet_valid"
    assert refused(token, r, now=T0 + 30 + lw) == "expired"
    assert refused(token, r, now=T0 + 10_000) == "expired"
    long = craft(s, r.public, claims=request_claims(s, r.id, exp=T0 + MAX_TTL_S + 1))
    assert refused(long, r, now=T0) == "too_long_lived"
    ok = craft(s, r.public, claims=request_claims(s, r.id, exp=T0 + MAX_TTL_S))
    open_sealed(ok, recipient=r, replay=None, now=T0)


@pytest.mark.parametrize("claim", ["iss", "aud", "iat", "exp", "jti", "typ", "op", "thing"])
def test_missing_claim(claim: str, s: KeyPair, r: KeyPair) -> None:
    claims = request_claims(s, r.id)
    del claims[claim]
    token = craft(s, r.public, claims=claims)
    assert refused(token, r, now=T0) == "missing_claim"


def test_bad_type(s: KeyPair, r: KeyPair) -> None:
    rp = r.public
    for typ in ("command", "", 3, None):
        claims = {**request_claims(s, r.id), "typ": typ}
        assert refused(craft(s, rp, claims=claims), r, now=T0) == "bad_type"
    for header_typ in ("JWT", None):
        assert refused(craft(s, rp, header=inner_header(s, typ=header_typ)), r) == "bad_type"


def test_replayed_and_refusals_leave_no_trace(s: KeyPair, r: KeyPair) -> None:
    cache = ReplayCache()
    token = seal(BODIES["request"], sender=s, recipient=r.public, typ="request", now=T0)
    assert refused(token, r, replay=cache, now=T0 + 100) == "expired"
    assert len(cache) == 0  # a refused message is not recorded
    open_sealed(token, recipient=r, replay=cache, now=T0 + 1)
    assert refused(token, r, replay=cache, now=T0 + 2) == "replayed"
    assert refused(token, r, replay=cache, now=T0 + 30 + CLOCK_LEEWAY_S - 0.5) == "replayed"
    assert refused(token, r, replay=cache, now=T0 + 30 + CLOCK_LEEWAY_S) == "expired"
    with pytest.raises(ValueError):
        open_sealed(token, recipient=r, replay=ReplayCache(leeway=1), now=T0)


# ---------------------------------------------------------------- replay cache


def test_replay_cache_forgets_after_exp_plus_leeway() -> None:
    cache = ReplayCache(max_entries=10, leeway=5)
    cache.check_and_add("a", "j1", exp=100, now=90)
    with pytest.raises(MessageError) as err:
        cache.check_and_add("a", "j1", exp=100, now=105)
    assert err.value.code == "replayed"
    cache.check_and_add("b", "j1", exp=100, now=95)  # same jti, another issuer: independent
    assert cache.purge(now=105) == 0
    assert cache.purge(now=105.1) == 2 and len(cache) == 0
    cache.check_and_add("a", "j1", exp=200, now=106)  # forgotten, so accepted again
    assert ("a", "j1") in cache


def test_replay_cache_fails_closed_when_full() -> None:
    cache = ReplayCache(max_entries=3, leeway=0)
    for i in range(3):
        cache.check_and_add("a", f"j{i}", exp=100 + i, now=50)
    with pytest.raises(MessageError) as err:
        cache.check_and_add("a", "j9", exp=150, now=60)
    assert err.value.code == "replay_cache_full"
    assert len(cache) == 3 and ("a", "j0") in cache  # nothing unexpired was forgotten
    cache.check_and_add("a", "j9", exp=150, now=100.5)  # j0 expired: room again
    assert ("a", "j0") not in cache and len(cache) == 3
    with pytest.raises(ValueError):
        ReplayCache(max_entries=0)


def test_replay_cache_re_add_after_expiry_keeps_heap_consistent() -> None:
    cache = ReplayCache(max_entries=5, leeway=0)
    cache.check_and_add("a", "j", exp=10, now=0)
    cache.check_and_add("a", "j", exp=50, now=11)  # expired entry replaced without a purge
    assert cache.purge(now=20) == 0 and ("a", "j") in cache
    assert cache.purge(now=51) == 1 and len(cache) == 0


# ---------------------------------------------------------------- rate limiter


def test_rate_limiter_bucket() -> None:
    rl = RateLimiter(rate_per_s=2, burst=3)
    assert [rl.allow("p", now=0) for _ in range(4)] == [True, True, True, False]
    assert rl.allow("q", now=0)  # independent keys
    assert not rl.allow("p", now=0.25)
    assert rl.allow("p", now=0.5) and not rl.allow("p", now=0.5)
    assert [rl.allow("p", now=100) for _ in range(4)] == [True, True, True, False]  # capped


def test_rate_limiter_bounded_keys() -> None:
    rl = RateLimiter(rate_per_s=1, burst=2, max_keys=2)
    assert rl.allow("a", now=0) and rl.allow("b", now=0)
    assert not rl.allow("c", now=0.5)  # full, and the oldest bucket has not refilled
    assert len(rl) == 2
    assert rl.allow("c", now=1.0)  # "a" refilled: forgetting it loses nothing
    assert len(rl) == 2
    assert rl.allow("a", now=1.0)  # comes back with a full bucket, evicting refilled "b"
    with pytest.raises(ValueError):
        RateLimiter(rate_per_s=0, burst=1)


def test_rate_limiter_default_clock() -> None:
    rl = RateLimiter(rate_per_s=1000, burst=1)
    assert rl.allow(("10.0.0.1", 4242))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        write_vectors()
        print(f"wrote {VECTORS}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-vectors")
