"""Iterative node and value lookups that do not wait out dead peers.

kademlia 2.2.3's spider crawl sends alpha queries per round and waits for the whole round, so each
round costs the slowest (dead) peer's full timeout; it also stops at the first value it sees,
unverified. `Lookup` instead keeps `alpha` queries in flight at all times: a query silent for
longer than the protocol's stall estimate stops counting against alpha (its reply is still used
if it comes), so a dead peer costs a few tens of milliseconds, not a timeout. Once alpha replies
in a row bring nobody closer, it asks all of the k closest not yet asked, plus alpha more in
case some are dead (section 2.3 of the paper), so dead peers stall side by side.

A value lookup verifies every value against the key (each distinct value once) and stops at
`get_quorum` valid answers (every reply that arrived with the last one is used too); the caller
keeps the highest sequence. A lookup that ends with fewer than k answering nodes widens once to
every contact in the routing table before giving up.

Against Sybils (docs/dht-records.md): a lookup takes at most `max_per_prefix_lookup` candidates
from one source (address prefix), so nodes minted near a key by one attacker cannot fill its
k-window, and a value lookup runs `lookup_paths` lookups over disjoint paths (S/Kademlia): the
seeds are dealt out between the paths, no node is queried by two paths and the paths stop
together at `get_quorum` valid answers, so a few malicious nodes on one path cannot hide a
record the others reach. Node lookups (where to store) take one path.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.errors import P2PError
from gateway.p2p.node import Node
from gateway.p2p.protocol import ValidatingProtocol, parse_contacts
from gateway.p2p.records import Record
from gateway.p2p.rpc import RpcReply
from gateway.p2p.sources import Diversity

__all__ = ["Lookup", "LookupResult", "find_nodes", "lookup"]


@dataclass
class Paths:
    """What the paths of one disjoint lookup share: the nodes queried, the valid answers."""

    claimed: set[bytes] = field(default_factory=set)
    answers: int = 0


class _State(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    STALLED = "stalled"
    OK = "ok"
    FAILED = "failed"
    TAKEN = "taken"  # queried by another path of the same disjoint lookup


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
        shared: Paths | None = None,
    ) -> None:
        self.protocol = protocol
        self._shared = shared if shared is not None else Paths()
        self._claimed = self._shared.claimed
        self._diversity = Diversity(protocol.settings, protocol.settings.max_per_prefix_lookup)
        self.settings = protocol.settings
        self.target = Node(target)
        self.verify = verify
        self.quorum = min(self.settings.get_quorum, self.settings.ksize)
        self._cands: list[_Candidate] = []
        self._by_id: dict[bytes, _Candidate] = {}
        self._pending: dict[asyncio.Future[RpcReply], _Candidate] = {}
        self._checked: dict[str, Record | None] = {}
        self.answers = 0  # valid values received from the network
        self._idle = 0  # replies (or stalls) in a row that brought nobody closer
        self._lost = 0  # queries that stalled or failed (peers probably dead)
        self.result = LookupResult()

    def _add(self, nodes: Iterable[Node]) -> None:
        own_id = self.protocol.source_node.id
        for node in nodes:
            if node.id == own_id or node.id in self._by_id or self.protocol.is_dead(node):
                continue
            if not self._diversity.room_for(node):
                continue  # this source has its share of the candidates
            self._diversity.add(node)
            cand = _Candidate(node, self.target.distance_to(node))
            self._by_id[node.id] = cand
            bisect.insort(self._cands, cand)

    def _window(self, extra: int = 0) -> list[_Candidate]:
        """The k (+ extra) closest candidates that have not failed or stalled."""
        size = self.settings.ksize + extra
        out: list[_Candidate] = []
        for cand in self._cands:
            if cand.state in _IN_WINDOW:
                out.append(cand)
                if len(out) == size:
                    break
        return out

    def _active(self) -> int:
        return sum(1 for c in self._pending.values() if c.state is _State.ACTIVE)

    def _quorum_met(self) -> bool:
        return self.verify is not None and self._shared.answers >= self.quorum

    def _launch(self) -> None:
        if self._quorum_met():
            return
        # Section 2.3 of the paper: once a round of alpha answers brought nobody closer, ask
        # all of the k closest not yet asked at once, plus spares for the share of them that is
        # probably dead (recent RPC loss), so dead ones stall side by side, not one by one.
        final = self._idle >= self.settings.alpha
        spares = 0
        if final:
            k = self.settings.ksize
            expected_dead = math.ceil(k * self.protocol.loss_rate)
            spares = min(k, max(expected_dead, self.settings.alpha if self._lost else 0))
        width = self.settings.ksize + spares if final else self.settings.alpha
        room = width - self._active()
        for cand in self._window(spares):
            if room <= 0:
                return
            if cand.state is _State.NEW:
                if cand.node.id in self._claimed:
                    cand.state = _State.TAKEN
                    continue
                self._send(cand)
                room -= 1

    def _send(self, cand: _Candidate) -> None:
        if self.verify is not None:
            future = self.protocol.call_find_value(cand.node, self.target)
        else:
            future = self.protocol.call_find_node(cand.node, self.target)
        self._claimed.add(cand.node.id)
        cand.state = _State.ACTIVE
        cand.sent = time.monotonic()
        self.result.queried += 1
        self._pending[future] = cand

    def _settled(self) -> bool:
        if self._quorum_met():
            return True
        window = self._window()
        if any(c.state in (_State.NEW, _State.ACTIVE) for c in window):
            return False
        answered = sum(1 for c in window if c.state is _State.OK)
        stalled = any(c.state is _State.STALLED for c in self._pending.values())
        # Stalled queries do not hold up a lookup that has its k answers; with fewer, wait.
        return answered >= self.settings.ksize or not stalled

    def _window_ids(self) -> list[bytes]:
        return [c.node.id for c in self._window()]

    def _take(self, cand: _Candidate, reply: RpcReply) -> None:
        before = self._window_ids()
        self._take_reply(cand, reply)
        # Progress means the k closest candidates changed (someone closer turned up).
        self._idle = self._idle + 1 if self._window_ids() == before else 0

    def _take_reply(self, cand: _Candidate, reply: RpcReply) -> None:
        ok, payload = reply
        if not ok:
            if cand.state is not _State.STALLED:
                self._lost += 1
            cand.state = _State.FAILED
            return
        cand.state = _State.OK
        if self.verify is not None and isinstance(payload, dict):
            value = payload.get("value") if len(payload) == 1 else None
            record = self._check(value)
            if record is not None:  # an invalid value is never used
                self.result.values[cand.node.id] = record
                self.answers += 1
                self._shared.answers += 1
            return
        self._add(parse_contacts(payload))

    def _check(self, value: object) -> Record | None:
        """Verify a value once per lookup (close nodes mostly return the same record)."""
        if self.verify is None:
            return None
        key = value if isinstance(value, str) else None
        if key is not None and key in self._checked:
            return self._checked[key]
        try:
            record: Record | None = self.verify(value)
        except P2PError:
            record = None
        if key is not None:
            self._checked[key] = record
        return record

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
                self._idle += 1
                self._lost += 1

    async def run(self, seeds: Iterable[Node]) -> LookupResult:
        self._add(seeds)
        widened = False
        while True:
            self._launch()
            if self._settled():
                answered = sum(1 for c in self._window() if c.state is _State.OK)
                if widened or self._quorum_met() or answered >= self.settings.ksize:
                    break
                # Too few answers: fall back on every contact the routing table knows.
                widened = True
                self._add(self.protocol.router.contacts())
                continue
            if not self._pending:
                break
            await self._wait()
        self.result.closest = self.answered()
        return self.result

    def answered(self) -> list[Node]:
        """The closest candidates that answered so far (at most k)."""
        return [c.node for c in self._window() if c.state is _State.OK]


async def lookup(
    protocol: ValidatingProtocol,
    target: bytes,
    *,
    verify: Callable[[object], Record] | None = None,
    seeds: Iterable[Node] | None = None,
    paths: int | None = None,
) -> LookupResult:
    """`paths` (default `lookup_paths`) lookups of `target` over disjoint paths, merged.

    A value lookup stops when the paths together have `get_quorum` valid answers: a path
    that malicious nodes lead astray cannot produce a valid value, only fail to find one.
    """
    paths = paths or protocol.settings.lookup_paths
    goal = Node(target)
    if seeds is None:
        seeds = protocol.router.find_neighbors(goal)
    ordered = sorted(seeds, key=goal.distance_to)
    shared = Paths()
    lookups = [Lookup(protocol, target, verify=verify, shared=shared) for _ in range(paths)]
    if paths == 1:
        return await lookups[0].run(ordered)
    tasks = [
        asyncio.create_task(lk.run(ordered[i::paths]), name=f"dht-lookup:{target.hex()}:{i}")
        for i, lk in enumerate(lookups)
    ]
    pending: set[asyncio.Task[LookupResult]] = set(tasks)
    try:
        while pending:
            _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if verify is not None and shared.answers >= lookups[0].quorum:
                break  # quorum: the other paths' answers would not change the outcome
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    for task in tasks:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            raise exc
    merged = LookupResult()
    answered: dict[bytes, Node] = {}
    for lk in lookups:
        merged.values.update(lk.result.values)
        merged.queried += lk.result.queried
        for node in lk.answered():
            answered.setdefault(node.id, node)
    merged.closest = sorted(answered.values(), key=goal.distance_to)[: protocol.settings.ksize]
    return merged


async def find_nodes(protocol: ValidatingProtocol, target: bytes) -> list[Node]:
    """The k closest live nodes to `target` (excluding this node).

    One path: placing a record needs the k closest, and the per-source candidate limit keeps
    Sybils to a few of them; hiding a record is what the value lookup's disjoint paths stop.
    """
    return (await lookup(protocol, target, paths=1)).closest
