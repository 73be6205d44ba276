"""Claiming and ownership transfer over the real P2P binding on 127.0.0.1, and the lockout.

A real in-process gateway (the demo Things, HTTP on a free port) with the sealed-message
WebSocket binding; peers are `PeerClient`s. The setup-code lockout is also checked with a fake
clock (its growth, its persistence across a restart, a clock set back).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.acl import AclStore, Grant
from gateway.app import Gateway
from gateway.audit import AuditLog
from gateway.auth import issue_token
from gateway.bindings.p2p import P2PBinding
from gateway.errors import MessageError, ProvisioningError
from gateway.identity import KeyPair, generate_keypair
from gateway.messages import new_jti, seal
from gateway.peer import PeerClient, PeerConnection, PeerRequestError
from gateway.provisioning.claim import claim_input
from gateway.provisioning.setup_code import (
    BASE_LOCKOUT_S,
    FREE_FAILURES,
    MAX_LOCKOUT_S,
    SetupCodeStore,
    format_code,
    lockout_for,
)
from gateway.provisioning.transfer import sign_transfer, verify_transfer
from gateway.state import StateDir
from tests.helpers import ALL_OPS, Running, demo_config


@dataclass
class Gw:
    gw: Gateway
    binding: P2PBinding
    state: Path
    clients: list[PeerClient]

    async def conn(self, key: KeyPair) -> PeerConnection:
        client = PeerClient(key)
        self.clients.append(client)
        return await client.connect(self.binding.url, self.gw.identity.public)

    def audit(self, op: str) -> list[dict[str, Any]]:
        log = AuditLog.open(self.state / "audit.sqlite3")
        try:
            return [r.as_dict() for r in log.query(limit=500) if r.op == op]
        finally:
            log.close()


async def _serve(gw: Gateway, state: Path) -> AsyncIterator[Gw]:
    binding = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds)
    await binding.start()
    g = Gw(gw, binding, state, [])
    try:
        yield g
    finally:
        for c in g.clients:
            await c.close()
        await binding.stop()


@pytest.fixture
async def unclaimed(tmp_path: Path) -> AsyncIterator[Gw]:
    state = tmp_path / "state"
    StateDir(state).init_identity()
    gw = await Gateway.create(demo_config(state))
    await gw.start()
    try:
        async for g in _serve(gw, state):
            yield g
    finally:
        await gw.stop()


@pytest.fixture
async def owned(running: Running) -> AsyncIterator[Gw]:
    async for g in _serve(running.gw, running.world.state):
        yield g


def _files(state: Path) -> dict[str, bytes]:
    """The state folder's files except the audit log (which records every refusal)."""
    return {p.name: p.read_bytes() for p in state.iterdir() if not p.name.startswith("audit")}


async def _refused(coro: Any) -> PeerRequestError:
    with pytest.raises(PeerRequestError) as info:
        await coro
    return info.value


# ------------------------------------------------------------------ claim
async def test_wrong_code_refused_and_counted_then_the_right_one_claims(unclaimed: Gw) -> None:
    owner, stranger = generate_keypair(), generate_keypair()
    setup = SetupCodeStore(unclaimed.state)
    code = setup.ensure()
    conn = await unclaimed.conn(owner)

    err = await _refused(conn.claim(bytes(10)))
    assert (err.code, err.status) == ("bad_setup_code", 403)
    assert setup.status().failures == 1 and not setup.status().used
    assert unclaimed.gw.acl.owner is None and not (unclaimed.state / "owner.pub").exists()

    # a proof made for the owner's key, sent from another key, is a wrong code too
    jti = new_jti()
    sconn = await unclaimed.conn(stranger)
    proof = claim_input(code, unclaimed.gw.id, owner.id, jti)
    err = await _refused(sconn.request("claim", input=proof, jti=jti))
    assert err.code == "bad_setup_code" and setup.status().failures == 2

    assert await conn.claim(code) == {"owner": owner.id, "gateway": unclaimed.gw.id}
    assert unclaimed.gw.acl.owner is not None and unclaimed.gw.acl.owner.id == owner.id
    assert (unclaimed.state / "owner.pub").exists() and setup.status().used
    assert {t["name"] for t in await conn.things()} == {"front-door", "living-room"}

    err = await _refused(sconn.claim(code))  # the code worked once; the gateway is owned
    assert (err.code, err.status) == ("already_owned", 409)
    assert unclaimed.gw.acl.owner.id == owner.id

    rows = unclaimed.audit("claim")
    assert [r["allowed"] for r in reversed(rows)] == [False, False, True, False]
    assert rows[1]["rule"] == "setup-code" and owner.id in rows[1]["detail"]
    assert rows[-1]["reason"].startswith("bad_setup_code")
    text = json.dumps(rows)
    assert code.hex() not in text and format_code(code) not in text


