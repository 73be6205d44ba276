"""Iterative node and value lookups that do not wait out dead peers.

kademlia's spider crawl sends alpha queries per round and waits for the whole round, so each
round costs the slowest (dead) peer's full timeout; it also stops at the first value it sees,
unverified. `Lookup` instead keeps `alpha` queries in flight at all times: a query silent for
longer than the protocol's stall estimate stops counting against alpha (its reply is still used
if it comes), so a dead peer costs a few tens of milliseconds, not a timeout. A value lookup
verifies every value against the key and stops after `get_quorum` valid answers; the caller
keeps the highest sequence. When the lookup ends with fewer than k answering nodes it widens
once to every contact in the routing table before giving up.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kademlia.node import Node

from gateway.errors import P2PError
from gateway.p2p.protocol import RpcReply, ValidatingProtocol, parse_contacts
from gateway.p2p.records import Record

__all__ = ["Lookup", "LookupResult", "find_nodes"]


class _State(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    STALLED = "stalled"
    OK = "ok"
    FAILED = "failed"


_IN_WINDOW = (_State.NEW, _State.ACTIVE, _State.OK)


@dataclass
class _Candidate:
    node: Node
    distance: int
    state: _State = _State.NEW
    sent: float = 0.0

    def __lt__(self, other: _Candidate) -> bool:
        return self.distance < other.distance


@dataclass
class LookupResult:
    """What a lookup learnt: the closest answering nodes and the valid values seen."""

    closest: list[Node] = field(default_factory=list)
    """Nodes that answered, closest to the target first, at most k."""
    values: dict[bytes, Record] = field(default_factory=dict)
    """Valid record returned by each node (by node id)."""
    queried: int = 0
    """RPCs sent."""

    def best(self) -> Record | None:
        """The record with the highest sequence among the valid values."""
        return max(self.values.values(), key=Record.order, default=None)


class Lookup:
    """One iterative lookup of `target` (a 20-byte key) on `protocol`'s network."""

    def __init__(
        self,
        protocol: ValidatingProtocol,
        target: bytes,
        *,
        verify: Callable[[object], Record] | None = None,
    ) -> None:
        self.protocol = protocol
        self.settings = protocol.settings
        self.target = Node(target)
        self.verify = verify
        self.quorum = min(self.settings.get_quorum, self.settings.ksize)
        self._cands: list[_Candidate] = []
        self._by_id: dict[bytes, _Candidate] = {}
        self._pending: dict[asyncio.Future[RpcReply], _Candidate] = {}
        self.result = LookupResult()

    def _add(self, nodes: Iterable[Node]) -> None:
        own_id = self.protocol.source_node.id
        for node in nodes:
            if node.id == own_id or node.id in self._by_id or self.protocol.is_dead(node):
                continue
            cand = _Candidate(node, self.target.distance_to(node))
            self._by_id[node.id] = cand
            bisect.insort(self._cands, cand)

    def _window(self) -> list[_Candidate]:
        """The k closest candidates that have not failed or stalled."""
        out: list[_Candidate] = []
        for cand in self._cands:
            if cand.state in _IN_WINDOW:
                out.append(cand)
                if len(out) == self.settings.ksize:
                    break
        return out

    def _active(self) -> int:
        return sum(1 for c in self._pending.values() if c.state is _State.ACTIVE)

    def _launch(self) -> None:
        room = self.settings.alpha - self._active()
        for cand in self._window():
            if room <= 0:
                return
            if cand.state is _State.NEW:
                self._send(cand)
                room -= 1

    def _send(self, cand: _Candidate) -> None:
        if self.verify is not None:
            future = self.protocol.call_find_value(cand.node, self.target)
        else:
            future = self.protocol.call_find_node(cand.node, self.target)
        cand.state = _State.ACTIVE
        cand.sent = time.monotonic()
        self.result.queried += 1
        self._pending[future] = cand

    def _settled(self) -> bool:
        if self.verify is not None and len(self.result.values) >= self.quorum:
            return True
        window = self._window()
        if any(c.state in (_State.NEW, _State.ACTIVE) for c in window):
            return False
        answered = sum(1 for c in window if c.state is _State.OK)
        stalled = any(c.state is _State.STALLED for c in self._pending.values())
        # Stalled queries do not hold up a lookup that has its k answers; with fewer, wait.
        return answered >= self.settings.ksize or not stalled

    def _take(self, cand: _Candidate, reply: RpcReply) -> None:
        ok, payload = reply
        if not ok:
            cand.state = _State.FAILED
            return
        cand.state = _State.OK
        if self.verify is not None and isinstance(payload, dict):
            value = payload.get("value") if len(payload) == 1 else None
            try:
                record = self.verify(value)
            except P2PError:
                return  # an invalid value is never used; the peer gave no contacts either
            self.result.values[cand.node.id] = record
            return
        self._add(parse_contacts(payload))

    async def _wait(self) -> None:
        stall = self.protocol.timeouts.stall_after
        now = time.monotonic()
        active = [c.sent + stall - now for c in self._pending.values() if c.state is _State.ACTIVE]
        timeout = max(0.0, min(active)) if active else None
        done, _ = await asyncio.wait(
            set(self._pending), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for future in done:
            self._take(self._pending.pop(future), future.result())
        now = time.monotonic()
        for cand in self._pending.values():
            if cand.state is _State.ACTIVE and now - cand.sent >= stall:
                cand.state = _State.STALLED

    async def run(self, seeds: Iterable[Node]) -> LookupResult:
        self._add(seeds)
        widened = False
        while True:
            self._launch()
            if self._settled():
                answered = sum(1 for c in self._window() if c.state is _State.OK)
                quorum_met = self.verify is not None and len(self.result.values) >= self.quorum
                if widened or quorum_met or answered >= self.settings.ksize:
                    break
                # Too few answers: fall back on every contact the routing table knows.
                widened = True
                self._add(self.protocol.router.contacts())
                continue
            if not self._pending:
                break
            await self._wait()
        self.result.closest = [c.node for c in self._window() if c.state is _State.OK]
        return self.result


async def find_nodes(protocol: ValidatingProtocol, target: bytes) -> list[Node]:
    """The k closest live nodes to `target` (excluding this node)."""
    seeds = protocol.router.find_neighbors(Node(target))
    result = await Lookup(protocol, target).run(seeds)
    return result.closest
