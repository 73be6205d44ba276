"""The Streembit network end to end on 127.0.0.1: 24 DHT nodes, two gateways, two peers.

A granted peer finds gateway B by its id alone and unlocks its lock; an ungranted peer is
refused; a revocation pushed by the owner takes effect at once, also for a live subscription; a
gateway restarted on new ports is found again; with 30 % of the nodes stopped lookups still work.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant, without_subject
from gateway.app import Gateway
from gateway.config import P2pConfig
from gateway.identity import KeyPair, generate_keypair
from gateway.p2p import DhtNode
from gateway.peer import PeerClient, PeerConnection, PeerRequestError
from gateway.peer.find import connect, find_contact
from gateway.state import StateDir
from tests.helpers import demo_config

NODES = 24
ALL = ["readproperty", "writeproperty", "observeproperty", "invokeaction", "subscribeevent"]


@dataclass
class Net:
    seeds: list[DhtNode]
    gateways: dict[str, Gateway]
    states: dict[str, Path]
    owner: KeyPair
    alice: KeyPair  # granted on gateway B
    mallory: KeyPair  # granted nowhere

    @property
    def boot(self) -> list[tuple[str, int]]:
        return [s.address for s in self.seeds[:3] if s.running]

    async def peer_dht(self) -> DhtNode:
        node = DhtNode("127.0.0.1", 0, bootstrap=self.boot, rpc_timeout=0.5)
        await node.start()
        return node

    async def start_gateway(self, name: str) -> Gateway:
        p2p = P2pConfig(enabled=True, ws_port=0, dht_port=0, bootstrap=tuple(self.boot))
        gw = await Gateway.create(demo_config(self.states[name], p2p=p2p))
        await gw.start()
        self.gateways[name] = gw
        return gw


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    seeds: list[DhtNode] = []
    first = DhtNode("127.0.0.1", 0, rpc_timeout=0.5)
    await first.start()
    seeds.append(first)
    for _ in range(NODES - 1):
        node = DhtNode("127.0.0.1", 0, bootstrap=[first.address], rpc_timeout=0.5)
        await node.start()
        seeds.append(node)
    owner, alice, mallory = generate_keypair(), generate_keypair(), generate_keypair()
    states = {}
    for name in ("a", "b"):
        state = tmp_path / name
        gw_key, _ = StateDir(state).init_identity()
        store = AclStore(state, gw_key.id)
        store.pin_owner(owner.public)
        acl = new_acl(gw_key.id)
        if name == "b":
            acl = with_grant(acl, Grant.for_key(alice.public, things=["*"], ops=ALL))
        store.install(sign_acl(acl, owner))
        states[name] = state
    n = Net(seeds, {}, states, owner, alice, mallory)
    for name in ("a", "b"):
        await n.start_gateway(name)
    try:
        yield n
    finally:
        for gw in n.gateways.values():
            await gw.stop()
        for node in seeds:
            if node.running:
                await node.stop()


async def _session(n: Net, key: KeyPair, gw_id: str) -> tuple[PeerClient, PeerConnection, DhtNode]:
    dht = await n.peer_dht()
    contact = await find_contact(dht, gw_id)
    client = PeerClient(key)
    await client.__aenter__()
    return client, await connect(client, contact), dht


async def _close(client: PeerClient, conn: PeerConnection, dht: DhtNode) -> None:
    await conn.close()
    await client.close()
    await dht.stop()


async def test_granted_peer_finds_gateway_by_id_and_unlocks(net: Net) -> None:
    b = net.gateways["b"]
    client, conn, dht = await _session(net, net.alice, b.id)
    try:
        rec = (await find_contact(dht, b.id)).record
        assert rec.addrs == (b.p2p.url,) and rec.td == b.things_digest()  # type: ignore[union-attr]
        assert {t["name"] for t in await conn.things()} == {"front-door", "living-room"}
        assert await conn.invoke("front-door", "unlock") == "unlocked"
        assert await conn.read("front-door", "state") == "unlocked"
        assert await conn.invoke("front-door", "lock") == "locked"
        assert isinstance(await conn.read("living-room", "temperature"), float)
    finally:
        await _close(client, conn, dht)
    # alice has no grant on gateway A: found, but refused
    client, conn, dht = await _session(net, net.alice, net.gateways["a"].id)
    try:
        with pytest.raises(PeerRequestError) as err:
            await conn.invoke("front-door", "unlock")
        assert err.value.code == "forbidden"
    finally:
        await _close(client, conn, dht)


async def test_ungranted_peer_is_refused_and_audited(net: Net) -> None:
    b = net.gateways["b"]
    client, conn, dht = await _session(net, net.mallory, b.id)
    try:
        with pytest.raises(PeerRequestError) as err:
            await conn.invoke("front-door", "unlock")
        assert err.value.code == "forbidden" and err.value.status == 403
        assert await b.things["front-door"].read_property("state") == "locked"
    finally:
        await _close(client, conn, dht)
    rows = b.audit.query(limit=20, subject=net.mallory.id)
    assert any(not r.allowed and r.affordance == "unlock" and r.binding == "p2p" for r in rows)


async def test_revocation_takes_effect_at_once_also_for_live_subscription(net: Net) -> None:
    b = net.gateways["b"]
    client, conn, dht = await _session(net, net.alice, b.id)
    owner_client, owner_conn, owner_dht = await _session(net, net.owner, b.id)
    try:
        stream = conn.observe("front-door", "state")
        await stream.start()
        await owner_conn.invoke("front-door", "unlock")
        ev = await asyncio.wait_for(stream.next_event(), 5)
        assert ev is not None and ev.data == "unlocked"
        revoked = sign_acl(without_subject(b.acl.current, net.alice.id), net.owner)  # type: ignore[arg-type]
        await owner_conn.acl_push(revoked)
        await owner_conn.invoke("front-door", "lock")  # this change must NOT reach alice
        ended_with: BaseException | None = None
        try:
            while (ev := await asyncio.wait_for(stream.next_event(), 5)) is not None:
                assert ev.data != "locked", "an event was sent after the revocation"
        except PeerRequestError as exc:
            ended_with = exc
        assert isinstance(ended_with, PeerRequestError) and ended_with.code == "forbidden"
        with pytest.raises(PeerRequestError):
            await conn.read("front-door", "state")
    finally:
        await _close(client, conn, dht)
        await _close(owner_client, owner_conn, owner_dht)


async def test_restarted_gateway_on_new_ports_is_found_again(net: Net) -> None:
    b = net.gateways.pop("b")
    old_url = b.p2p.url  # type: ignore[union-attr]
    old_rec = (await find_contact(await net.peer_dht(), b.id)).record
    await b.stop()
    b2 = await net.start_gateway("b")
    assert b2.id == b.id and b2.p2p.url != old_url  # type: ignore[union-attr]
    dht = await net.peer_dht()
    try:
        rec = (await find_contact(dht, b2.id)).record
        assert rec.seq > old_rec.seq and rec.addrs == (b2.p2p.url,)  # type: ignore[union-attr]
    finally:
        await dht.stop()
    client, conn, dht = await _session(net, net.alice, b2.id)
    try:
        assert await conn.read("front-door", "state") == "locked"
    finally:
        await _close(client, conn, dht)


async def test_lookups_survive_thirty_percent_of_nodes_stopped(net: Net) -> None:
    rng = random.Random(7)
    victims = rng.sample(net.seeds[3:], k=int(NODES * 0.3))  # keep the bootstrap seeds
    for node in victims:
        await node.stop()
    for gw in net.gateways.values():
        dht = await net.peer_dht()
        try:
            contact = await asyncio.wait_for(find_contact(dht, gw.id), 10)
            assert contact.identity.id == gw.id
        finally:
            await dht.stop()
    client, conn, dht = await _session(net, net.alice, net.gateways["b"].id)
    try:
        assert await conn.invoke("front-door", "unlock") == "unlocked"
    finally:
        await _close(client, conn, dht)