async def test_claim_refusals_change_nothing(unclaimed: Gw) -> None:
    owner = generate_keypair()
    conn = await unclaimed.conn(owner)
    err = await _refused(conn.claim(bytes(10)))  # no setup code made yet (no `qr` run)
    assert (err.code, err.status) == ("no_setup_code", 409)
    setup = SetupCodeStore(unclaimed.state)
    setup.ensure()
    before = _files(unclaimed.state)
    for bad in ({"v": 1, "mac": "!!"}, {"v": 2, "mac": "A" * 43}, {"v": 1}, "text", [], None):
        err = await _refused(conn.request("claim", input=bad))
        assert (err.code, err.status) == ("claim_malformed", 400)
    assert setup.status().failures == 0  # malformed is not a guess
    with pytest.raises(MessageError):  # no input at all: refused by the message layer
        seal({"op": "claim"}, sender=owner, recipient=unclaimed.gw.identity.public, typ="request")
    assert unclaimed.gw.acl.owner is None and _files(unclaimed.state) == before
    assert len([r for r in unclaimed.audit("claim") if not r["allowed"]]) == 7


async def test_lockout_over_the_network(unclaimed: Gw) -> None:
    setup = SetupCodeStore(unclaimed.state)
    code = setup.ensure()
    conn = await unclaimed.conn(generate_keypair())
    for _ in range(FREE_FAILURES):
        assert (await _refused(conn.claim(bytes(10)))).code == "bad_setup_code"
    err = await _refused(conn.claim(bytes(10)))
    assert err.code == "bad_setup_code" and "locked for 30 s" in err.reason
    err = await _refused(conn.claim(code))  # even the right code waits out the lockout
    assert (err.code, err.status) == ("claim_locked", 429)
    assert setup.status().failures == FREE_FAILURES + 1 and unclaimed.gw.acl.owner is None
    assert unclaimed.audit("claim")[0]["reason"].startswith("claim_locked")


def test_lockout_grows_persists_and_ignores_a_clock_set_back(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SetupCodeStore(tmp_path, clock=lambda: now[0])
    code = store.ensure()
    assert store.ensure() == code  # stable until used or replaced

    def attempt(good: bool) -> str:
        try:
            store.consume(lambda c: good and c == code, lambda: None)
        except ProvisioningError as exc:
            return exc.code
        return "ok"

    waits = []
    for _ in range(FREE_FAILURES):
        assert attempt(False) == "bad_setup_code"
        assert store.status().locked_for_s == 0
    for _ in range(4):
        assert attempt(False) == "bad_setup_code"
        waits.append(store.status().locked_for_s)
        assert attempt(False) == "claim_locked"  # refused, not counted
        now[0] += waits[-1]
    assert waits == [BASE_LOCKOUT_S * 2**i for i in range(4)] == [30, 60, 120, 240]
    assert store.status().failures == FREE_FAILURES + 4
    assert lockout_for(100) == MAX_LOCKOUT_S

    assert attempt(False) == "bad_setup_code"
    restarted = SetupCodeStore(tmp_path, clock=lambda: now[0])  # a new process
    assert restarted.status().locked_for_s == 480
    assert restarted.status().failures == FREE_FAILURES + 5
    now[0] -= 10 * 86400  # clock set back ten days: the lockout does not grow past the cap
    assert 0 < restarted.status().locked_for_s <= MAX_LOCKOUT_S
    now[0] += 10 * 86400 + 480
    assert attempt(True) == "ok" and store.status().used
    assert attempt(True) == "setup_code_used"
    assert store.ensure() != code  # a new code after use (e.g. after a reset)
    assert store.status().failures == FREE_FAILURES + 5  # counters survive a new code


def test_damaged_setup_file_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "setup-code.json").write_text("{not json")
    store = SetupCodeStore(tmp_path)
    with pytest.raises(ProvisioningError) as info:
        store.consume(lambda c: True, lambda: None)
    assert info.value.code == "setup_state_damaged"
    with pytest.raises(ProvisioningError):
        store.ensure()
    store.ensure(new=True)  # replaced, and distrusted: counts as FREE_FAILURES already
    assert store.status().failures == FREE_FAILURES
    assert oct((tmp_path / "setup-code.json").stat().st_mode & 0o777) == "0o600"


# ------------------------------------------------------------------ transfer
async def test_owner_transfers_the_gateway(owned: Gw, running: Running) -> None:
    w = running.world
    new = generate_keypair()
    gw = owned.gw
    assert gw.acl.current is not None
    old = await owned.conn(w.owner)
    user = await owned.conn(w.user)
    assert await user.read("front-door", "state") == "locked"

    st = sign_transfer(w.owner, gw.id, new.public)
    out = await old.transfer(st)
    assert out == {"owner": new.id, "previous": w.owner.id, "gateway": gw.id}
    assert gw.acl.owner is not None and gw.acl.owner.id == new.id
    assert gw.acl.current is None and not (w.state / "acl.jws").exists()
    pinned = AclStore(w.state, gw.id).owner  # what a restart would load
    assert pinned is not None and pinned.id == new.id
    assert (await _refused(user.read("front-door", "state"))).code == "forbidden"
    assert (await _refused(old.things())).code == "forbidden"
    newc = await owned.conn(new)
    assert len(await newc.things()) == 2

    # the new owner signs a fresh ACL from version 1
    w2 = type(w)(w.state, w.gw_key, new, w.user, w.stranger, w.keydir)
    w2.install(Grant.for_key(w.user.public, things=["*"], ops=ALL_OPS))
    assert gw.acl.reload_if_changed() is not None
    assert await user.read("front-door", "state") == "locked"

    rows = owned.audit("transfer")
    assert rows[0]["allowed"] and rows[0]["rule"] == "owner-statement"
    assert w.owner.id in rows[0]["detail"] and new.id in rows[0]["detail"]


