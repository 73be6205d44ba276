"""Replay protection: remember each accepted (iss, jti) while the message could still be accepted.

An entry lives until `exp + leeway` (the last instant `open_sealed` would still accept the
message), so a replay inside the acceptance window is always caught and memory is released
as soon as it can be.

Memory is bounded by `max_entries`. When the cache is full after dropping expired entries it
fails closed: the new message is refused (`replay_cache_full`) rather than forgetting an
unexpired entry, which would reopen a replay window. Lookups and inserts are O(1) (a dict);
expired entries are dropped in expiry order from a min-heap, amortized O(log n) each, on every
insert and by `purge()` (call it periodically, e.g. once a second, to free memory when idle).
"""

from __future__ import annotations

import heapq
import time
from typing import Final

from gateway.errors import MessageError
from gateway.messages import codes

#: Allowed clock difference between peers, in seconds, for exp/iat checks and replay retention.
CLOCK_LEEWAY_S: Final = 5
#: Default capacity: ~100 messages/s sustained for the longest lifetime (300 s) plus leeway,
#: about 10 MB when full; far above what one gateway serves.
DEFAULT_MAX_ENTRIES: Final = 30_000


class ReplayCache:
    """Remembers (issuer, jti) pairs of accepted messages until they expire (+ leeway)."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, leeway: float = CLOCK_LEEWAY_S
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self.max_entries = max_entries
        self.leeway = leeway
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, key: object) -> bool:
        return key in self._until

    def purge(self, now: float | None = None) -> int:
        """Forget entries whose retention ended before NOW; return how many were dropped."""
        now = time.time() if now is None else now
        dropped = 0
        heap = self._heap
        while heap and heap[0][0] < now:
            until, key = heapq.heappop(heap)
            if self._until.get(key) == until:
                del self._until[key]
                dropped += 1
        return dropped

    def check_and_add(self, iss: str, jti: str, exp: float, now: float | None = None) -> None:
        """Record (ISS, JTI) as seen until EXP + leeway.

        Raises `MessageError` code `replayed` if the pair is already recorded, or
        `replay_cache_full` if the cache is full of unexpired entries (fail closed).
        """
        now = time.time() if now is None else now
        key = (iss, jti)
        until = self._until.get(key)
        if until is not None and until >= now:
            raise MessageError("message id already seen (replay)", code=codes.REPLAYED)
        self.purge(now)
        if len(self._until) >= self.max_entries:
            raise MessageError(
                "replay cache is full of unexpired messages; refusing new ones",
                code=codes.REPLAY_CACHE_FULL,
            )
        until = exp + self.leeway
        self._until[key] = until
        heapq.heappush(self._heap, (until, key))
