"""Section 2.5 of the Kademlia paper, bounded: records handed to a newly seen contact.

A node that meets a new contact sends it the records it should now hold. kademlia does that
inline, for every record, whenever a contact looks new; after a flood of valid records that
was about 128 STOREs to every newcomer within seconds. Here the records are picked once per
contact and `refresh_interval`, at most `handover_max` of them, and sent by the node's
`dht-handover` task in batches at `handover_rate` at most, never from the datagram handler.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from gateway.p2p.node import Node

if TYPE_CHECKING:
    from gateway.p2p.protocol import ValidatingProtocol

__all__ = ["HandOver"]

# Nodes remembered as already welcomed (records handed over); a memory bound.
MAX_WELCOMED: Final = 4096
# Hand-over STOREs queued at most (all newcomers together); more are dropped, not queued.
MAX_HANDOVER_QUEUE: Final = 1024
# Records looked at per newcomer to pick the `handover_max` it should hold (a CPU bound).
HANDOVER_SCAN_FACTOR: Final = 4


class HandOver:
    """The hand-over queue of one protocol and the loop that drains it."""

    def __init__(self, protocol: ValidatingProtocol) -> None:
        self.protocol = protocol
        self.settings = protocol.settings
        self._queue: deque[tuple[Node, bytes, str]] = deque()
        self._wake = asyncio.Event()
        self._welcomed: dict[bytes, float] = {}
        self.sent = 0

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, node: Node) -> None:
        """A contact was admitted to the routing table: queue its records, once."""
        if self._first_meeting(node):
            self._pick(node)

    def _first_meeting(self, node: Node) -> bool:
        """True once per node and `refresh_interval`.

        A node parked in a full bucket's replacement cache looks new to kademlia at every
        message, which would rescan the storage (and resend records) each time.
        """
        now = time.monotonic()
        seen = self._welcomed.get(node.id)
        if seen is not None and now - seen < self.settings.refresh_interval:
            return False
        self._welcomed[node.id] = now
        if len(self._welcomed) > MAX_WELCOMED:
            for old in list(self._welcomed)[: MAX_WELCOMED // 4]:
                del self._welcomed[old]
        return True

    def _pick(self, node: Node) -> None:
        """Section 2.5 of the paper: queue on a new node the records it should now hold.

        We send a record if we are the closest node to its key that we know of and the new node
        is among the k closest (kademlia hashes the already-hashed key again here, so it picks
        the wrong neighbours). At most `handover_max` records, the closest to the new node
        first, out of `HANDOVER_SCAN_FACTOR` times as many looked at; the hand-over task sends
        them paced, so a join costs each neighbour a bounded number of datagrams.
        """
        contacts = [c for c in self.protocol.router.contacts() if c.id != node.id]
        k = self.protocol.router.ksize
        limit = self.settings.handover_max
        nearest = heapq.nsmallest(
            limit * HANDOVER_SCAN_FACTOR,
            self.protocol.storage,
            key=lambda item: int.from_bytes(item[0], "big") ^ node.long_id,
        )
        queued = 0
        for key, text in nearest:
            if queued >= limit or len(self._queue) >= MAX_HANDOVER_QUEUE:
                break
            target = int.from_bytes(key, "big")
            mine = self.protocol.source_node.long_id ^ target
            theirs = node.long_id ^ target
            distances = [c.long_id ^ target for c in contacts]
            if distances and mine >= min(distances):
                continue  # a closer node knows it and will hand it over
            if sum(1 for d in distances if d < theirs) + (mine < theirs) >= k:
                continue  # the new node is not among the k closest
            self._queue.append((node, key, text))
            queued += 1
        if queued:
            self._wake.set()

    async def run(self) -> None:
        """The hand-over task: send queued records in batches at `handover_rate` at most."""
        s = self.settings
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            for _ in range(min(s.handover_batch, len(self._queue))):
                node, key, text = self._queue.popleft()
                self.protocol.call_store(node, key, text)
                self.sent += 1
            await asyncio.sleep(s.handover_batch / s.handover_rate)