async def test_transfer_refusals(owned: Gw, running: Running) -> None:
    w = running.world
    gw = owned.gw
    new = generate_keypair()
    owner = await owned.conn(w.owner)
    stranger = await owned.conn(w.stranger)
    now = time.time()
    cases = [
        (owner, sign_transfer(w.stranger, gw.id, new.public), "transfer_not_owner", 403),
        (
            owner,
            sign_transfer(w.owner, "another-gateway", new.public),
            "transfer_wrong_gateway",
            400,
        ),
        (owner, sign_transfer(w.owner, gw.id, new.public, now=now - 3600), "transfer_expired", 400),
        (
            owner,
            sign_transfer(w.owner, gw.id, new.public, now=now + 3600),
            "transfer_not_yet_valid",
            400,
        ),
        (stranger, sign_transfer(w.owner, gw.id, new.public), "transfer_forbidden", 403),
        (owner, "not.a.jws", "transfer_invalid", 400),
    ]
    tampered = sign_transfer(w.owner, gw.id, new.public)
    head, _, sig = tampered.split(".")
    other = sign_transfer(w.owner, gw.id, w.stranger.public).split(".")[1]
    cases.append((owner, f"{head}.{other}.{sig}", "transfer_bad_signature", 403))
    for conn, statement, code, status in cases:
        err = await _refused(conn.transfer(statement))
        assert (err.code, err.status) == (code, status), code
    assert gw.acl.owner is not None and gw.acl.owner.id == w.owner.id
    assert gw.acl.current is not None and (w.state / "acl.jws").exists()
    assert len([r for r in owned.audit("transfer") if not r["allowed"]]) == len(cases)


async def test_transfer_statement_works_once(owned: Gw, running: Running) -> None:
    w = running.world
    gw = owned.gw
    b = generate_keypair()
    a_to_b = sign_transfer(w.owner, gw.id, b.public)
    bconn = await owned.conn(b)
    assert (await bconn.transfer(a_to_b))["owner"] == b.id  # the new owner may present it
    aconn = await owned.conn(w.owner)
    assert (await aconn.transfer(sign_transfer(b, gw.id, w.owner.public)))["owner"] == w.owner.id
    err = await _refused(bconn.transfer(a_to_b))  # A owns it again: the old statement is spent
    assert (err.code, err.status) == ("transfer_replayed", 409)
    assert gw.acl.owner.id == w.owner.id  # type: ignore[union-attr]


async def test_transfer_of_an_unclaimed_gateway_is_refused(unclaimed: Gw) -> None:
    a, b = generate_keypair(), generate_keypair()
    conn = await unclaimed.conn(a)
    err = await _refused(conn.transfer(sign_transfer(a, unclaimed.gw.id, b.public)))
    assert (err.code, err.status) == ("not_owned", 409)


def test_statement_checks_and_store_race(tmp_path: Path) -> None:
    a, b, c = generate_keypair(), generate_keypair(), generate_keypair()
    st = sign_transfer(a, "gw", b.public, ttl=60, now=1000)
    assert verify_transfer(st, owner=a.public, gateway_id="gw", now=1030).new_owner.id == b.id
    with pytest.raises(ProvisioningError) as info:
        sign_transfer(a, "gw", a.public)
    assert info.value.code == "transfer_same_owner"
    with pytest.raises(ProvisioningError):
        sign_transfer(a, "gw", b.public, ttl=100_000)
    store = AclStore(tmp_path, "gw")
    store.pin_owner(a.public)
    with pytest.raises(ProvisioningError) as info:
        store.transfer_owner(c.public, from_owner_id=b.id)
    assert info.value.code == "owner_changed" and store.owner.id == a.id  # type: ignore[union-attr]
    seen: list[int] = []
    store.on_change.append(lambda: seen.append(1))
    store.transfer_owner(b.public, from_owner_id=a.id)
    assert store.owner.id == b.id and seen == [1]  # type: ignore[union-attr]
    store.forget()
    assert store.owner is None and store.current is None and seen == [1, 1]


async def test_claim_is_seen_by_every_binding(unclaimed: Gw) -> None:
    """The HTTP binding's token cache follows the owner pinned by a claim over P2P."""
    owner = generate_keypair()
    code = SetupCodeStore(unclaimed.state).ensure()
    conn = await unclaimed.conn(owner)
    await conn.claim(code)
    token = issue_token(owner, audience=unclaimed.gw.id, ttl=60)
    async with aiohttp.ClientSession() as http:
        url = f"{unclaimed.gw.http_url}/things/front-door/properties/state"
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200 and await resp.json() == "locked"
    await asyncio.sleep(0)
