"""Documentation test vectors: the owner-signed ACL (docs/acl.md), bearer tokens (docs/tokens.md).

The stored files are what another implementation checks itself against:

- tests/vectors/acl.json: a fixed owner key, gateway id and subjects; one signed ACL with its
  expected header and payload; the expected `decide` outcome for a list of requests; and refused
  ACLs with their expected `AclError` codes.
- tests/vectors/tokens.json: a fixed consumer key and gateway id; bearer JWTs with the time at
  which each is checked and the expected principal or `AuthError` code.

ES256 signatures are randomized, so a vector is "verify this text", never "sign and compare bytes".
Refused documents and tokens are crafted here with `cryptography` (never with the code under
test); the valid ACL and the valid token come from the reference implementation and their
signatures are checked independently with `cryptography` too. The expected decisions are written
by hand below, not computed by `decide`: `--write-vectors` refuses to write a set the code
disagrees with.

Regenerate both files (the keys are kept, the signatures are fresh):
    .venv/bin/python tests/test_doc_vectors.py --write-vectors
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc.jwk import ECKey

from gateway.acl import (
    ACL_TYP,
    MAX_ACL_BYTES,
    Acl,
    AclStore,
    Grant,
    decide,
    sign_acl,
    verify_acl,
)
from gateway.auth import Principal, TokenVerifier, issue_token
from gateway.auth.tokens import DEFAULT_LEEWAY_S, DEFAULT_MAX_TTL_S
from gateway.codes import Code, Scope
from gateway.config.model import LockSafety, SensorSafety, SwitchSafety, ThermostatSafety
from gateway.errors import AclError, AuthError
from gateway.identity import KeyPair, PublicIdentity, generate_keypair, public_from_jwk

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
ACL_VECTORS = HERE / "vectors" / "acl.json"
TOKEN_VECTORS = HERE / "vectors" / "tokens.json"

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z (a Thursday): the ACL's iat and the tokens' iat
ACL_VERSION = 7
ACL_TZ = "Europe/Berlin"  # CET (UTC+1) until 2026-03-29, then CEST (UTC+2)
SUBJECTS = ("alice", "bob", "carol", "dave", "erin", "frank")


def utc(text: str) -> int:
    """Unix seconds of an ISO 8601 UTC time written with a trailing Z."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


# ---------------------------------------------------------------- keys and crafting


def keypair_from_jwk(jwk: dict[str, Any]) -> KeyPair:
    priv = ECKey.import_key(jwk).private_key
    assert isinstance(priv, ec.EllipticCurvePrivateKey)
    return KeyPair(private=priv, public=PublicIdentity.from_key(priv.public_key()))


