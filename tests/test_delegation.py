"""Offline delegation chains (gateway/acl/delegation.py, dlg_verify.py, dlg_uses.py).

The owner grants Alice front-door unlock with `delegate` = 2; Alice delegates to the cleaner
(Tuesdays), the cleaner may pass on once more. Every attack is refused with its own code.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.acl import Acl, Grant, read_acl_unverified
from gateway.acl.delegation import (
    SEPARATOR,
    DelegationError,
    parse_chain,
    root_ref,
    sign_link,
    split_header,
)
from gateway.acl.dlg_uses import UseCounter
from gateway.acl.dlg_verify import decide_chain, schedule_inside, verify_chain
from gateway.acl.model import Schedule
from gateway.codes import Code
from gateway.identity import KeyPair, generate_keypair, load_keypair

NOW = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00 UTC
T = int(NOW.timestamp())
DAY = 86400
GW = "gw-" + "x" * 40
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyPair]:
    return {n: generate_keypair() for n in ("alice", "cleaner", "helper", "mallory")}


def _acl(keys: dict[str, KeyPair], *, delegate: int = 2, **extra: object) -> Acl:
    grant = Grant.for_key(
        keys["alice"].public,
        things=["front-door"],
        affordances=["unlock", "lock"],
        ops=["invokeaction", "readproperty"],
        exp=T + 60 * DAY,
        schedule="mon-fri 09:00-17:00",
        delegate=delegate,
    )
    return Acl(gateway=GW, version=1, iat=T, grants=(grant,), tz="UTC", **extra)  # type: ignore[arg-type]


def _link(issuer: KeyPair, to: KeyPair, **kw: object) -> str:
    args: dict[str, object] = {
        "gateway_id": GW,
        "things": ["front-door"],
        "affordances": ["unlock"],
        "ops": ["invokeaction"],
        "exp": T + 7 * DAY,
        "schedule": "tue 09:00-12:00",
        "depth": 1,
        "now": T - 60,
    }
    args.update(kw)
    return sign_link(issuer, to=to.id, **args)  # type: ignore[arg-type]


def _refused(code: Code, chain: list[str], acl: Acl, holder: KeyPair) -> None:
    with pytest.raises(DelegationError) as info:
        verify_chain(chain, acl=acl, gateway_id=GW, holder=holder.id, now=NOW)
    assert info.value.code == code, str(info.value)


def test_happy_path_and_decision(keys: dict[str, KeyPair]) -> None:
    acl = _acl(keys)
    one = _link(keys["alice"], keys["cleaner"])
    chain = verify_chain([one], acl=acl, gateway_id=GW, holder=keys["cleaner"].id, now=NOW)
    assert chain.rule == f"dlg:{keys['alice'].id[:8]}>{keys['cleaner'].id[:8]}"
    assert decide_chain(chain, acl, "front-door", "unlock", "invokeaction", NOW).allowed
    assert not decide_chain(chain, acl, "front-door", "lock", "invokeaction", NOW).allowed
    assert not decide_chain(chain, acl, "garage", "unlock", "invokeaction", NOW).allowed
    wed = datetime(2026, 1, 7, 10, 0, tzinfo=UTC)
    assert not decide_chain(chain, acl, "front-door", "unlock", "invokeaction", wed).allowed
    two = _link(keys["cleaner"], keys["helper"], parent=one, depth=0)
    chain2 = verify_chain([one, two], acl=acl, gateway_id=GW, holder=keys["helper"].id, now=NOW)
    assert chain2.issuers == (keys["alice"].id, keys["cleaner"].id)
    header = SEPARATOR.join([one, two])
    assert split_header(header) == [one, two]


def test_widening_link(keys: dict[str, KeyPair]) -> None:
    acl = _acl(keys)
    for kw in (
        {"things": ["front-door", "garage"]},
        {"things": ["*"]},
        {"ops": ["invokeaction", "writeproperty"]},
        {"schedule": "tue 08:00-12:00"},
        {"schedule": None},
    ):
        link = _link(keys["alice"], keys["cleaner"], **kw)
        _refused(Code.DELEGATION_WIDENS, [link], acl, keys["cleaner"])
    one = _link(keys["alice"], keys["cleaner"], uses=3)
    more = _link(keys["cleaner"], keys["helper"], parent=one, depth=0, uses=5)
    _refused(Code.DELEGATION_WIDENS, [one, more], acl, keys["helper"])
    later = _link(keys["cleaner"], keys["helper"], parent=one, depth=0, exp=T + 8 * DAY)
    _refused(Code.DELEGATION_WIDENS, [one, later], acl, keys["helper"])


def test_wrong_key_signature(keys: dict[str, KeyPair]) -> None:
    acl = _acl(keys)
    one = _link(keys["alice"], keys["cleaner"])
    forged = _link(keys["mallory"], keys["helper"], parent=one, depth=0)  # not the cleaner
    _refused(Code.DELEGATION_BAD_SIGNATURE, [one, forged], acl, keys["helper"])
    head, payload, _sig = one.split(".")
    other = _link(keys["alice"], keys["cleaner"], things=["front-door"]).split(".")[2]
    _refused(Code.DELEGATION_BAD_SIGNATURE, [f"{head}.{payload}.{other}"], acl, keys["cleaner"])


def test_loop(keys: dict[str, KeyPair]) -> None:
    acl = _acl(keys, delegate=3)
    one = _link(keys["alice"], keys["cleaner"], depth=2)
    back = _link(keys["cleaner"], keys["alice"], parent=one, depth=1)
    _refused(Code.DELEGATION_LOOP, [one, back], acl, keys["alice"])
    self_link = _link(keys["alice"], keys["alice"])
    _refused(Code.DELEGATION_LOOP, [self_link], acl, keys["alice"])


def test_depth(keys: dict[str, KeyPair]) -> None:
    one = _link(keys["alice"], keys["cleaner"])
    _refused(Code.DELEGATION_NOT_ALLOWED, [one], _acl(keys, delegate=0), keys["cleaner"])
    _refused(Code.DELEGATION_TOO_DEEP, [one], _acl(keys, delegate=1), keys["cleaner"])
    leaf = _link(keys["alice"], keys["cleaner"], depth=0)
    past = _link(keys["cleaner"], keys["helper"], parent=leaf, depth=0)
    _refused(Code.DELEGATION_TOO_DEEP, [leaf, past], _acl(keys), keys["helper"])


def test_revoked(keys: dict[str, KeyPair]) -> None:
    one = _link(keys["alice"], keys["cleaner"])
    two = _link(keys["cleaner"], keys["helper"], parent=one, depth=0)
    acl = _acl(keys)
    verify_chain([one, two], acl=acl, gateway_id=GW, holder=keys["helper"].id, now=NOW)
    gone = Acl(
        gateway=GW, version=2, iat=T, grants=acl.grants, revoked=frozenset({keys["alice"].id})
    )
    _refused(Code.DELEGATION_REVOKED, [one, two], gone, keys["helper"])
    empty = Acl(gateway=GW, version=2, iat=T)
    _refused(Code.DELEGATION_REVOKED, [one, two], empty, keys["helper"])
    mid = Acl(
        gateway=GW, version=2, iat=T, grants=acl.grants, revoked=frozenset({keys["cleaner"].id})
    )
    _refused(Code.DELEGATION_REVOKED, [one, two], mid, keys["helper"])
    jti = parse_chain([one])[0].jti
    by_jti = _acl(keys, revoked_delegations=frozenset({jti}))
    _refused(Code.DELEGATION_REVOKED, [one, two], by_jti, keys["helper"])
    assert Acl.from_json(by_jti.to_json()).revoked_delegations == {jti}


def test_stolen_chain(keys: dict[str, KeyPair]) -> None:
    one = _link(keys["alice"], keys["cleaner"])
    _refused(Code.DELEGATION_WRONG_HOLDER, [one], _acl(keys), keys["mallory"])


def test_expired_link_inside_valid_chain(keys: dict[str, KeyPair]) -> None:
    one = _link(keys["alice"], keys["cleaner"], exp=T + 60, now=T - 3600)
    two = _link(keys["cleaner"], keys["helper"], parent=one, depth=0, exp=T + 30, now=T - 3600)
    acl = _acl(keys)
    verify_chain([one, two], acl=acl, gateway_id=GW, holder=keys["helper"].id, now=NOW)
    later = datetime.fromtimestamp(T + 45, UTC)
    with pytest.raises(DelegationError) as info:
        verify_chain([one, two], acl=acl, gateway_id=GW, holder=keys["helper"].id, now=later)
    assert info.value.code == Code.DELEGATION_EXPIRED
    # the first link expired, the last one alone still looks valid: refused as expired
    mid = _link(keys["alice"], keys["cleaner"], exp=T - 10, now=T - 3600)
    tail = _link(keys["cleaner"], keys["helper"], parent=mid, depth=0, exp=T + 3600, now=T - 60)
    _refused(Code.DELEGATION_EXPIRED, [mid, tail], acl, keys["helper"])


def test_use_count(keys: dict[str, KeyPair], tmp_path: Path) -> None:
    acl = _acl(keys)
    one = _link(keys["alice"], keys["cleaner"], uses=2)
    chain = verify_chain([one], acl=acl, gateway_id=GW, holder=keys["cleaner"].id, now=NOW)
    counter = UseCounter(tmp_path)
    counter.consume(chain)
    UseCounter(tmp_path).consume(chain)  # persisted across instances
    with pytest.raises(DelegationError) as info:
        counter.consume(chain)
    assert info.value.code == Code.DELEGATION_USED_UP
    assert counter.used(chain.last) == 2


@pytest.mark.parametrize(
    "bad",
    [
        [],
        ["x"],
        ["a.b.c"],
        ["." * 2 + "x" * 5000],
        "not a list",
        ["eyJhbGciOiJub25lIn0.e30."],
    ],
)
def test_malformed(keys: dict[str, KeyPair], bad: object) -> None:
    with pytest.raises(DelegationError) as info:
        verify_chain(bad, acl=_acl(keys), gateway_id=GW, holder=keys["cleaner"].id, now=NOW)  # type: ignore[arg-type]
    assert info.value.code == Code.DELEGATION_MALFORMED


def test_malformed_links(keys: dict[str, KeyPair]) -> None:
    acl = _acl(keys)
    other_gw = _link(keys["alice"], keys["cleaner"], gateway_id="other")
    _refused(Code.DELEGATION_MALFORMED, [other_gw], acl, keys["cleaner"])
    too_long = _link(keys["alice"], keys["cleaner"], exp=T + 31 * DAY, now=T)
    _refused(Code.DELEGATION_MALFORMED, [too_long], acl, keys["cleaner"])
    one = _link(keys["alice"], keys["cleaner"])
    unbound = _link(keys["cleaner"], keys["helper"], depth=0)  # prev: not `one`
    _refused(Code.DELEGATION_MALFORMED, [one, unbound], acl, keys["helper"])
    _refused(Code.DELEGATION_MALFORMED, [one] * 5, acl, keys["helper"])


def test_schedule_inside() -> None:
    parent = Schedule.parse("mon-fri 09:00-17:00")
    assert schedule_inside(Schedule.parse("tue 09:00-12:00"), parent)
    assert schedule_inside(Schedule.parse("tue 09:00-12:00, 13:00-17:00"), parent)
    assert not schedule_inside(Schedule.parse("sat 09:00-12:00"), parent)
    assert not schedule_inside(Schedule.parse("tue 08:59-12:00"), parent)
    assert not schedule_inside(None, parent)
    assert schedule_inside(None, None)


def test_old_acls_stay_valid_and_delegate_round_trips(keys: dict[str, KeyPair]) -> None:
    g = Grant.for_key(keys["alice"].public, things=["*"], ops=["readproperty"])
    assert "delegate" not in g.to_json() and g.delegate == 0
    g2 = Grant.for_key(keys["alice"].public, things=["*"], ops=["readproperty"], delegate=2)
    assert Grant.from_json(g2.to_json()).delegate == 2
    bad = dict(g2.to_json(), delegate=9)
    with pytest.raises(Exception, match="delegate"):
        Grant.from_json(bad)


def test_the_doc_vector_verifies() -> None:
    text = (DOCS / "acl.md").read_text(encoding="utf-8")
    section = text[text.index("## 6. Delegation") :]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    vec = json.loads(block.group(1))
    acl = Acl.from_json(vec["acl"])
    now = datetime.fromtimestamp(vec["now"], UTC)
    chain = verify_chain(
        vec["chain"], acl=acl, gateway_id=acl.gateway, holder=vec["holder"], now=now
    )
    assert chain.rule == vec["rule"]
    assert root_ref(acl.gateway, chain.links[0].iss) == chain.links[0].prev
    for case in vec["refused"]:
        with pytest.raises(DelegationError) as info:
            verify_chain(
                case["chain"], acl=acl, gateway_id=acl.gateway, holder=case["holder"], now=now
            )
        assert info.value.code == case["code"]


def test_cli_delegate_offline_and_extend(tmp_path: Path) -> None:
    from gateway.cli.delegate import read_chain
    from gateway.cli.peer_cli import main

    delegate = main

    names = ("owner", "alice", "cleaner", "helper", "gw")
    for name in names:
        assert main(["keygen", "--key", str(tmp_path / name)]) == 0
    kp = {n: load_keypair(tmp_path / n) for n in names}
    gw = kp["gw"].id
    acl_file = str(tmp_path / "acl.jws")
    grant = ["acl", "grant", "--key", str(tmp_path / "owner"), "--acl", acl_file]
    grant += ["--gateway", gw, "--subject", str(tmp_path / "alice.pub"), "--things", "front-door"]
    assert main([*grant, "--ops", "invokeaction", "--delegate", "2"]) == 0
    acl = read_acl_unverified((tmp_path / "acl.jws").read_text().strip())
    assert acl.grants[0].delegate == 2
    first, second = tmp_path / "one.chain", tmp_path / "two.chain"
    base = ["delegate", "--gateway", gw, "--things", "front-door", "--ops", "invokeaction"]
    cleaner_pub = str(tmp_path / "cleaner.pub")
    args = ["--key", str(tmp_path / "alice"), "--to", cleaner_pub, "--depth", "1"]
    assert delegate([*base, *args, "--uses", "3", "--out", str(first)]) == 0
    args = ["--key", str(tmp_path / "cleaner"), "--to", kp["helper"].id, "--parent", str(first)]
    assert delegate([*base, *args, "--uses", "2", "--out", str(second)]) == 0
    links = read_chain(second)
    assert len(links) == 2
    now = datetime.now(UTC)
    chain = verify_chain(links, acl=acl, gateway_id=gw, holder=kp["helper"].id, now=now)
    assert chain.issuers == (kp["alice"].id, kp["cleaner"].id)
