"""Signed DHT records: the documented test vector and every refusal code."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws
from joserfc.jwk import OctKey

from gateway.errors import P2PError
from gateway.identity import KeyPair, PublicIdentity, generate_keypair, thumbprint
from gateway.p2p.records import (
    MAX_LIFETIME,
    MAX_RECORD_BYTES,
    RECORD_TYP,
    RecordCode,
    dht_key_digest,
    make_contact_record,
    verify_record,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "dht-records.md"

# --- the vector published in docs/dht-records.md ----------------------------------------------

VECTOR_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "7HVcwL8xLN7YIDeJ1pvAqzXNdEWjheKLXB53gsx5xiE",
    "y": "SjPV0Ubd18JEXwXu02eRoTGTp0cbiH7BioZqdxt5PbY",
    "d": "MnLvTyvX3qYuNVoPzb3tqvxOhqBqKvaRWq8fSWLsJ0I",
}
VECTOR_ID = "cTAhtZrjmfjZpxzagCe0XiXo9NHY-uAEThYvCkyXmMk"
VECTOR_DIGEST = "fbd676d6717f23e23e6291b10b74eeb9ad9f253c"
VECTOR_HEADER = (
    '{"alg":"ES256","typ":"streembit-record+jws","jwk":{"kty":"EC","crv":"P-256",'
    '"x":"7HVcwL8xLN7YIDeJ1pvAqzXNdEWjheKLXB53gsx5xiE",'
    '"y":"SjPV0Ubd18JEXwXu02eRoTGTp0cbiH7BioZqdxt5PbY"}}'
)
VECTOR_PAYLOAD = (
    '{"addrs":["ws://192.0.2.10:8765/p2p","wss://gw.example.net/p2p"],"exp":1767229200,'
    '"iat":1767225600,"id":"cTAhtZrjmfjZpxzagCe0XiXo9NHY-uAEThYvCkyXmMk","kind":"contact",'
    '"seq":7,"td":"sha256:8nGDvPZ4a4GTEStd0EbVHbn9XRWQdpF9yFCnYqXOLpE"}'
)
VECTOR_RECORD = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6InN0cmVlbWJpdC1yZWNvcmQrandzIiwiandrIjp7Imt0eSI6IkVDIiwiY3J2"
    "IjoiUC0yNTYiLCJ4IjoiN0hWY3dMOHhMTjdZSURlSjFwdkFxelhOZEVXamhlS0xYQjUzZ3N4NXhpRSIsInkiOiJT"
    "alBWMFViZDE4SkVYd1h1MDJlUm9UR1RwMGNiaUg3QmlvWnFkeHQ1UGJZIn19.eyJhZGRycyI6WyJ3czovLzE5Mi4w"
    "LjIuMTA6ODc2NS9wMnAiLCJ3c3M6Ly9ndy5leGFtcGxlLm5ldC9wMnAiXSwiZXhwIjoxNzY3MjI5MjAwLCJpYXQi"
    "OjE3NjcyMjU2MDAsImlkIjoiY1RBaHRacmptZmpacHh6YWdDZTBYaVhvOU5IWS11QUVUaFl2Q2t5WG1NayIsImtp"
    "bmQiOiJjb250YWN0Iiwic2VxIjo3LCJ0ZCI6InNoYTI1Njo4bkdEdlBaNGE0R1RFU3RkMEViVkhibjlYUldRZHBG"
    "OXlGQ25ZcVhPTHBFIn0.u3wFJN1eNkFjvQdXcwOEYZgYs0_w_vZAf3-bAGF03ttQYxo5x1pNda6RpjCTm7pNURW3g"
    "4hFcTdnJBgI-q0LgA"
)
VECTOR_IAT = 1767225600
VECTOR_EXP = 1767229200
VECTOR_NOW = 1767225660
VECTOR_ADDRS = ("ws://192.0.2.10:8765/p2p", "wss://gw.example.net/p2p")
VECTOR_TD = "sha256:8nGDvPZ4a4GTEStd0EbVHbn9XRWQdpF9yFCnYqXOLpE"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vector_keypair() -> KeyPair:
    d = int.from_bytes(_unb64u(VECTOR_JWK["d"]), "big")
    private = ec.derive_private_key(d, ec.SECP256R1())
    return KeyPair(private=private, public=PublicIdentity.from_key(private.public_key()))


def test_vector_is_in_the_doc() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert json.dumps(VECTOR_JWK) in doc
    for text in (VECTOR_ID, VECTOR_DIGEST, VECTOR_HEADER, VECTOR_PAYLOAD, VECTOR_RECORD):
        assert text in doc


def test_vector_key_id_and_digest() -> None:
    kp = vector_keypair()
    assert dict(kp.public.jwk) == {k: v for k, v in VECTOR_JWK.items() if k != "d"}
    assert kp.id == VECTOR_ID == thumbprint(VECTOR_JWK)
    assert dht_key_digest(VECTOR_ID).hex() == VECTOR_DIGEST
    assert hashlib.sha1(VECTOR_ID.encode()).hexdigest() == VECTOR_DIGEST


def test_vector_segments_and_independent_signature_check() -> None:
    """Check the vector with `cryptography` alone (not the code under test, not joserfc)."""
    header_b64, payload_b64, sig_b64 = VECTOR_RECORD.split(".")
    assert _unb64u(header_b64).decode() == VECTOR_HEADER
    assert _unb64u(payload_b64).decode() == VECTOR_PAYLOAD
    sig = _unb64u(sig_b64)
    assert len(sig) == 64
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public = vector_keypair().public.key
    signing_input = f"{header_b64}.{payload_b64}".encode()
    public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(der, signing_input + b"x", ec.ECDSA(hashes.SHA256()))


def test_vector_verifies() -> None:
    rec = verify_record(VECTOR_RECORD, key=VECTOR_ID, now=VECTOR_NOW)
    assert (rec.id, rec.seq, rec.iat, rec.exp, rec.kind) == (
        VECTOR_ID,
        7,
        VECTOR_IAT,
        VECTOR_EXP,
        "contact",
    )
    assert rec.addrs == VECTOR_ADDRS
    assert rec.td == VECTOR_TD
    assert rec.text == VECTOR_RECORD
    by_digest = verify_record(
        VECTOR_RECORD, key_digest=bytes.fromhex(VECTOR_DIGEST), now=VECTOR_NOW
    )
    assert by_digest == rec
    assert verify_record(VECTOR_RECORD.encode(), key=VECTOR_ID, now=VECTOR_NOW) == rec


def test_vector_resigned_gives_same_segments() -> None:
    text = make_contact_record(
        vector_keypair(), seq=7, addrs=VECTOR_ADDRS, td_digest=VECTOR_TD, ttl=3600, now=VECTOR_IAT
    )
    assert text.split(".")[:2] == VECTOR_RECORD.split(".")[:2]
    assert text != VECTOR_RECORD  # ECDSA is randomised
    assert verify_record(text, key=VECTOR_ID, now=VECTOR_NOW).seq == 7


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"key": VECTOR_ID, "now": VECTOR_EXP}, RecordCode.EXPIRED),
        ({"key": VECTOR_ID, "now": VECTOR_IAT - 61}, RecordCode.NOT_YET_VALID),
        ({"key": "someone-else", "now": VECTOR_NOW}, RecordCode.WRONG_DHT_KEY),
        ({"key_digest": bytes(20), "now": VECTOR_NOW}, RecordCode.WRONG_DHT_KEY),
    ],
)
def test_vector_refusals(kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(P2PError) as err:
        verify_record(VECTOR_RECORD, **kwargs)
    assert err.value.code == code


def test_vector_bad_signature() -> None:
    assert VECTOR_RECORD.endswith("A")
    with pytest.raises(P2PError) as err:
        verify_record(VECTOR_RECORD[:-1] + "Q", key=VECTOR_ID, now=VECTOR_NOW)
    assert err.value.code == RecordCode.BAD_SIGNATURE


def test_key_or_digest_required() -> None:
    with pytest.raises(TypeError):
        verify_record(VECTOR_RECORD, now=VECTOR_NOW)


# --- crafted records ----------------------------------------------------------------------------

NOW = 1_800_000_000


def _payload(kp: KeyPair, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": kp.id,
        "seq": 1,
        "iat": NOW,
        "exp": NOW + 600,
        "kind": "contact",
        "addrs": ["ws://127.0.0.1:9000/p2p"],
        "td": "sha256:x",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def _sign(
    kp: KeyPair, payload: dict[str, Any] | bytes, header: dict[str, Any] | None = None
) -> str:
    hdr = (
        header if header is not None else {"alg": "ES256", "typ": RECORD_TYP, "jwk": kp.public.jwk}
    )
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return jws.serialize_compact(hdr, body, kp.jose_key(), algorithms=["ES256"])


def _code(value: object, key: str, now: float = NOW) -> str:
    with pytest.raises(P2PError) as err:
        verify_record(value, key=key, now=now)
    return err.value.code


@pytest.fixture(scope="module")
def kp() -> KeyPair:
    return generate_keypair()


def test_made_record_roundtrip(kp: KeyPair) -> None:
    text = make_contact_record(kp, seq=3, addrs=["wss://a.example/p2p"], td_digest="t", now=NOW)
    rec = verify_record(text, key=kp.id, now=NOW + 1)
    assert (rec.seq, rec.addrs, rec.td, rec.exp - rec.iat) == (
        3,
        ("wss://a.example/p2p",),
        "t",
        3600,
    )
    assert rec.dkey == dht_key_digest(kp.id)


def test_not_text(kp: KeyPair) -> None:
    for value in (None, 5, 1.5, ["a"], {"value": "x"}):
        assert _code(value, kp.id) == RecordCode.NOT_TEXT


def test_too_large(kp: KeyPair) -> None:
    text = _sign(kp, _payload(kp, pad="x" * MAX_RECORD_BYTES))
    assert _code(text, kp.id) == RecordCode.TOO_LARGE
    # The largest contact record the field limits allow still fits.
    biggest = make_contact_record(
        kp,
        seq=2**53 - 1,
        addrs=[f"ws://h{i}.example/" + "p" * 240 for i in range(8)],
        td_digest="t" * 256,
        now=NOW,
    )
    assert len(biggest) <= MAX_RECORD_BYTES
    assert verify_record(biggest, key=kp.id, now=NOW).seq == 2**53 - 1


@pytest.mark.parametrize(
    "value",
    ["", "abc", "a.b", "a.b.c.d", "é.b.c", "!!.??.**", "e30.e30.", "bnVsbA.e30.AA"],
)
def test_malformed(kp: KeyPair, value: str) -> None:
    assert _code(value, kp.id) == RecordCode.MALFORMED


def test_unsigned_alg_none(kp: KeyPair) -> None:
    header = {"alg": "none", "typ": RECORD_TYP, "jwk": kp.public.jwk}
    text = f"{_b64u(json.dumps(header).encode())}.{_b64u(json.dumps(_payload(kp)).encode())}."
    assert _code(text, kp.id) == RecordCode.BAD_ALG


def test_hmac_alg(kp: KeyPair) -> None:
    header = {"alg": "HS256", "typ": RECORD_TYP, "jwk": kp.public.jwk}
    text = jws.serialize_compact(
        header, json.dumps(_payload(kp)).encode(), OctKey.generate_key(256), algorithms=["HS256"]
    )
    assert _code(text, kp.id) == RecordCode.BAD_ALG


def test_header_checks(kp: KeyPair) -> None:
    jwk = dict(kp.public.jwk)
    assert _code(_sign(kp, _payload(kp), {"alg": "ES256", "typ": "JWT", "jwk": jwk}), kp.id) == (
        RecordCode.MALFORMED
    )
    extra = {"alg": "ES256", "typ": RECORD_TYP, "jwk": jwk, "kid": "x"}
    assert _code(_sign(kp, _payload(kp), extra), kp.id) == RecordCode.MALFORMED
    assert _code(_sign(kp, _payload(kp), {"alg": "ES256", "typ": RECORD_TYP}), kp.id) == (
        RecordCode.MALFORMED
    )
    private_jwk = {**jwk, "d": "AAAA"}
    bad = {"alg": "ES256", "typ": RECORD_TYP, "jwk": private_jwk}
    assert _code(_sign(kp, _payload(kp), bad), kp.id) == RecordCode.BAD_KEY
    off_curve = {"alg": "ES256", "typ": RECORD_TYP, "jwk": {**jwk, "y": jwk["x"]}}
    assert _code(_sign(kp, _payload(kp), off_curve), kp.id) == RecordCode.BAD_KEY


def test_duplicate_members_refused(kp: KeyPair) -> None:
    body = json.dumps(_payload(kp))[:-1] + ', "seq": 9}'
    assert _code(_sign(kp, body.encode()), kp.id) == RecordCode.MALFORMED


@pytest.mark.parametrize("missing", ["id", "seq", "iat", "exp", "kind", "addrs", "td"])
def test_missing_field(kp: KeyPair, missing: str) -> None:
    text = _sign(kp, _payload(kp, **{missing: ...}))
    assert _code(text, kp.id) == RecordCode.MISSING_FIELD


@pytest.mark.parametrize(
    "over",
    [
        {"seq": -1},
        {"seq": True},
        {"seq": "1"},
        {"seq": 2**53},
        {"iat": 1.5},
        {"exp": NOW},
        {"exp": NOW + MAX_LIFETIME + 1},
        {"kind": "other"},
        {"addrs": []},
        {"addrs": "ws://h/"},
        {"addrs": ["http://h/"]},
        {"addrs": ["ws://user:pw@h/"]},
        {"addrs": ["ws://h /"]},
        {"addrs": ["ws://h:99999/"]},
        {"addrs": ["ws://h/"] * 9},
        {"td": ""},
        {"td": 5},
        {"id": ""},
    ],
)
def test_bad_field(kp: KeyPair, over: dict[str, Any]) -> None:
    text = _sign(kp, _payload(kp, **over))
    assert _code(text, kp.id if "id" not in over else "") == RecordCode.BAD_FIELD


def test_thumbprint_must_be_id(kp: KeyPair) -> None:
    other = generate_keypair()
    text = _sign(kp, _payload(kp, id=other.id))
    assert _code(text, other.id) == RecordCode.KEY_MISMATCH


def test_wrong_dht_key(kp: KeyPair) -> None:
    other = generate_keypair()
    text = _sign(kp, _payload(kp))
    assert _code(text, other.id) == RecordCode.WRONG_DHT_KEY
    with pytest.raises(P2PError) as err:
        verify_record(text, key_digest=dht_key_digest(other.id), now=NOW)
    assert err.value.code == RecordCode.WRONG_DHT_KEY


def test_forged_signature(kp: KeyPair) -> None:
    """Another key's signature over a payload naming kp, with kp's jwk in the header."""
    forger = generate_keypair()
    header = {"alg": "ES256", "typ": RECORD_TYP, "jwk": kp.public.jwk}
    text = jws.serialize_compact(
        header, json.dumps(_payload(kp)).encode(), forger.jose_key(), algorithms=["ES256"]
    )
    assert _code(text, kp.id) == RecordCode.BAD_SIGNATURE
    good = _sign(kp, _payload(kp))
    h, _p, s = good.split(".")
    tampered = f"{h}.{_b64u(json.dumps(_payload(kp, seq=99)).encode())}.{s}"
    assert _code(tampered, kp.id) == RecordCode.BAD_SIGNATURE


def test_time_checks(kp: KeyPair) -> None:
    text = _sign(kp, _payload(kp))
    assert verify_record(text, key=kp.id, now=NOW + 599).seq == 1
    assert _code(text, kp.id, now=NOW + 600) == RecordCode.EXPIRED
    assert verify_record(text, key=kp.id, now=NOW - 60).seq == 1
    assert _code(text, kp.id, now=NOW - 61) == RecordCode.NOT_YET_VALID


def test_extra_members_are_kept(kp: KeyPair) -> None:
    rec = verify_record(_sign(kp, _payload(kp, name="porch")), key=kp.id, now=NOW)
    assert rec.claims["name"] == "porch"


def test_ordering(kp: KeyPair) -> None:
    a = verify_record(_sign(kp, _payload(kp, seq=1)), key=kp.id, now=NOW)
    b = verify_record(_sign(kp, _payload(kp, seq=2)), key=kp.id, now=NOW)
    assert b.newer_than(a) and not a.newer_than(b)
