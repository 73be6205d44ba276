"""ACL: signed document round trip, every refusal code, the store, and every decide() reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws

from gateway.acl import (
    ACL_FILE,
    ACL_TYP,
    Acl,
    AclStore,
    Grant,
    Schedule,
    decide,
    new_acl,
    read_acl_unverified,
    sign_acl,
    verify_acl,
    with_grant,
    without_subject,
)
from gateway.errors import AclError, ProvisioningError
from gateway.identity import KeyPair, generate_keypair

GW = "gateway-id-under-test"
# 2024-01-01 was a Monday.
MON_10 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jws(header: dict[str, Any], payload: bytes, signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(payload)}.{b64(signature)}"


def es256(header: dict[str, Any], payload: bytes, kp: KeyPair) -> str:
    return jws.serialize_compact(header, payload, kp.jose_key(), algorithms=["ES256"])


@pytest.fixture(scope="module")
def owner() -> KeyPair:
    return generate_keypair()


@pytest.fixture(scope="module")
def alice() -> KeyPair:
    return generate_keypair()


@pytest.fixture(scope="module")
def bob() -> KeyPair:
    return generate_keypair()


def grant(kp: KeyPair, **kw: Any) -> Grant:
    kw.setdefault("things", ["front-door"])
    kw.setdefault("ops", ["readproperty", "invokeaction"])
    return Grant.for_key(kp.public, **kw)


def acl_v(version: int, *grants: Grant, tz: str | None = "UTC") -> Acl:
    acl = new_acl(GW, tz=tz, now=1_700_000_000)
    for g in grants:
        acl = with_grant(acl, g, now=1_700_000_000)
    return Acl(acl.gateway, version, acl.iat, acl.grants, acl.revoked, acl.tz)


# ------------------------------------------------------------------------ document
def test_signed_round_trip(owner: KeyPair, alice: KeyPair) -> None:
    acl = with_grant(new_acl(GW), grant(alice, schedule="mon-fri 08:00-18:00; sat 09:00-12:00"))
    text = sign_acl(acl, owner)
    got = verify_acl(text, owner=owner.public, gateway_id=GW, installed_version=0)
    assert got == acl
    assert got.grant_for(alice.id) == acl.grants[0]
    assert got.grants[0].key.id == alice.id
    assert read_acl_unverified(text) == acl
    header = json.loads(base64.urlsafe_b64decode(text.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "typ": ACL_TYP, "kid": owner.id}


def test_with_grant_replaces_and_without_subject_revokes(
    owner: KeyPair, alice: KeyPair, bob: KeyPair
) -> None:
    a1 = with_grant(new_acl(GW), grant(alice))
    a2 = with_grant(a1, grant(bob))
    a3 = with_grant(a2, grant(alice, things=["*"]))
    assert [a.version for a in (a1, a2, a3)] == [1, 2, 3]
    assert [g.subject for g in a3.grants] == [alice.id, bob.id]  # replaced in place
    assert a3.grants[0].things == ("*",)
    a4 = without_subject(a3, alice.id)
    assert a4.version == 4 and alice.id in a4.revoked
    assert a4.grant_for(alice.id) is None
    a5 = with_grant(a4, grant(alice))
    assert alice.id not in a5.revoked  # re-granting lifts the revocation


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "mon",
        "mon 8:00-9:00",
        "mon 09:00-08:00",
        "mon 22:00-06:00",
        "mon 09:00",
        "xyz 08:00-09:00",
        "mon-xyz 08:00-09:00",
        "mon 08:00-24:30",
        "mon 08:60-09:00",
        "mon 08:00-09:00;; tue 08:00-09:00",
        "mon 08:00-09:00,",
    ],
)
def test_schedule_parse_is_strict(spec: str) -> None:
    with pytest.raises(AclError) as err:
        Schedule.parse(spec)
    assert err.value.code == "acl_malformed"
    assert "schedule" in str(err.value)


def test_schedule_parse_forms() -> None:
    s = Schedule.parse("mon-fri 08:00-12:00, 13:00-18:00; sat,sun 09:00-12:00;")
    assert s.allows(0, 8 * 60) and not s.allows(0, 12 * 60) and s.allows(4, 17 * 60 + 59)
    assert s.allows(6, 9 * 60) and not s.allows(6, 12 * 60)
    wrap = Schedule.parse("fri-mon 00:00-24:00")
    assert [wrap.allows(d, 0) for d in range(7)] == [True, False, False, False, True, True, True]
    assert all(Schedule.parse("daily 10:00-11:00").allows(d, 630) for d in range(7))


def test_grant_subject_must_be_the_jwk_thumbprint(alice: KeyPair, bob: KeyPair) -> None:
    with pytest.raises(AclError) as err:
        Grant(subject=bob.id, key=alice.public, things=("x",))
    assert err.value.code == "acl_malformed"
    with pytest.raises(AclError):
        grant(alice, ops=["readproperty", "deleteeverything"])
    with pytest.raises(AclError):
        grant(alice, role="root")
    with pytest.raises(AclError):
        grant(alice, nbf=200, exp=100)


# --------------------------------------------------------------------------- store
@pytest.fixture
def store(tmp_path: Path, owner: KeyPair, alice: KeyPair) -> AclStore:
    s = AclStore(tmp_path, GW)
    s.pin_owner(owner.public)
    s.install(sign_acl(acl_v(5, grant(alice)), owner))
    return s


def _refusals(owner: KeyPair, alice: KeyPair, bob: KeyPair) -> dict[str, str]:
    good = acl_v(6, grant(alice), grant(bob))
    payload = json.dumps(good.to_json()).encode()
    pem = owner.public.pem()
    hs_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': ACL_TYP}).encode())}.{b64(payload)}"
    hs_sig = hmac.new(pem, hs_input.encode(), hashlib.sha256).digest()
    return {
        "acl_rollback": sign_acl(acl_v(5, grant(alice), grant(bob)), owner),
        "acl_unsigned": raw_jws({"alg": "none", "typ": ACL_TYP}, payload),
        "acl_bad_alg": f"{hs_input}.{b64(hs_sig)}",
        "acl_foreign_signer": sign_acl(good, bob),
        "acl_bad_signature": es256({"alg": "ES256", "typ": ACL_TYP, "kid": owner.id}, payload, bob),
        "acl_wrong_gateway": sign_acl(Acl("another-gw", 6, 1, good.grants), owner),
        "acl_malformed": es256({"alg": "ES256", "typ": ACL_TYP}, b'{"gateway": "x",', owner),
        "acl_too_large": "a" * (256 * 1024 + 1),
    }


@pytest.mark.parametrize(
    "code",
    [
        "acl_rollback",
        "acl_unsigned",
        "acl_bad_alg",
        "acl_foreign_signer",
        "acl_bad_signature",
        "acl_wrong_gateway",
        "acl_malformed",
        "acl_too_large",
    ],
)
def test_install_refusals_leave_installed_acl_untouched(
    store: AclStore, owner: KeyPair, alice: KeyPair, bob: KeyPair, code: str
) -> None:
    path = store.state_dir / ACL_FILE
    before = path.read_bytes()
    calls: list[int] = []
    store.on_change.append(lambda: calls.append(1))
    with pytest.raises(AclError) as err:
        store.install(_refusals(owner, alice, bob)[code])
    assert err.value.code == code
    assert path.read_bytes() == before
    assert store.current is not None and store.current.version == 5
    assert store.key_for(bob.id) is None
    assert calls == []
    assert [p.name for p in store.state_dir.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not a jws", "acl_unsigned"),
        ("a.b", "acl_unsigned"),
        ("!!.??.##", "acl_unsigned"),
        ("a.b.c.d.e", "acl_unsigned"),
    ],
)
def test_not_a_jws(store: AclStore, text: str, code: str) -> None:
    with pytest.raises(AclError) as err:
        store.install(text)
    assert err.value.code == code


def test_other_refusals(owner: KeyPair, alice: KeyPair) -> None:
    payload = json.dumps(acl_v(1).to_json()).encode()
    wrong_typ = es256({"alg": "ES256", "typ": "JWT"}, payload, owner)
    unknown = dict(acl_v(1).to_json(), deny_all=True)
    extra = es256({"alg": "ES256", "typ": ACL_TYP}, json.dumps(unknown).encode(), owner)
    es512 = raw_jws({"alg": "ES512", "typ": ACL_TYP}, payload, b"x" * 132)
    for text, code in [
        (wrong_typ, "acl_malformed"),
        (extra, "acl_malformed"),
        (es512, "acl_bad_alg"),
    ]:
        with pytest.raises(AclError) as err:
            verify_acl(text, owner=owner.public, gateway_id=GW, installed_version=None)
        assert err.value.code == code


def test_store_install_persist_reload(
    store: AclStore, tmp_path: Path, owner: KeyPair, alice: KeyPair, bob: KeyPair
) -> None:
    changed: list[int] = []
    store.on_change.append(lambda: changed.append(1))
    acl = store.install(sign_acl(acl_v(6, grant(alice), grant(bob)), owner))
    assert changed == [1] and store.current == acl
    assert (tmp_path / ACL_FILE).stat().st_mode & 0o777 == 0o600
    again = AclStore(tmp_path, GW)
    assert again.owner is not None and again.owner.id == owner.id
    assert again.current == acl
    assert again.key_for(bob.id) is not None


def test_tampered_acl_on_disk_fails_closed(store: AclStore, tmp_path: Path, alice: KeyPair) -> None:
    path = tmp_path / ACL_FILE
    header, payload, sig = path.read_text().split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["grants"][0]["things"] = ["*"]
    path.write_text(f"{header}.{b64(json.dumps(body).encode())}.{sig}")
    again = AclStore(tmp_path, GW)
    assert again.current is None
    assert again.key_for(alice.id) is None


def test_pin_owner(tmp_path: Path, owner: KeyPair, alice: KeyPair) -> None:
    s = AclStore(tmp_path, GW)
    assert s.owner is None
    with pytest.raises(AclError) as no_owner:
        s.install(sign_acl(acl_v(1), owner))
    assert no_owner.value.code == "acl_no_owner"
    s.pin_owner(owner.public)
    s.pin_owner(owner.public)  # idempotent
    with pytest.raises(ProvisioningError) as err:
        s.pin_owner(alice.public)
    assert err.value.code == "already_owned"
    assert AclStore(tmp_path, GW).owner == owner.public


def test_key_for(store: AclStore, owner: KeyPair, alice: KeyPair, bob: KeyPair) -> None:
    assert store.key_for(owner.id) == owner.public
    assert store.key_for(alice.id) == alice.public
    assert store.key_for(bob.id) is None
    current = store.current
    assert current is not None
    store.install(sign_acl(without_subject(current, alice.id), owner))
    assert store.key_for(alice.id) is None


# -------------------------------------------------------------------------- decide
def _d(acl: Acl | None, who: str, now: datetime = MON_10, **kw: str) -> tuple[bool, str]:
    args = {"thing": "front-door", "affordance": "unlock", "op": "invokeaction", **kw}
    d = decide(acl, "OWNER", who, args["thing"], args["affordance"], args["op"], now)
    return d.allowed, d.reason


def test_decide_every_reason(alice: KeyPair, bob: KeyPair) -> None:
    carol = generate_keypair()
    acl = acl_v(
        1,
        grant(alice, affordances=["unlock", "state"], nbf=1_600_000_000, exp=1_800_000_000),
        grant(bob, schedule="mon-fri 08:00-18:00", ops=["observeproperty"], things=["*"]),
    )
    acl = Acl(acl.gateway, 2, acl.iat, acl.grants, frozenset({carol.id}), acl.tz)
    assert _d(acl, "OWNER") == (True, "owner")
    assert _d(None, "OWNER") == (True, "owner")
    assert _d(None, alice.id) == (False, "no ACL installed")
    assert _d(acl, carol.id) == (False, "revoked")
    assert _d(acl, "stranger") == (False, "no grant for this subject")
    assert _d(acl, alice.id) == (True, "granted")
    early = datetime.fromtimestamp(1_599_999_999, UTC)
    late = datetime.fromtimestamp(1_800_000_000, UTC)
    assert _d(acl, alice.id, early) == (False, "grant not yet valid")
    assert _d(acl, alice.id, late) == (False, "grant expired")
    assert _d(acl, alice.id, thing="garage") == (False, "thing not granted")
    assert _d(acl, alice.id, affordance="jam") == (False, "affordance not granted")
    assert _d(acl, alice.id, op="writeproperty") == (False, "operation not granted")
    assert _d(acl, alice.id, op="teleport") == (False, "operation not granted")
    assert _d(acl, bob.id, op="observeproperty") == (True, "granted")
    assert _d(acl, bob.id, op="unobserveproperty") == (True, "granted")  # implied
    assert _d(acl, bob.id, op="subscribeevent") == (False, "operation not granted")
    saturday = MON_10 + timedelta(days=5)
    evening = MON_10.replace(hour=18)
    for when in (saturday, evening):
        assert _d(acl, bob.id, when, op="observeproperty") == (
            False,
            "outside the grant's schedule",
        )
    d = decide(acl, "OWNER", alice.id, "front-door", "unlock", "invokeaction", MON_10)
    assert d.rule == f"grant:{alice.id[:8]}#0"


def test_decide_schedule_in_acl_time_zone(alice: KeyPair) -> None:
    acl = acl_v(1, grant(alice, schedule="mon 08:00-09:00"), tz="Europe/Berlin")
    # 07:30 UTC on a winter Monday is 08:30 in Berlin.
    assert _d(acl, alice.id, MON_10.replace(hour=7, minute=30))[0]
    assert not _d(acl, alice.id, MON_10.replace(hour=8, minute=30))[0]
    with pytest.raises(AclError):
        acl_v(1, tz="Mars/Olympus_Mons")


def test_decide_admin_role(alice: KeyPair) -> None:
    acl = acl_v(1, grant(alice, role="admin", things=["front-door"], ops=["readproperty"], exp=2))
    assert _d(
        acl, alice.id, datetime.fromtimestamp(1, UTC), thing="garage", op="writeproperty"
    ) == (
        True,
        "admin",
    )
    assert _d(acl, alice.id, datetime.fromtimestamp(3, UTC)) == (False, "grant expired")


def test_decide_is_fast(alice: KeyPair) -> None:
    import time

    many = [grant(generate_keypair()) for _ in range(200)]
    acl = acl_v(1, *many, grant(alice, schedule="daily 00:00-24:00"))
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        decide(acl, "OWNER", alice.id, "front-door", "unlock", "invokeaction", MON_10)
    per_call_us = (time.perf_counter() - t0) / n * 1e6
    assert per_call_us < 50
