"""The DHT node's storage: it keeps only valid signed records and cannot be squeezed out.

Every write (an RPC store from a peer, a local store, a transfer to a new neighbour) goes
through `RecordStorage.put`, which verifies the record against the key it is filed under and
refuses invalid, expired and older records. Reads never return an expired record.

Validity is cheap (anyone can mint keys), so capacity is shared out, not first come first
served (docs/dht-records.md, "Floods and Sybils"):

* a source (address prefix, `gateway.p2p.sources`) may have introduced at most
  `max_per_source` of the records held; a key has one record by construction;
* when full, a new record replaces the held record that ranks worst, only if it ranks better:
  records whose key this node is among the k closest for (it is responsible for them) rank
  before the others, then the closer to this node's id the better. A record the node is
  responsible for is never dropped for a farther one.

Both checks run before the record is parsed, so a refused flood costs no signature check.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.errors import P2PError
from gateway.p2p.records import Record, RecordCache

__all__ = ["DEFAULT_MAX_RECORDS", "LOCAL_SOURCE", "RecordStorage"]

log = logging.getLogger(__name__)

# Records one node keeps at most: a bound on memory whatever peers send (about 4 MB at 4 KiB).
DEFAULT_MAX_RECORDS = 1000
# The source of records stored by this node itself (publish, lookups' local copy): no quota.
LOCAL_SOURCE = "local"
# Expired records are swept at most this often while the storage is full (a sweep scans all).
CULL_EVERY = 1.0

Rank = tuple[int, int]  # (0 if responsible else 1, XOR distance to this node); lower is kept


@dataclass
class _Entry:
    record: Record
    stored_at: float  # monotonic time of the last accepted store (republish age)
    source: str
    rank: Rank


class RecordStorage:
    """Verified `Record`s keyed by sha1(id), as a mapping with checked writes; see module doc."""

    def __init__(
        self,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_per_source: int | None = None,
        node_id: bytes = bytes(20),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._data: dict[bytes, _Entry] = {}
        self._max = max_records
        self._per_source = max_per_source if max_per_source is not None else max_records
        self._own = int.from_bytes(node_id, "big")
        self._clock = clock
        self._heap: list[tuple[int, int, bytes]] = []  # (-flag, -distance, key), lazy deletes
        self._sources: Counter[str] = Counter()
        self._last_cull = float("-inf")
        self.responsible: Callable[[bytes], bool] = lambda _key: True
        """Whether this node is among the k closest for a key (set by the protocol)."""
        self.verified = RecordCache()
        self.refused = 0  # stores refused so far (for tests and metrics)
        self.refusals: Counter[str] = Counter()  # by reason: invalid, stale, quota, far
        self.evicted = 0

    def set_node_id(self, node_id: bytes) -> None:
        self._own = int.from_bytes(node_id, "big")

    # -- writes -------------------------------------------------------------------------------

    def rank(self, key: bytes) -> Rank:
        """Eviction rank of a key: responsible keys first, then by distance to this node."""
        return (0 if self.responsible(key) else 1, int.from_bytes(key, "big") ^ self._own)

    def _refuse(self, reason: str) -> bool:
        self.refused += 1
        self.refusals[reason] += 1
        return False

    def put(self, key: object, value: object, *, source: str = LOCAL_SOURCE) -> bool:
        """Store `value` under the 20-byte digest `key` if it is a valid, newer record."""
        if not isinstance(key, bytes) or len(key) != 20:
            return self._refuse("invalid")
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                return self._refuse("invalid")
        now = self._clock()
        current = self._live(key, now)
        if current is not None and value == current.record.text:
            current.stored_at = time.monotonic()  # same record again: a republish
            return True
        rank: Rank | None = None
        if current is None:
            if source != LOCAL_SOURCE and self._sources[source] >= self._per_source:
                return self._refuse("quota")
            if len(self._data) >= self._max:
                self._cull_full()
            if len(self._data) >= self._max:
                rank = self.rank(key)
                worst = self._worst()
                if worst is not None and rank >= self._data[worst].rank:
                    return self._refuse("far")
        try:
            record = self.verified.verify(value, key_digest=key, now=now)
        except P2PError as exc:
            log.debug("refused store under %s: %s", key.hex(), exc)
            return self._refuse("invalid")
        if current is not None:
            if not record.newer_than(current.record):
                return self._refuse("stale")
            current.record, current.stored_at = record, time.monotonic()
            return True
        if rank is not None:
            self._evict_worst()
        self._insert(key, _Entry(record, time.monotonic(), source, rank or self.rank(key)))
        return True

    def _insert(self, key: bytes, entry: _Entry) -> None:
        self._data[key] = entry
        self._sources[entry.source] += 1
        heapq.heappush(self._heap, (-entry.rank[0], -entry.rank[1], key))

    def _remove(self, key: bytes) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._sources[entry.source] -= 1
            if self._sources[entry.source] <= 0:
                del self._sources[entry.source]

    def _worst(self) -> bytes | None:
        """The held key that ranks worst (drops stale heap entries on the way)."""
        while self._heap:
            flag, dist, key = self._heap[0]
            entry = self._data.get(key)
            if entry is not None and entry.rank == (-flag, -dist):
                return key
            heapq.heappop(self._heap)
        return None

    def _evict_worst(self) -> None:
        worst = self._worst()
        if worst is not None:
            heapq.heappop(self._heap)
            self._remove(worst)
            self.evicted += 1

    def __setitem__(self, key: object, value: object) -> None:
        """The mapping's write path: same checks as `put`, a refusal is silent."""
        self.put(key, value)

    def clear(self) -> None:
        self._data.clear()
        self._heap.clear()
        self._sources.clear()

    def cull(self) -> None:
        """Drop expired records."""
        now = self._clock()
        for k in [k for k, e in self._data.items() if e.record.exp <= now]:
            self._remove(k)
        if len(self._heap) > 2 * len(self._data) + 64:  # lazy deletions piled up
            self._heap = [(-e.rank[0], -e.rank[1], k) for k, e in self._data.items()]
            heapq.heapify(self._heap)

    def _cull_full(self) -> None:
        mono = time.monotonic()
        if mono - self._last_cull >= CULL_EVERY:
            self._last_cull = mono
            self.cull()

    # -- reads --------------------------------------------------------------------------------

    def _live(self, key: bytes, now: float) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.record.exp <= now:
            self._remove(key)
            return None
        return entry

    def holds(self, key: object, value: object) -> bool:
        """Whether `value` is exactly the record held under `key`."""
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return isinstance(key, bytes) and isinstance(value, str) and self.get(key) == value

    def record(self, key: bytes) -> Record | None:
        """The stored, unexpired record under `key`, or None."""
        entry = self._live(key, self._clock())
        return entry.record if entry is not None else None

    def get(self, key: object, default: str | None = None) -> str | None:
        if not isinstance(key, bytes):
            return default
        rec = self.record(key)
        return rec.text if rec is not None else default

    def __getitem__(self, key: bytes) -> str:
        rec = self.record(key)
        if rec is None:
            raise KeyError(key)
        return rec.text

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.record(key) is not None

    def __len__(self) -> int:
        self.cull()
        return len(self._data)

    def __iter__(self) -> Iterator[tuple[bytes, str]]:
        self.cull()
        return iter([(k, e.record.text) for k, e in self._data.items()])

    def records(self) -> list[Record]:
        self.cull()
        return [e.record for e in self._data.values()]

    def per_source(self) -> dict[str, int]:
        """Records held per source that introduced them (quota accounting)."""
        return dict(self._sources)

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, str]]:
        """(key, text) of records last stored more than `seconds_old` seconds ago."""
        self.cull()
        limit = time.monotonic() - seconds_old
        return [(k, e.record.text) for k, e in self._data.items() if e.stored_at <= limit]
