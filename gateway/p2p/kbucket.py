"""The routing table: Kademlia k-buckets with an exhaustive neighbour search and a diversity filter.

Buckets cover contiguous ranges of the id space and split as in section 4.2 of the Kademlia paper
(a full bucket splits if it covers this node's own id or its depth is not a multiple of 5). Each
bucket keeps at most k contacts, least recently seen first, and a replacement cache of 5 k. The
rules added to the paper's (docs/dht-records.md, "Routing tables and node ids"):

* few contacts per source (address prefix, `gateway.p2p.sources`): `max_per_prefix_bucket` per
  bucket, replacement cache included, and `max_per_prefix_table` in the whole table; a contact
  over either limit is refused, not even cached;
* `find_neighbors` scans every bucket (a traversal that stops at an end of the bucket list past
  empty buckets returns too few contacts or none);
* a full bucket's least recently seen contact is pinged through the `ping` callback (the
  protocol's RPC, whose timeout evicts it and so promotes the newest cached contact).
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from gateway.p2p.node import ID_BITS, Node
from gateway.p2p.settings import DhtSettings
from gateway.p2p.sources import Diversity

__all__ = ["KBucket", "RoutingTable"]

# Replacement cache of a bucket, in multiples of k (the value kademlia 2.2.3 used).
REPLACEMENT_FACTOR: Final = 5
# A full bucket that does not cover this node's id splits unless its depth is a multiple of
# this (section 4.2 of the paper; kademlia 2.2.3's choice of b).
SPLIT_DEPTH_MODULUS: Final = 5


class KBucket:
    """Contacts whose ids lie in `range` (inclusive), least recently seen first."""

    def __init__(self, low: int, high: int, ksize: int) -> None:
        self.range = (low, high)
        self.ksize = ksize
        self.nodes: OrderedDict[bytes, Node] = OrderedDict()
        self.replacement_nodes: OrderedDict[bytes, Node] = OrderedDict()
        self.max_replacement_nodes = ksize * REPLACEMENT_FACTOR
        self.last_updated = time.monotonic()

    def touch_last_updated(self) -> None:
        self.last_updated = time.monotonic()

    def split(self) -> tuple[KBucket, KBucket]:
        """Two buckets covering the two halves of this one's range, contacts dealt out."""
        low, high = self.range
        midpoint = (low + high) // 2
        one = KBucket(low, midpoint, self.ksize)
        two = KBucket(midpoint + 1, high, self.ksize)
        for node in [*self.nodes.values(), *self.replacement_nodes.values()]:
            (one if node.long_id <= midpoint else two).add_node(node)
        return one, two

    def remove_node(self, node: Node) -> None:
        """Forget a contact; if it was live, promote the newest cached contact."""
        self.replacement_nodes.pop(node.id, None)
        if self.nodes.pop(node.id, None) is not None and self.replacement_nodes:
            promoted_id, promoted = self.replacement_nodes.popitem()
            self.nodes[promoted_id] = promoted

    def has_in_range(self, node: Node) -> bool:
        return self.range[0] <= node.long_id <= self.range[1]

    def is_new_node(self, node: Node) -> bool:
        return node.id not in self.nodes

    def add_node(self, node: Node) -> bool:
        """Add or refresh a contact; False if the bucket is full (then it is cached)."""
        if node.id in self.nodes:
            self.nodes.move_to_end(node.id)
            self.nodes[node.id] = node
            return True
        if len(self.nodes) < self.ksize:
            self.nodes[node.id] = node
            return True
        self.replacement_nodes.pop(node.id, None)
        self.replacement_nodes[node.id] = node
        while len(self.replacement_nodes) > self.max_replacement_nodes:
            self.replacement_nodes.popitem(last=False)
        return False

    def depth(self) -> int:
        """Length of the id prefix (in bits) that every live contact shares."""
        ids = [n.long_id for n in self.nodes.values()]
        if not ids:
            return 0
        differ = 0
        for other in ids[1:]:
            differ |= ids[0] ^ other
        return ID_BITS - differ.bit_length()

    def head(self) -> Node:
        """The least recently seen contact."""
        return next(iter(self.nodes.values()))

    def __len__(self) -> int:
        return len(self.nodes)


class RoutingTable:
    """This node's k-buckets, with the diversity rules of the module doc."""

    def __init__(
        self,
        node: Node,
        settings: DhtSettings,
        ping: Callable[[Node], object] | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.ksize = settings.ksize
        self.ping = ping
        """Called with a full bucket's head; None: no pings (a table outside a protocol)."""
        self.refused = 0  # contacts refused by the diversity filter (metrics, tests)
        self.buckets: list[KBucket] = []
        self._highs: list[int] = []  # each bucket's upper bound, for the bisection
        self.flush()

    def flush(self) -> None:
        self.buckets = [KBucket(0, 2**ID_BITS, self.ksize)]
        self._highs = [2**ID_BITS]

    def split_bucket(self, index: int) -> None:
        one, two = self.buckets[index].split()
        self.buckets[index : index + 1] = [one, two]
        self._highs[index : index + 1] = [one.range[1], two.range[1]]

    def get_bucket_for(self, node: Node) -> int:
        """Index of the bucket whose range holds `node`'s id."""
        return min(bisect.bisect_left(self._highs, node.long_id), len(self.buckets) - 1)

    def bucket_for(self, node: Node) -> KBucket:
        return self.buckets[self.get_bucket_for(node)]

    def is_new_node(self, node: Node) -> bool:
        return self.bucket_for(node).is_new_node(node)

    def remove_contact(self, node: Node) -> None:
        self.bucket_for(node).remove_node(node)

    def diverse(self, node: Node, bucket: KBucket) -> bool:
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
        if bucket.has_in_range(self.node) or bucket.depth() % SPLIT_DEPTH_MODULUS != 0:
            self.split_bucket(index)
            return self.add_contact(node)
        if self.ping is not None:
            self.ping(bucket.head())  # an RPC future; its timeout evicts the head
        return False

    def find_neighbors(
        self, node: Node, k: int | None = None, exclude: Node | None = None
    ) -> list[Node]:
        """The `k` known contacts closest to `node` (XOR), over every bucket; never `node`
        itself nor a contact at `exclude`'s address."""
        k = k or self.ksize
        target = node.long_id
        self.bucket_for(node).touch_last_updated()  # a lookup in its range: not lonely
        contacts = self.contacts()
        if exclude is not None:
            contacts = [n for n in contacts if not n.same_home_as(exclude)]
        closest = heapq.nsmallest(k + 1, contacts, key=lambda n: n.long_id ^ target)
        return [n for n in closest if n.long_id != target][:k]

    def contacts(self) -> list[Node]:
        return [n for bucket in self.buckets for n in bucket.nodes.values()]

    def size(self) -> int:
        return sum(len(bucket) for bucket in self.buckets)