def private_jwk(kp: KeyPair) -> dict[str, Any]:
    return dict(ECKey.import_key(kp.private_pem()).as_dict(private=True))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def canonical(obj: Any) -> bytes:
    """The payload encoding `sign_acl` uses: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


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


def no_signature(_: bytes) -> bytes:
    return b""


def raw_jws(header: dict[str, Any], payload: bytes, signer: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header, separators=(',', ':')).encode())}.{b64(payload)}"
    return f"{signing_input}.{b64(signer(signing_input.encode('ascii')))}"


def es256_verifies(text: str, jwk: dict[str, Any]) -> bool:
    """Check a compact ES256 JWS with `cryptography` alone (what another implementation does)."""
    head, payload, sig = text.split(".")
    raw = unb64(sig)
    if len(raw) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    nums = ec.EllipticCurvePublicNumbers(
        int.from_bytes(unb64(jwk["x"]), "big"),
        int.from_bytes(unb64(jwk["y"]), "big"),
        ec.SECP256R1(),
    )
    try:
        nums.public_key().verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def public_pem(kp: KeyPair) -> bytes:
    return kp.public.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------- ACL vectors


@dataclasses.dataclass(frozen=True)
class AclKeys:
    owner: KeyPair
    foreign: KeyPair
    gateway: PublicIdentity
    other_gateway: PublicIdentity
    subjects: dict[str, PublicIdentity]


def fresh_acl_keys() -> AclKeys:
    return AclKeys(
        owner=generate_keypair(),
        foreign=generate_keypair(),
        gateway=generate_keypair().public,
        other_gateway=generate_keypair().public,
        subjects={name: generate_keypair().public for name in SUBJECTS},
    )


def acl_keys_from(doc: dict[str, Any]) -> AclKeys:
    keys = doc["keys"]
    return AclKeys(
        owner=keypair_from_jwk(keys["owner"]),
        foreign=keypair_from_jwk(keys["foreign"]),
        gateway=public_from_jwk(keys["gateway"]),
        other_gateway=public_from_jwk(keys["other_gateway"]),
        subjects={name: public_from_jwk(doc["subjects"][name]["jwk"]) for name in SUBJECTS},
    )


def build_acl(k: AclKeys, *, version: int = ACL_VERSION, gateway: str | None = None) -> Acl:
    """The vector ACL: four grants (0 alice, 1 bob, 2 dave, 3 erin), carol revoked, frank absent."""
    s = k.subjects
    grants = (
        Grant.for_key(
            s["alice"],
            things=["front-door", "living-room"],
            ops=["readproperty", "observeproperty", "invokeaction"],
            nbf=utc("2026-01-01T00:00:00Z"),
            exp=utc("2026-07-01T00:00:00Z"),
            schedule="mon-fri 08:00-18:00; sat 09:00-12:00",
        ),
        Grant.for_key(
            s["bob"],
            things=["front-door"],
            ops=["readproperty"],
            schedule="daily 07:00-23:00",
            role="admin",
        ),
        Grant.for_key(
            s["dave"],
            things=["front-door"],
            affordances=["state", "lock", "unlock"],
            ops=["readproperty", "invokeaction"],
            schedule="fri 22:00-24:00; sat 00:00-06:00",
        ),
        Grant.for_key(
            s["erin"],
            things=["*"],
            affordances=["temperature", "targetTemperature", "heatingChanged"],
            ops=["readproperty", "writeproperty", "subscribeevent"],
            exp=utc("2026-02-01T00:00:00Z"),
            schedule="fri-mon 10:00-12:00,14:00-16:00",
        ),
    )
    return Acl(
        gateway=k.gateway.id if gateway is None else gateway,
        version=version,
        iat=T0,
        grants=grants,
        revoked=frozenset({s["carol"].id}),
        tz=ACL_TZ,
    )


GRANT_INDEX = {"alice": 0, "bob": 1, "dave": 2, "erin": 3}

# The expected decisions, written by hand. Columns: name, subject, thing, affordance, op,
# time (UTC), verdict, reason (the rest of the line). The rule follows from the subject:
# "owner", "revoked", "none", or "grant:<first 8 characters of the subject id>#<grant index>".
DECISION_TABLE = """
owner_any_time       owner  front-door      unlock             invokeaction       2026-01-04T03:00:00Z  allow  owner
alice_weekday        alice  front-door      state              readproperty       2026-01-05T09:00:00Z  allow  granted
alice_tz_morning     alice  front-door      unlock             invokeaction       2026-01-05T07:30:00Z  allow  granted
alice_tz_evening     alice  front-door      unlock             invokeaction       2026-01-05T17:30:00Z  deny   outside the grant's schedule
alice_summer_time    alice  front-door      state              readproperty       2026-04-06T06:30:00Z  allow  granted
alice_saturday       alice  living-room     temperature        readproperty       2026-01-10T10:59:00Z  allow  granted
alice_saturday_noon  alice  living-room     temperature        readproperty       2026-01-10T11:00:00Z  deny   outside the grant's schedule
alice_sunday         alice  front-door      state              readproperty       2026-01-11T10:00:00Z  deny   outside the grant's schedule
alice_before_nbf     alice  front-door      state              readproperty       2025-12-31T09:00:00Z  deny   grant not yet valid
alice_at_exp         alice  front-door      state              readproperty       2026-07-01T00:00:00Z  deny   grant expired
alice_write          alice  living-room     targetTemperature  writeproperty      2026-01-05T09:00:00Z  deny   operation not granted
alice_unobserve      alice  front-door      state              unobserveproperty  2026-01-05T09:00:00Z  allow  granted
alice_unsubscribe    alice  front-door      locked             unsubscribeevent   2026-01-05T09:00:00Z  deny   operation not granted
alice_other_thing    alice  garage          state              readproperty       2026-01-05T09:00:00Z  deny   thing not granted
bob_admin            bob    living-room     mode               writeproperty      2026-01-03T12:00:00Z  allow  admin
bob_admin_night      bob    front-door      unlock             invokeaction       2026-01-03T23:30:00Z  deny   outside the grant's schedule
dave_friday_night    dave   front-door      unlock             invokeaction       2026-01-09T22:30:00Z  allow  granted
dave_saturday_0559   dave   front-door      lock               invokeaction       2026-01-10T04:59:00Z  allow  granted
dave_saturday_0600   dave   front-door      lock               invokeaction       2026-01-10T05:00:00Z  deny   outside the grant's schedule
dave_affordance      dave   front-door      fault              readproperty       2026-01-09T22:30:00Z  deny   affordance not granted
dave_other_thing     dave   living-room     fault              readproperty       2026-01-09T22:30:00Z  deny   thing not granted
dave_observe         dave   front-door      state              observeproperty    2026-01-09T22:30:00Z  deny   operation not granted
erin_monday          erin   living-room     targetTemperature  writeproperty      2026-01-05T13:30:00Z  allow  granted
erin_monday_gap      erin   living-room     targetTemperature  writeproperty      2026-01-05T11:30:00Z  deny   outside the grant's schedule
erin_tuesday         erin   living-room     temperature        readproperty       2026-01-06T10:30:00Z  deny   outside the grant's schedule
erin_event           erin   any-thermostat  heatingChanged     subscribeevent     2026-01-09T09:00:00Z  allow  granted
erin_expired         erin   living-room     temperature        readproperty       2026-02-02T09:00:00Z  deny   grant expired
carol_revoked        carol  front-door      state              readproperty       2026-01-05T09:00:00Z  deny   revoked
frank_no_grant       frank  front-door      state              readproperty       2026-01-05T09:00:00Z  deny   no grant for this subject
no_acl_installed     alice  front-door      state              readproperty       2026-01-05T09:00:00Z  deny   no ACL installed
"""  # noqa: E501
DECISIONS = tuple(line.split(None, 7) for line in DECISION_TABLE.strip().splitlines())


def subject_id(k: AclKeys, who: str) -> str:
    return k.owner.id if who == "owner" else k.subjects[who].id


def expected_rule(k: AclKeys, who: str, reason: str) -> str:
    if who == "owner":
        return "owner"
    if reason == "revoked":
        return "revoked"
    if who not in GRANT_INDEX:
        return "none"
    return f"grant:{subject_id(k, who)[:8]}#{GRANT_INDEX[who]}"


def decision_vectors(k: AclKeys) -> list[dict[str, Any]]:
    out = []
    for name, who, thing, affordance, op, at, verdict, reason in DECISIONS:
        allowed = verdict == "allow"
        item: dict[str, Any] = {
            "name": name,
            "subject": who,
            "subject_id": subject_id(k, who),
            "thing": thing,
            "affordance": affordance,
            "op": op,
            "at": at,
            "now": utc(at),
        }
        if name == "no_acl_installed":
            item["acl"] = None
            rule = "none"
        else:
            rule = expected_rule(k, who, reason)
        item["expect"] = {"allowed": allowed, "rule": rule, "reason": reason}
        out.append(item)
    return out


def refusal_vectors(k: AclKeys, valid: str) -> list[dict[str, Any]]:
    """Refused ACL documents, crafted with `cryptography`, with the installed version to use."""
    owner, foreign = k.owner, k.foreign
    payload = build_acl(k).to_json()
    header = {"alg": "ES256", "typ": ACL_TYP, "kid": owner.id}
    out: list[dict[str, Any]] = []

    def add(name: str, desc: str, jws: str, code: str, installed: int | None = 6) -> None:
        out.append(
            {
                "name": name,
                "description": desc,
                "jws": jws,
                "installed_version": installed,
                "expect_error": code,
            }
        )

    def owner_signed(obj: dict[str, Any], **hdr: Any) -> str:
        return raw_jws({**header, **hdr}, canonical(obj), es256(owner))

    add(
        "rolled_back",
        "the valid ACL (version 7) when version 7 is installed",
        valid,
        "acl_rollback",
        installed=ACL_VERSION,
    )
    add(
        "older_version",
        "owner-signed version 5 when version 7 is installed",
        owner_signed({**payload, "version": 5}),
        "acl_rollback",
        installed=ACL_VERSION,
    )
    add(
        "foreign_signer",
        "the same payload signed by another key, kid = that key's id",
        raw_jws({**header, "kid": foreign.id}, canonical(payload), es256(foreign)),
        "acl_foreign_signer",
    )
    add(
        "foreign_key_owner_kid",
        "signed by another key, kid = the owner's id",
        raw_jws(header, canonical(payload), es256(foreign)),
        "acl_bad_signature",
    )
    head, _, sig = valid.split(".")
    add(
        "tampered_payload",
        "the valid header and signature over a payload with version 8",
        f"{head}.{b64(canonical({**payload, 'version': 8}))}.{sig}",
        "acl_bad_signature",
    )
    add(
        "alg_none",
        "alg none, empty signature",
        raw_jws({**header, "alg": "none"}, canonical(payload), no_signature),
        "acl_unsigned",
    )
    add(
        "empty_signature",
        "alg ES256, empty signature segment",
        raw_jws(header, canonical(payload), no_signature),
        "acl_unsigned",
    )
    add(
        "hs256_public_key",
        "HS256 keyed with the owner's public key (SubjectPublicKeyInfo PEM)",
        raw_jws({**header, "alg": "HS256"}, canonical(payload), hs256(public_pem(owner))),
        "acl_bad_alg",
    )
    add(
        "wrong_typ",
        "owner-signed, header typ JWT",
        owner_signed(payload, typ="JWT"),
        "acl_malformed",
    )
    add(
        "wrong_gateway",
        "owner-signed, gateway = another gateway's id",
        owner_signed({**payload, "gateway": k.other_gateway.id}),
        "acl_wrong_gateway",
    )
    add(
        "unknown_member",
        'owner-signed, an extra top-level member "comment"',
        owner_signed({**payload, "comment": "hi"}),
        "acl_malformed",
    )
    bad_grants = [dict(g) for g in payload["grants"]]
    bad_grants[2]["schedule"] = "fri 22:00-06:00"
    add(
        "overnight_range",
        "owner-signed, a schedule range that ends before it starts",
        owner_signed({**payload, "grants": bad_grants}),
        "acl_malformed",
    )
    swapped = [dict(g) for g in payload["grants"]]
    swapped[0]["sub"] = k.subjects["frank"].id
    add(
        "sub_not_thumbprint",
        "owner-signed, a grant whose sub is not the thumbprint of its jwk",
        owner_signed({**payload, "grants": swapped}),
        "acl_malformed",
    )
    add("not_a_jws", "plain text", "grant alice the front door", "acl_unsigned")
    return out


def build_acl_doc(k: AclKeys) -> dict[str, Any]:
    acl = build_acl(k)
    valid = sign_acl(acl, k.owner)
    doc: dict[str, Any] = {
        "description": (
            "Streembit owner-signed ACL vectors (docs/acl.md). Verify `acl.jws` with the owner's "
            "public key for gateway `ids.gateway` with `acl.installed_version` installed; expect "
            "`acl.expect_header` and `acl.expect_payload`. Then evaluate each decision at `now` "
            "(Unix seconds) against that ACL (or no ACL where `acl` is null) and expect `expect`. "
            "Each refusal must fail with `expect_error`. Signatures are randomized (ECDSA)."
        ),
        "keys": {
            "owner": private_jwk(k.owner),
            "foreign": private_jwk(k.foreign),
            "gateway": dict(k.gateway.jwk),
            "other_gateway": dict(k.other_gateway.jwk),
        },
        "ids": {
            "owner": k.owner.id,
            "foreign": k.foreign.id,
            "gateway": k.gateway.id,
            "other_gateway": k.other_gateway.id,
        },
        "subjects": {
            name: {"id": pub.id, "jwk": dict(pub.jwk)} for name, pub in k.subjects.items()
        },
        "acl": {
            "jws": valid,
            "installed_version": ACL_VERSION - 1,
            "expect_header": {"alg": "ES256", "typ": ACL_TYP, "kid": k.owner.id},
            "expect_payload": acl.to_json(),
        },
        "decisions": decision_vectors(k),
        "refusals": refusal_vectors(k, valid),
    }
    return doc


def check_acl_valid(doc: dict[str, Any], k: AclKeys) -> Acl:
    v = doc["acl"]
    acl = verify_acl(
        v["jws"],
        owner=k.owner.public,
        gateway_id=k.gateway.id,
        installed_version=v["installed_version"],
    )
    assert acl.to_json() == v["expect_payload"]
    head, payload, _ = v["jws"].split(".")
    assert json.loads(unb64(head)) == v["expect_header"]
    assert json.loads(unb64(payload)) == v["expect_payload"]
    assert es256_verifies(v["jws"], k.owner.public.jwk), "the signature checks without joserfc"
    return acl


def check_decision(case: dict[str, Any], acl: Acl | None, owner_id: str) -> None:
    now = datetime.fromtimestamp(case["now"], UTC)
    assert now == datetime.fromisoformat(case["at"].replace("Z", "+00:00"))
    use = None if case.get("acl", "installed") is None else acl
    d = decide(
        use, owner_id, case["subject_id"], case["thing"], case["affordance"], case["op"], now
    )
    got = {"allowed": d.allowed, "rule": d.rule, "reason": d.reason}
    assert got == case["expect"], case["name"]


def check_refusal(case: dict[str, Any], k: AclKeys) -> None:
    with pytest.raises(AclError) as err:
        verify_acl(
            case["jws"],
            owner=k.owner.public,
            gateway_id=k.gateway.id,
            installed_version=case["installed_version"],
        )
    assert err.value.code == case["expect_error"], (case["name"], str(err.value))


# ---------------------------------------------------------------- token vectors


@dataclasses.dataclass(frozen=True)
class TokenKeys:
    consumer: KeyPair
    other: KeyPair
    gateway: PublicIdentity
    other_gateway: PublicIdentity


def fresh_token_keys() -> TokenKeys:
    return TokenKeys(
        generate_keypair(), generate_keypair(), generate_keypair().public, generate_keypair().public
    )


def token_keys_from(doc: dict[str, Any]) -> TokenKeys:
    keys = doc["keys"]
    return TokenKeys(
        consumer=keypair_from_jwk(keys["consumer"]),
        other=keypair_from_jwk(keys["other"]),
        gateway=public_from_jwk(keys["gateway"]),
        other_gateway=public_from_jwk(keys["other_gateway"]),
    )


TOKEN_TTL = 300


def token_vectors(k: TokenKeys) -> list[dict[str, Any]]:
    c, o, gw = k.consumer, k.other, k.gateway.id
    valid = issue_token(c, audience=gw, ttl=TOKEN_TTL, now=T0)
    out: list[dict[str, Any]] = []

    def claims(kp: KeyPair, **over: Any) -> dict[str, Any]:
        base = {
            "iss": kp.id,
            "sub": kp.id,
            "aud": gw,
            "iat": T0,
            "nbf": T0,
            "exp": T0 + TOKEN_TTL,
            "jti": b64(f"vector-{len(out)}".encode()),
        }
        base.update(over)
        return {key: v for key, v in base.items() if v is not None}

    def header(kp: KeyPair, **over: Any) -> dict[str, Any]:
        return {"alg": "ES256", "typ": "JWT", "kid": kp.id, **over}

    def crafted(
        kp: KeyPair,
        body: dict[str, Any],
        signer: Callable[[bytes], bytes] | None = None,
        **hdr: Any,
    ) -> str:
        return raw_jws(
            header(kp, **hdr), json.dumps(body, separators=(",", ":")).encode(), signer or es256(kp)
        )

    def add(name: str, desc: str, token: str, now: int, expect: str | None) -> None:
        item: dict[str, Any] = {"name": name, "description": desc, "token": token, "now": now}
        if expect is None:
            body = json.loads(unb64(token.split(".")[1]))
            item["expect_principal"] = {"id": body["iss"], "exp": body["exp"], "jti": body["jti"]}
            item["expect_claims"] = body
        else:
            item["expect_error"] = expect
        out.append(item)

    leeway = DEFAULT_LEEWAY_S
    add("valid", "issued by the reference issue_token at T0, ttl 300 s", valid, T0 + 1, None)
    add("valid_early", "the valid token leeway seconds before iat", valid, T0 - leeway, None)
    add(
        "valid_late",
        "the valid token 1 s before exp + leeway",
        valid,
        T0 + TOKEN_TTL + leeway - 1,
        None,
    )
    add("expired", "the valid token at exp + leeway", valid, T0 + TOKEN_TTL + leeway, "expired")
    add(
        "not_yet_valid",
        "the valid token leeway + 1 s before iat",
        valid,
        T0 - leeway - 1,
        "not_yet_valid",
    )
    add(
        "aud_array",
        "aud is an array that contains the gateway id",
        crafted(c, claims(c, aud=[k.other_gateway.id, gw])),
        T0 + 1,
        None,
    )
    add(
        "other_audience",
        "aud is another gateway's id",
        crafted(c, claims(c, aud=k.other_gateway.id)),
        T0 + 1,
        "wrong_audience",
    )
    add(
        "alg_none",
        "alg none, empty signature",
        crafted(c, claims(c), no_signature, alg="none"),
        T0 + 1,
        "bad_alg",
    )
    add(
        "hs256_public_key",
        "HS256 keyed with the consumer's public key (SubjectPublicKeyInfo PEM)",
        crafted(c, claims(c), hs256(public_pem(c)), alg="HS256"),
        T0 + 1,
        "bad_alg",
    )
    add(
        "bad_signature",
        "the consumer's iss and kid, signed by another key",
        crafted(c, claims(c), es256(o)),
        T0 + 1,
        "bad_signature",
    )
    add(
        "unknown_issuer",
        "a correctly signed token of a key the gateway does not know",
        crafted(o, claims(o)),
        T0 + 1,
        "unknown_issuer",
    )
    add(
        "too_long_lived",
        "exp - iat = 2 days",
        crafted(c, claims(c, exp=T0 + 2 * 86_400)),
        T0 + 1,
        "too_long_lived",
    )
    add("missing_jti", "no jti claim", crafted(c, claims(c, jti=None)), T0 + 1, "missing_claim")
    add(
        "kid_not_iss",
        "header kid names another key",
        crafted(c, claims(c), kid=o.id),
        T0 + 1,
        "bad_format",
    )
    add(
        "acl_typ",
        "header typ streembit-acl+jws (an ACL is not a token)",
        crafted(c, claims(c), typ=ACL_TYP),
        T0 + 1,
        "bad_format",
    )
    return out


def build_token_doc(k: TokenKeys) -> dict[str, Any]:
    return {
        "description": (
            "Streembit bearer-token vectors (docs/tokens.md). Verify each token for audience "
            "`ids.gateway` at time `now` (Unix seconds) with leeway `leeway` s and maximum "
            "lifetime `max_ttl` s; the only known issuer key is `keys.consumer`. Expect "
            "`expect_principal` (and `expect_claims`) or a refusal with `expect_error`. "
            "Signatures are randomized (ECDSA)."
        ),
        "leeway": DEFAULT_LEEWAY_S,
        "max_ttl": DEFAULT_MAX_TTL_S,
        "keys": {
            "consumer": private_jwk(k.consumer),
            "other": private_jwk(k.other),
            "gateway": dict(k.gateway.jwk),
            "other_gateway": dict(k.other_gateway.jwk),
        },
        "ids": {
            "consumer": k.consumer.id,
            "other": k.other.id,
            "gateway": k.gateway.id,
            "other_gateway": k.other_gateway.id,
        },
        "known_issuers": [k.consumer.id],
        "vectors": token_vectors(k),
    }


def verifier_for(doc: dict[str, Any], k: TokenKeys, now: float) -> TokenVerifier:
    known = {k.consumer.id: k.consumer.public}
    assert sorted(known) == doc["known_issuers"]
    return TokenVerifier(
        k.gateway.id, known.get, leeway=doc["leeway"], max_ttl=doc["max_ttl"], clock=lambda: now
    )


def check_token(v: dict[str, Any], doc: dict[str, Any], k: TokenKeys) -> None:
    verifier = verifier_for(doc, k, v["now"])
    if "expect_error" in v:
        with pytest.raises(AuthError) as err:
            verifier.verify(v["token"])
        assert err.value.code == v["expect_error"], (v["name"], str(err.value))
        return
    p = verifier.verify(v["token"])
    want = v["expect_principal"]
    assert p == Principal(id=want["id"], exp=float(want["exp"]), jti=want["jti"]), v["name"]
    assert json.loads(unb64(v["token"].split(".")[1])) == v["expect_claims"]
    assert es256_verifies(v["token"], k.consumer.public.jwk)


# ---------------------------------------------------------------- writing


def write_vectors() -> None:
    """Regenerate both files, keeping stored keys; refuse a set the code disagrees with."""
    if ACL_VECTORS.exists():
        ak = acl_keys_from(json.loads(ACL_VECTORS.read_text()))
    else:
        ak = fresh_acl_keys()
    acl_doc = build_acl_doc(ak)
    acl = check_acl_valid(acl_doc, ak)
    for case in acl_doc["decisions"]:
        check_decision(case, acl, ak.owner.id)
    for case in acl_doc["refusals"]:
        check_refusal(case, ak)
    if TOKEN_VECTORS.exists():
        tk = token_keys_from(json.loads(TOKEN_VECTORS.read_text()))
    else:
        tk = fresh_token_keys()
    token_doc = build_token_doc(tk)
    for v in token_doc["vectors"]:
        check_token(v, token_doc, tk)
    ACL_VECTORS.write_text(json.dumps(acl_doc, indent=2) + "\n")
    TOKEN_VECTORS.write_text(json.dumps(token_doc, indent=2) + "\n")


# ---------------------------------------------------------------- tests: ACL


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


ACL_DOC = _load(ACL_VECTORS) if ACL_VECTORS.exists() else {"decisions": [], "refusals": []}
TOKEN_DOC = _load(TOKEN_VECTORS) if TOKEN_VECTORS.exists() else {"vectors": []}


@pytest.fixture(scope="module")
def acl_keys() -> AclKeys:
    return acl_keys_from(ACL_DOC)


@pytest.fixture(scope="module")
def stored_acl(acl_keys: AclKeys) -> Acl:
    return check_acl_valid(ACL_DOC, acl_keys)


def test_acl_ids_are_thumbprints(acl_keys: AclKeys) -> None:
    ids = ACL_DOC["ids"]
    assert ids["owner"] == acl_keys.owner.id
    assert ids["foreign"] == acl_keys.foreign.id
    assert ids["gateway"] == acl_keys.gateway.id
    assert ids["other_gateway"] == acl_keys.other_gateway.id
    for name, entry in ACL_DOC["subjects"].items():
        assert entry["id"] == acl_keys.subjects[name].id


def test_acl_valid_vector(acl_keys: AclKeys, stored_acl: Acl) -> None:
    assert stored_acl.version == ACL_VERSION
    assert stored_acl.tz == ACL_TZ
    assert stored_acl.to_json() == build_acl(acl_keys).to_json(), "the payload is the built ACL"
    # No version installed (first install, or re-verification of the stored file at start-up).
    again = verify_acl(
        ACL_DOC["acl"]["jws"],
        owner=acl_keys.owner.public,
        gateway_id=acl_keys.gateway.id,
        installed_version=None,
    )
    assert again.to_json() == ACL_DOC["acl"]["expect_payload"]


@pytest.mark.parametrize("case", ACL_DOC["decisions"], ids=lambda c: c["name"])
def test_acl_decision(case: dict[str, Any], stored_acl: Acl, acl_keys: AclKeys) -> None:
    check_decision(case, stored_acl, acl_keys.owner.id)


@pytest.mark.parametrize("case", ACL_DOC["refusals"], ids=lambda c: c["name"])
def test_acl_refusal(case: dict[str, Any], acl_keys: AclKeys) -> None:
    check_refusal(case, acl_keys)


def test_acl_too_large(acl_keys: AclKeys) -> None:
    with pytest.raises(AclError) as err:
        verify_acl(
            "a" * (MAX_ACL_BYTES + 1),
            owner=acl_keys.owner.public,
            gateway_id=acl_keys.gateway.id,
            installed_version=None,
        )
    assert err.value.code == "acl_too_large"


def test_acl_store_installs_the_vector_once(acl_keys: AclKeys, tmp_path: Path) -> None:
    store = AclStore(tmp_path, acl_keys.gateway.id)
    with pytest.raises(AclError) as err:
        store.install(ACL_DOC["acl"]["jws"])
    assert err.value.code == "acl_no_owner"
    store.pin_owner(acl_keys.owner.public)
    assert store.install(ACL_DOC["acl"]["jws"]).version == ACL_VERSION
    with pytest.raises(AclError) as err:
        store.install(ACL_DOC["acl"]["jws"])
    assert err.value.code == "acl_rollback"
    reopened = AclStore(tmp_path, acl_keys.gateway.id)
    assert reopened.installed_version == ACL_VERSION
    carol = acl_keys.subjects["carol"].id
    assert reopened.key_for(carol) is None, "a revoked key cannot authenticate"
    assert reopened.key_for(acl_keys.subjects["frank"].id) is None
    assert reopened.key_for(acl_keys.subjects["alice"].id) == acl_keys.subjects["alice"]


def test_fresh_acl_vectors_agree() -> None:
    """The generator with fresh keys gives the same outcomes (only ids and signatures differ)."""
    k = fresh_acl_keys()
    doc = build_acl_doc(k)
    acl = check_acl_valid(doc, k)
    for case in doc["decisions"]:
        check_decision(case, acl, k.owner.id)
    for case in doc["refusals"]:
        check_refusal(case, k)
    assert [c["name"] for c in doc["refusals"]] == [c["name"] for c in ACL_DOC["refusals"]]
    assert [
        (c["name"], c["expect"]["allowed"], c["expect"]["reason"]) for c in doc["decisions"]
    ] == [(c["name"], c["expect"]["allowed"], c["expect"]["reason"]) for c in ACL_DOC["decisions"]]


# ---------------------------------------------------------------- tests: tokens


@pytest.fixture(scope="module")
def token_keys() -> TokenKeys:
    return token_keys_from(TOKEN_DOC)


def test_token_ids_are_thumbprints(token_keys: TokenKeys) -> None:
    assert TOKEN_DOC["ids"] == {
        "consumer": token_keys.consumer.id,
        "other": token_keys.other.id,
        "gateway": token_keys.gateway.id,
        "other_gateway": token_keys.other_gateway.id,
    }
    assert TOKEN_DOC["leeway"] == DEFAULT_LEEWAY_S
    assert TOKEN_DOC["max_ttl"] == DEFAULT_MAX_TTL_S


@pytest.mark.parametrize("vector", TOKEN_DOC["vectors"], ids=lambda v: v["name"])
def test_token_vector(vector: dict[str, Any], token_keys: TokenKeys) -> None:
    check_token(vector, TOKEN_DOC, token_keys)


def test_token_cache_and_invalidate(token_keys: TokenKeys) -> None:
    valid = next(v for v in TOKEN_DOC["vectors"] if v["name"] == "valid")
    now = [float(valid["now"])]
    known = {token_keys.consumer.id: token_keys.consumer.public}
    verifier = TokenVerifier(token_keys.gateway.id, known.get, clock=lambda: now[0])
    verifier.verify(valid["token"])
    verifier.verify(valid["token"])
    assert (verifier.misses, verifier.hits) == (1, 1)
    now[0] = T0 + TOKEN_TTL + DEFAULT_LEEWAY_S  # a cached token still expires
    with pytest.raises(AuthError) as err:
        verifier.verify(valid["token"])
    assert err.value.code == "expired"
    now[0] = float(valid["now"])
    verifier.verify(valid["token"])
    known.clear()  # the ACL changed: the key is gone ...
    assert verifier.verify(valid["token"]).id == token_keys.consumer.id  # ... the cache says yes
    verifier.invalidate()  # ... until the cache is dropped, as the gateway does on every change
    with pytest.raises(AuthError) as err:
        verifier.verify(valid["token"])
    assert err.value.code == "unknown_issuer"


def test_fresh_token_vectors_agree() -> None:
    k = fresh_token_keys()
    doc = build_token_doc(k)
    for v in doc["vectors"]:
        check_token(v, doc, k)
    assert [(v["name"], v.get("expect_error")) for v in doc["vectors"]] == [
        (v["name"], v.get("expect_error")) for v in TOKEN_DOC["vectors"]
    ]


# ---------------------------------------------------------------- tests: the docs


def _doc(name: str) -> str:
    return (DOCS / name).read_text()


def test_acl_doc_lists_the_vectors() -> None:
    text = _doc("acl.md")
    for ident in ACL_DOC["ids"].values():
        assert ident in text
    for name, entry in ACL_DOC["subjects"].items():
        assert f"| {name} | `{entry['id']}` |" in text, name
    for c in ACL_DOC["decisions"]:
        e = c["expect"]
        verdict = "allow" if e["allowed"] else "deny"
        assert f"| `{c['name']}` |" in text, c["name"]
        assert f"| {verdict} | {e['reason']} |" in text, c["name"]
    for c in ACL_DOC["refusals"]:
        assert f"| `{c['name']}` |" in text, c["name"]
        assert f"`{c['expect_error']}` |" in text, c["name"]


def test_tokens_doc_lists_the_vectors() -> None:
    text = _doc("tokens.md")
    for ident in TOKEN_DOC["ids"].values():
        assert ident in text
    for v in TOKEN_DOC["vectors"]:
        expect = f"`{v['expect_error']}`" if "expect_error" in v else "verifies"
        assert f"| `{v['name']}` |" in text, v["name"]
        assert f"| {v['now']} | {expect} |" in text, v["name"]
    valid = next(v for v in TOKEN_DOC["vectors"] if v["name"] == "valid")
    assert valid["expect_claims"]["jti"] in text, "the example claims of section 1"


def test_http_doc_lists_every_status() -> None:
    text = _doc("http-binding.md")
    for code in Code.in_scope(Scope.REQUEST):
        assert f"| `{code}` | {code.status} |" in text, code


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return repr(value)


@pytest.mark.parametrize("cls", [LockSafety, ThermostatSafety, SwitchSafety, SensorSafety])
def test_things_doc_lists_every_safety_default(cls: type) -> None:
    lines = _doc("things.md").splitlines()
    for f in dataclasses.fields(cls):
        want = f"| `{f.name}` | `{_toml(f.default)}` |"
        assert any(line.startswith(want) for line in lines), (cls.__name__, want)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        write_vectors()
        print(f"wrote {ACL_VECTORS} and {TOKEN_VECTORS}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-vectors")
