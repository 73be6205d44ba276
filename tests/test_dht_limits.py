"""Issue 16, piece by piece: storage quotas and eviction, source prefixes, routing diversity,
bounded and paced hand-over, disjoint lookups, the verified-record cache."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from gateway.identity import generate_keypair
from gateway.p2p import DhtNode, DhtSettings, dht_key_digest, make_contact_record
from gateway.p2p.crawl import lookup
from gateway.p2p.node import Node
from gateway.p2p.records import RecordCache
from gateway.p2p.sources import source_key
from gateway.p2p.storage import LOCAL_SOURCE, RecordStorage
from tests.helpers import dht_network


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until CHECK holds (polled every 5 ms); fails the test after TIMEOUT seconds."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


PER_ADDRESS = DhtSettings(rpc_timeout=0.3, local_by_port=False, prefix_v4=32)


def _record() -> tuple[bytes, str]:
    kp = generate_keypair()
    text = make_contact_record(kp, seq=1, addrs=["ws://127.0.0.1:9/p2p"], td_digest="t", ttl=600)
    return dht_key_digest(kp.id), text


def _dist(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def network(
    n: int, settings: DhtSettings = PER_ADDRESS, base: int = 10
) -> AbstractAsyncContextManager[list[DhtNode]]:
    """N nodes on 127.0.0.BASE, 127.0.0.BASE+1, ... (one address each)."""
    return dht_network(n, lambda i: f"127.0.0.{base + i}", settings=settings)


# -- sources ------------------------------------------------------------------------------------


def test_source_prefixes() -> None:
    default = DhtSettings()
    assert source_key("203.0.113.7", 4000, default) == "203.0.113.0/24"
    assert source_key("203.0.113.200", 1, default) == source_key("203.0.113.7", 2, default)
    assert source_key("203.0.114.7", 1, default) != source_key("203.0.113.7", 1, default)
    assert source_key("2001:db8:1:2::5", 1, default) == "2001:db8:1::/48"
    assert source_key("::ffff:203.0.113.9", 1, default) == "203.0.113.0/24"
    # Loopback and private addresses count per address:port by default...
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.1.20", "fe80::1"):
        assert source_key(ip, 5, default) == f"{ip}:5"
    # ...and per prefix when the policy says so (the loopback tests' setting).
    assert source_key("127.0.0.9", 5, PER_ADDRESS) == "127.0.0.9/32"
    assert source_key("127.0.0.9", 6, PER_ADDRESS) == source_key("127.0.0.9", 5, PER_ADDRESS)
    with pytest.raises(ValueError):
        DhtSettings(prefix_v4=33)
    with pytest.raises(ValueError):
        DhtSettings(handover_max=0)


# -- storage ------------------------------------------------------------------------------------


def test_quota_per_source_is_checked_before_the_signature() -> None:
    store = RecordStorage(max_records=50, max_per_source=3)
    recs = [_record() for _ in range(5)]
    assert all(store.put(k, v, source="198.51.100.0/24") for k, v in recs[:3])
    misses = store.verified.misses
    assert not store.put(*recs[3], source="198.51.100.0/24")
    assert store.refusals["quota"] == 1 and store.verified.misses == misses  # no ES256 spent
    assert store.put(*recs[3], source="203.0.113.0/24")  # another source has its own share
    assert store.put(*recs[4], source=LOCAL_SOURCE)  # this node's own stores: no quota
    assert store.per_source() == {"198.51.100.0/24": 3, "203.0.113.0/24": 1, LOCAL_SOURCE: 1}
    # A newer record under a held key replaces it whatever its sender's quota.
    assert store.put(recs[0][0], recs[0][1], source="198.51.100.0/24")  # refresh


def test_eviction_keeps_what_the_node_is_responsible_for() -> None:
    node_id = os.urandom(20)
    recs = sorted((_record() for _ in range(12)), key=lambda r: _dist(r[0], node_id))
    responsible = {k for k, _ in recs[6:]}  # the far half: responsibility outranks distance
    store = RecordStorage(max_records=4, node_id=node_id)
    store.responsible = lambda key: key in responsible
    for key, text in recs[:4]:  # four near records it is not responsible for
        assert store.put(key, text, source=f"s{key.hex()}")
    # Records it is responsible for evict the others, the farthest first.
    assert store.put(*recs[6], source="a") and recs[3][0] not in store
    assert store.put(*recs[7], source="b") and recs[2][0] not in store
    assert store.evicted == 2
    # A record it is not responsible for never evicts one it is responsible for.
    assert all(key in store for key, _ in recs[:2])
    assert not store.put(*recs[4], source="c") and store.refusals["far"] == 1
    assert store.put(*recs[8], source="d") and store.put(*recs[9], source="e")
    assert not store.put(*recs[5], source="f")  # full of responsible records now
    # Among records it is responsible for, a nearer one evicts the farthest.
    assert store.put(*recs[10], source="g") is False  # farther than all it holds
    held = {k for k, _ in store}
    assert held == {recs[i][0] for i in (6, 7, 8, 9)}
    assert len(store) == 4


def test_verified_cache_skips_the_signature_but_checks_binding_and_time() -> None:
    key, text = _record()
    cache = RecordCache(size=2)
    rec = cache.verify(text, key_digest=key)
    assert cache.verify(text, key_digest=key) is rec and cache.hits == 1
    with pytest.raises(Exception, match="filed under"):
        cache.verify(text, key_digest=bytes(20))
    with pytest.raises(Exception, match="expired"):
        cache.verify(text, key_digest=key, now=rec.exp)
    for _ in range(3):
        cache.verify(_record()[1])
    cache.verify(text, key_digest=key)
    assert cache.misses == 5  # evicted (LRU of 2), verified again


# -- routing diversity, hand-over, lookups ---------------------------------------------------------


async def test_routing_table_admits_few_contacts_per_source() -> None:
    async with network(3) as nodes:
        victim = nodes[0]
        router = victim.protocol.router
        before = router.size()
        for _ in range(200):  # 200 Sybil ids from one address
            router.add_contact(Node(os.urandom(20), "127.0.0.200", 4000 + _))
        sybils = [c for c in router.contacts() if c.ip == "127.0.0.200"]
        assert 0 < len(sybils) <= PER_ADDRESS.max_per_prefix_table
        for bucket in router.buckets:
            cached = [*bucket.nodes.values(), *bucket.replacement_nodes.values()]
            assert sum(1 for c in cached if c.ip == "127.0.0.200") <= 2
        assert router.refused >= 200 - PER_ADDRESS.max_per_prefix_table - 2 * len(router.buckets)
        assert router.size() == before + len(sybils)
        # An honest contact from another address still gets in.
        assert router.add_contact(Node(os.urandom(20), "127.0.0.201", 4000))


async def test_hand_over_is_bounded_paced_and_not_inline() -> None:
    settings = DhtSettings(
        rpc_timeout=0.3,
        local_by_port=False,
        prefix_v4=32,
        ksize=4,
        handover_max=5,
        handover_rate=20.0,
        handover_batch=2,
    )
    async with network(2, settings) as nodes:
        holder = nodes[0]
        for _ in range(200):
            key, text = _record()
            holder.storage.put(key, text)
        # An id next to the holder's: the records nearest the newcomer are the holder's to give.
        near_id = holder.node_id[:-1] + bytes([holder.node_id[-1] ^ 1])
        newcomer = DhtNode("127.0.0.40", 0, settings=settings, node_id=near_id)
        await newcomer.start()
        try:
            # The newcomer pings: the answer goes out at once; the newcomer is pinged back
            # before it enters the routing table, and only then is its hand-over queued.
            holder.protocol.rpc_ping(newcomer.address, newcomer.node_id)
            assert holder.protocol.handover_pending() == holder.protocol.handed_over == 0
            await _until(lambda: holder.protocol.handed_over > 0)
            started = time.monotonic()
            assert newcomer.protocol.received["ping"] == 1
            await _until(lambda: holder.protocol.handover_pending() == 0)
            took = time.monotonic() - started
            sent = holder.protocol.handed_over
            assert 0 < sent <= settings.handover_max
            # Paced: batches of 2, 0.1 s apart.
            batches = -(-sent // settings.handover_batch)
            interval = settings.handover_batch / settings.handover_rate
            assert took >= (batches - 1) * interval - 0.02
            await _until(lambda: newcomer.protocol.received["store"] == sent)
            # Every record handed over is one the newcomer is now among the k closest for.
            for key, _text in newcomer.storage:
                assert newcomer.protocol.responsible(key)
            # Meeting it again hands nothing over again.
            holder.protocol.rpc_ping(newcomer.address, newcomer.node_id)
            assert holder.protocol.handover_pending() == 0
        finally:
            await newcomer.stop()


async def test_disjoint_paths_never_share_a_node() -> None:
    settings = DhtSettings(rpc_timeout=0.3, local_by_port=False, prefix_v4=32, ksize=5)
    async with network(16, settings) as nodes:
        asker = nodes[3]
        queried: list[bytes] = []
        original = asker.protocol.call_find_node

        def spy(node_to_ask: Node, node_to_find: Node) -> asyncio.Future[tuple[bool, object]]:
            queried.append(node_to_ask.id)
            return original(node_to_ask, node_to_find)

        asker.protocol.call_find_node = spy  # type: ignore[method-assign]
        target = os.urandom(20)
        result = await lookup(asker.protocol, target)
        assert len(queried) == len(set(queried)) == result.queried > settings.ksize
        expected = sorted(
            (n.node_id for n in nodes if n is not asker), key=lambda i: _dist(i, target)
        )[: settings.ksize]
        assert [n.id for n in result.closest] == expected


async def test_unknown_senders_are_checked_before_they_enter_the_table() -> None:
    async with network(3) as nodes:
        a, b = nodes[0], nodes[1]
        fake = os.urandom(20)
        # A request claiming a new id from b's address (a spoofed source): a pings the address
        # back, b answers with its own id, so the claimed id never enters a's table.
        a.protocol.rpc_ping(b.address, fake)
        await asyncio.sleep(0.05)
        assert all(c.id != fake for c in a.protocol.router.contacts())
        # b's id claimed from another address: the long-lived contact keeps its address.
        a.protocol.rpc_ping(("127.0.0.250", 9), b.node_id)
        await asyncio.sleep(0.05)
        held = [c for c in a.protocol.router.contacts() if c.id == b.node_id]
        assert [(c.ip, c.port) for c in held] == [b.address]
        # A real newcomer answers the check and is admitted.
        newcomer = DhtNode("127.0.0.41", 0, settings=PER_ADDRESS)
        await newcomer.start()
        try:
            a.protocol.rpc_ping(newcomer.address, newcomer.node_id)
            await asyncio.sleep(0.05)
            assert any(c.id == newcomer.node_id for c in a.protocol.router.contacts())
        finally:
            await newcomer.stop()


async def test_store_rate_is_per_source_and_refreshes_are_free() -> None:
    settings = DhtSettings(
        rpc_timeout=0.3, local_by_port=False, prefix_v4=32, store_rate=0.01, store_burst=3
    )
    async with network(1, settings) as nodes:
        proto = nodes[0].protocol
        recs = [_record() for _ in range(5)]
        flooder, other = ("127.0.0.200", 4000), ("127.0.0.201", 4000)
        sender = os.urandom(20)
        assert [proto.rpc_store(flooder, sender, k, v) for k, v in recs[:4]] == [
            True,
            True,
            True,
            False,
        ]
        assert nodes[0].storage.refusals["rate"] == 1
        assert proto.rpc_store(flooder, sender, *recs[0])  # held already: a free refresh
        assert proto.rpc_store(("127.0.0.200", 4001), sender, *recs[4]) is False  # same /32
        assert proto.rpc_store(other, sender, *recs[4])  # another source has its own bucket
