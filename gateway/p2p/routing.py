"""kademlia's routing table with an exhaustive neighbour search and a diversity filter."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from kademlia.node import Node
from kademlia.routing import RoutingTable

from gateway.p2p.settings import DhtSettings
from gateway.p2p.sources import Diversity

if TYPE_CHECKING:
    from gateway.p2p.protocol import ValidatingProtocol

__all__ = ["ValidatingRouter"]


class ValidatingRouter(RoutingTable):  # type: ignore[misc]  # kademlia is untyped
    """kademlia's routing table with an exhaustive neighbour search, owned head pings and a
    diversity filter: few contacts per source (address prefix) per bucket and per table."""

    def __init__(
        self,
        protocol: ValidatingProtocol | None,
        ksize: int,
        node: Node,
        settings: DhtSettings | None = None,
    ) -> None:
        if settings is None:
            settings = protocol.settings if protocol is not None else DhtSettings(ksize=ksize)
        self.settings: DhtSettings = settings
        self.refused = 0  # contacts refused by the diversity filter (metrics, tests)
        super().__init__(protocol, ksize, node)

    def find_neighbors(
        self, node: Node, k: int | None = None, exclude: Node | None = None
    ) -> list[Node]:
        """The `k` known contacts closest to `node` (XOR), over every bucket."""
        k = k or self.ksize
        target = node.long_id
        self.buckets[self.get_bucket_for(node)].touch_last_updated()  # as kademlia: not lonely
        contacts = [n for bucket in self.buckets for n in bucket.nodes.values()]
        if exclude is not None:
            home = (exclude.ip, exclude.port)
            contacts = [n for n in contacts if (n.ip, n.port) != home]
        closest = heapq.nsmallest(k + 1, contacts, key=lambda n: n.long_id ^ target)
        return [n for n in closest if n.long_id != target][:k]

    def diverse(self, node: Node, bucket: Any) -> bool:
        """Whether `node`'s source has room in `bucket` (cache included) and in the table."""
        s = self.settings
        in_bucket = [*bucket.nodes.values(), *bucket.replacement_nodes.values()]
        if not Diversity(s, s.max_per_prefix_bucket, in_bucket).room_for(node):
            return False
        return Diversity(s, s.max_per_prefix_table, self.contacts()).room_for(node)

    def add_contact(self, node: Node) -> bool:
        """Add or refresh a contact; True if it is in the table (not only in the cache).

        A new contact whose source already has its share of the bucket or of the table is
        refused (not even cached). Kademlia's own rule then prefers long-lived contacts: a full
        bucket keeps its contacts and only pings the least recently seen, whose eviction on
        timeout promotes the newest cached contact.
        """
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        known = node.id in bucket.nodes or node.id in bucket.replacement_nodes
        if not known and not self.diverse(node, bucket):
            self.refused += 1
            return False
        if bucket.add_node(node):
            return True
        # Split per section 4.2 of the paper; otherwise ping the least recently seen contact:
        # if it is dead its eviction promotes this node from the replacement cache.
        if bucket.has_in_range(self.node) or bucket.depth() % 5 != 0:
            self.split_bucket(index)
            return self.add_contact(node)
        self.protocol.call_ping(bucket.head())  # a future; its timeout evicts the head
        return False

    def contacts(self) -> list[Node]:
        return [n for bucket in self.buckets for n in bucket.nodes.values()]

    def size(self) -> int:
        return sum(len(bucket) for bucket in self.buckets)
