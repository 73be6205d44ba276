"""Issue 16: the DHT stays available under a flood of valid records and Sybil node ids.

24 DHT nodes, each on its own loopback address (127.0.0.10-33) with the prefix policy set to
one source per address (`local_by_port=False`, /32), and gateway B on 127.0.0.1 with the
default policy. One hostile source on 127.0.0.200 announces 200 Sybil node ids chosen next to
gateway B's key (an eclipse attempt: they answer lookups with each other, never with a value)
and stores 10 000 valid records under fresh keys on the nodes closest to each key. Meanwhile
a granted peer keeps joining with a fresh DHT node, finding gateway B by its id and unlocking.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant
from gateway.app import Gateway
from gateway.config import P2pConfig
from gateway.identity import KeyPair, generate_keypair
from gateway.p2p import DhtNode, DhtSettings, dht_key_digest
from gateway.p2p.sources import source_key
from gateway.p2p.testing import Attacker, flood_records, near
from gateway.peer import PeerClient
from gateway.peer.find import connect, find_contact
from gateway.state import StateDir
from tests.helpers import demo_config

SEEDS = 24
FLOOD = 10_000
SYBILS = 200
ATTACKER = "127.0.0.200"
# One source per loopback address, so the attacker's sockets are one source at every node.
SETTINGS = DhtSettings(rpc_timeout=0.5, local_by_port=False, prefix_v4=32)
# A peer's whole session (join, lookup, connect, unlock, lock): generous on a busy 2-core box.
SESSION_TIMEOUT = 20.0


@dataclass
class Net:
    seeds: list[DhtNode]
    gateway: Gateway
    alice: KeyPair

    @property
    def boot(self) -> list[tuple[str, int]]:
        return [s.address for s in self.seeds[:3]]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    seeds: list[DhtNode] = []
    try:
        for i in range(SEEDS):
            boot = [seeds[0].address] if seeds else []
            node = DhtNode(f"127.0.0.{10 + i}", 0, bootstrap=boot, settings=SETTINGS)
            await node.start()
            seeds.append(node)
        owner, alice = generate_keypair(), generate_keypair()
        gw_key, _ = StateDir(tmp_path).init_identity()
        store = AclStore(tmp_path, gw_key.id)
        store.pin_owner(owner.public)
        grant = Grant.for_key(alice.public, things=["front-door"], ops=["invokeaction"])
        store.install(sign_acl(with_grant(new_acl(gw_key.id), grant), owner))
        gw_boot = tuple(s.address for s in seeds[:3])
        p2p = P2pConfig(enabled=True, ws_port=0, dht_port=0, bootstrap=gw_boot)
        gw = await Gateway.create(demo_config(tmp_path, p2p=p2p))
        await gw.start()
        try:
            yield Net(seeds, gw, alice)
        finally:
            await gw.stop()
    finally:
        for node in seeds:
            await node.stop()


async def _session(n: Net, index: int) -> float:
    """A fresh peer node joins, finds the gateway and unlocks; returns the lookup time."""
    dht = DhtNode(f"127.0.0.{100 + index % 50}", 0, bootstrap=n.boot, settings=SETTINGS)
    await dht.start()
    try:
        started = time.perf_counter()
        contact = await find_contact(dht, n.gateway.id)
        took = time.perf_counter() - started
        async with PeerClient(n.alice) as client:
            conn = await connect(client, contact)
            try:
                assert await conn.invoke("front-door", "unlock") == "unlocked"
                assert await conn.invoke("front-door", "lock") == "locked"
            finally:
                await conn.close()
        return took
    finally:
        await dht.stop()


async def test_flood_and_sybils_do_not_stop_a_granted_peer(net: Net) -> None:
    records = flood_records(FLOOD)
    gw_key = dht_key_digest(net.gateway.id)
    attacker = Attacker(ATTACKER, near(gw_key, SYBILS))
    await attacker.start()
    victims = [(s.node_id, s.address) for s in net.seeds]
    lookups: list[float] = []
    try:

        async def attack() -> None:
            await attacker.announce([s.address for s in net.seeds])
            await attacker.flood(records, victims)

        attack_task = asyncio.create_task(attack(), name="test-attacker")
        try:
            index = 0
            while not attack_task.done() or index < 3:
                async with asyncio.timeout(SESSION_TIMEOUT):
                    lookups.append(await _session(net, index))
                index += 1
        finally:
            if not attack_task.done():
                attack_task.cancel()
            await asyncio.wait([attack_task])
        attack_task.result()
        for extra in range(3):  # right after the flood
            async with asyncio.timeout(SESSION_TIMEOUT):
                lookups.append(await _session(net, 60 + extra))
    finally:
        attacker.close()
    assert len(lookups) >= 6  # every session found the gateway and unlocked (none raised)
    assert attacker.sent >= SEEDS * SYBILS + FLOOD * SETTINGS.ksize

    source = source_key(ATTACKER, 1, SETTINGS)
    for seed in net.seeds:
        held = seed.storage.per_source()
        assert len(seed.storage) <= SETTINGS.max_records
        assert held.get(source, 0) <= SETTINGS.max_records_per_source
        assert sum(1 for c in seed.protocol.router.contacts() if c.ip == ATTACKER) <= (
            SETTINGS.max_per_prefix_table
        )
        assert seed.storage.refusals["quota"] + seed.storage.refusals["rate"] > 0
    # The genuine record is still held by the nodes closest to its key.
    holders = [s for s in net.seeds if gw_key in s.storage]
    assert len(holders) >= SETTINGS.get_quorum

    # A node joining the full network costs its neighbours a bounded number of datagrams.
    newcomer = DhtNode("127.0.0.99", 0, bootstrap=net.boot, settings=SETTINGS)
    await newcomer.start()
    try:
        await asyncio.sleep(1.0)  # the paced hand-over arrives
        got = newcomer.protocol.received
        me = newcomer.node_id
        knowing = sum(1 for s in net.seeds if any(c.id == me for c in s.protocol.router.contacts()))
        print(f"lookups {len(lookups)}, max {max(lookups):.3f} s; join: {dict(got)}")
        assert got["store"] <= knowing * SETTINGS.handover_max
        assert got["request"] <= knowing * SETTINGS.handover_max + 3 * SEEDS
    finally:
        await newcomer.stop()
