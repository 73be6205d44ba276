"""The node's server: its UDP socket, protocol and storage, and storing and finding records.

`ValidatingServer` is what `DhtNode` (dht.py) runs on: `store_record` stores a verified record on
the k closest nodes and counts the nodes that really accepted it; `find_record` runs the
validating lookup (crawl.py) and repairs stale copies; `bootstrap` joins the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gateway.errors import P2PError
from gateway.p2p.crawl import Lookup, find_nodes, lookup
from gateway.p2p.node import ID_LEN, Address, Node, random_id
from gateway.p2p.protocol import ValidatingProtocol
from gateway.p2p.records import Record, dht_key_digest, verify_record, verify_unbound
from gateway.p2p.settings import DhtSettings
from gateway.p2p.storage import RecordStorage

__all__ = ["ValidatingServer"]

log = logging.getLogger(__name__)


class ValidatingServer:
    """One node's socket, protocol and storage, and the operations built on lookups.

    The entry points of kademlia 2.2.3's `Server` are kept, validated: `set()` returns True only
    if some node really stored the value, `get()` returns only a verified record's text.
    Maintenance is not scheduled here; `DhtNode` owns it as cancellable tasks.
    """

    def __init__(self, settings: DhtSettings, node_id: bytes | None = None) -> None:
        self.settings = settings
        self.records = RecordStorage(
            max_records=settings.max_records, max_per_source=settings.max_records_per_source
        )
        self.node = Node(node_id or random_id())
        self.transport: asyncio.DatagramTransport | None = None
        self.protocol: ValidatingProtocol | None = None

    async def listen(self, port: int, *, interface: str) -> int:
        """Bind the UDP socket to `interface`:`port`; returns the port bound."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: ValidatingProtocol(self.node, self.records, self.settings),
            local_addr=(interface, port),
        )
        self.transport, self.protocol = transport, protocol
        return int(transport.get_extra_info("sockname")[1])

    def stop(self) -> None:
        """Close the socket and fail outstanding RPCs (the protocol stays for its counters)."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.protocol is not None:
            self.protocol.close()

    @property
    def proto(self) -> ValidatingProtocol:
        if self.protocol is None:
            raise P2PError("the DHT node is not listening", code="not_started")
        return self.protocol

    # -- kademlia's Server API, validated ------------------------------------------------------

    async def bootstrap(self, addrs: Sequence[Address]) -> list[Node]:
        """Ping `addrs`, then look up our own id through those that answered (the join)."""
        replies = await asyncio.gather(*(self.proto.ping_address(a) for a in addrs))
        seeds = []
        for addr, (ok, node_id) in zip(addrs, replies, strict=True):
            if ok and isinstance(node_id, bytes) and len(node_id) == ID_LEN:
                node = Node(node_id, addr[0], addr[1])
                self.proto.welcome_if_new(node)
                seeds.append(node)
        if not seeds:
            log.warning("no DHT bootstrap contact answered (%s)", list(addrs))
            return []
        return (await Lookup(self.proto, self.node.id).run(seeds)).closest

    async def get(self, key: str) -> str | None:
        record = await self.find_record(key)
        return record.text if record is not None else None

    async def set(self, key: str, value: object) -> bool:
        try:
            record = verify_record(value, key=key)
        except P2PError as exc:
            log.info("refusing to set an invalid record under %s: %s", key, exc)
            return False
        return await self.store_record(record) > 0

    async def set_digest(self, dkey: bytes, value: object) -> bool:
        try:
            record = verify_record(value, key_digest=dkey)
        except P2PError as exc:
            log.info("refusing to set an invalid record under %s: %s", dkey.hex(), exc)
            return False
        return await self.store_record(record) > 0

    # -- records --------------------------------------------------------------------------------

    async def store_record(self, value: object) -> int:
        """Store a record on the k closest nodes; returns how many really accepted it.

        `value` is the record text (verified here) or an already verified `Record`.
        """
        record = value if isinstance(value, Record) else verify_unbound(value)
        dkey = record.dkey
        nodes = await find_nodes(self.proto, dkey)
        target = Node(dkey)
        # The k closest nodes, this one included if it is among them (and not a client: its
        # copy is not where others look).
        mine = [] if self.proto.client_mode else [self.node]
        closest = sorted([*nodes, *mine], key=target.distance_to)[: self.settings.ksize]
        remote = [n for n in closest if n.id != self.node.id]
        accepted = 0
        if len(remote) < len(closest) and self.records.put(dkey, record.text):
            accepted += 1
        replies = await asyncio.gather(
            *(self.proto.call_store(n, dkey, record.text) for n in remote)
        )
        accepted += sum(1 for ok, stored in replies if ok and stored is True)
        return accepted

    async def find_record(self, key: str) -> Record | None:
        """The valid record with the highest seq the network holds under `key`, or None."""
        dkey = dht_key_digest(key)

        def check(value: object) -> Record:
            return self.records.verified.verify(value, key=key)

        result = await lookup(self.proto, dkey, verify=check)
        local = self.records.record(dkey)
        if local is not None:
            result.values[self.node.id] = local
        best = result.best()
        if best is not None:
            self._repair(best, result.values, result.closest)
        return best

    def _repair(self, best: Record, values: dict[bytes, Record], closest: list[Node]) -> None:
        """Send the best record to the answering nodes that returned an older one.

        Fire and forget: the store futures settle, and update routing, on their own. (Nodes
        that lacked the record get it from the owner's republish and from the hand-over to new
        neighbours; kademlia's caching on the closest node without it is not repeated here.)
        """
        for node in closest:
            held = values.get(node.id)
            if held is not None and best.newer_than(held):
                self.proto.call_store(node, best.dkey, best.text)
