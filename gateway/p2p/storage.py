"""A kademlia storage that keeps only valid signed records, newest sequence first.

Every write (an RPC store from a peer, a local store, a transfer to a new neighbour) goes
through `RecordStorage.put`, which verifies the record against the key it is filed under and
refuses invalid, expired and older records. Reads never return an expired record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kademlia.storage import IStorage

from gateway.errors import P2PError
from gateway.p2p.records import Record, verify_record

__all__ = ["DEFAULT_MAX_RECORDS", "RecordStorage"]

log = logging.getLogger(__name__)

# Records one node keeps at most: a bound on memory whatever peers send (about 4 MB at 4 KiB).
DEFAULT_MAX_RECORDS = 1000


@dataclass
class _Entry:
    record: Record
    stored_at: float  # monotonic time of the last accepted store (republish age)


class RecordStorage(IStorage):  # type: ignore[misc]  # kademlia is untyped
    """kademlia `IStorage` holding verified `Record`s keyed by sha1(id)."""

    def __init__(
        self,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._data: dict[bytes, _Entry] = {}
        self._max = max_records
        self._clock = clock
        self.refused = 0  # stores refused so far (for tests and metrics)

    # -- writes -------------------------------------------------------------------------------

    def put(self, key: object, value: object) -> bool:
        """Store `value` under the 20-byte digest `key` if it is a valid, newer record."""
        if not isinstance(key, bytes) or len(key) != 20:
            self.refused += 1
            return False
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                self.refused += 1
                return False
        now = self._clock()
        current = self._live(key, now)
        if current is not None and value == current.record.text:
            current.stored_at = time.monotonic()  # same record again: a republish
            return True
        try:
            record = verify_record(value, key_digest=key, now=now)
        except P2PError as exc:
            log.debug("refused store under %s: %s", key.hex(), exc)
            self.refused += 1
            return False
        if current is not None and not record.newer_than(current.record):
            log.debug(
                "refused store under %s: seq %d <= %d", key.hex(), record.seq, current.record.seq
            )
            self.refused += 1
            return False
        if current is None and len(self._data) >= self._max:
            self.cull()
            if len(self._data) >= self._max:
                self.refused += 1
                return False
        self._data[key] = _Entry(record, time.monotonic())
        return True

    def __setitem__(self, key: object, value: object) -> None:
        """kademlia's write path: same checks as `put`, a refusal is silent."""
        self.put(key, value)

    def clear(self) -> None:
        self._data.clear()

    def cull(self) -> None:
        """Drop expired records."""
        now = self._clock()
        for k in [k for k, e in self._data.items() if e.record.exp <= now]:
            del self._data[k]

    # -- reads --------------------------------------------------------------------------------

    def _live(self, key: bytes, now: float) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.record.exp <= now:
            del self._data[key]
            return None
        return entry

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

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, str]]:
        """(key, text) of records last stored more than `seconds_old` seconds ago."""
        self.cull()
        limit = time.monotonic() - seconds_old
        return [(k, e.record.text) for k, e in self._data.items() if e.stored_at <= limit]
