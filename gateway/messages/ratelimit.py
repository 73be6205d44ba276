"""Per-peer token-bucket rate limiting, keyed by sender id or remote address.

Each key gets a bucket of `burst` tokens refilled at `rate_per_s`; a message costs one token.
Key before the expensive work: by remote address before opening a message (ids are free to
mint, so an id key only helps after the signature is verified), by sender id after.

Memory is bounded by `max_keys`. Keys are kept in least-recently-used order; to admit a new
key when full, the least recently used bucket is dropped only if it has refilled completely
(forgetting a full bucket loses nothing, a new bucket starts full). Otherwise the new key is
refused (fail closed): a flood of fresh keys cannot reset the buckets of busy peers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

#: Default bound on tracked keys: a gateway has a handful of peers; this absorbs scans cheaply.
DEFAULT_MAX_KEYS: Final = 10_000


class RateLimiter:
    """Token bucket per key: `allow(key)` spends one token or returns False."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_keys >= 1")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self.max_keys = max_keys
        # key -> (tokens left, time of last update); most recently used last.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, tokens: float, last: float, now: float) -> float:
        return min(self.burst, tokens + (now - last) * self.rate) if now > last else tokens

    def allow(self, key: Hashable, now: float | None = None) -> bool:
        """Spend one token of KEY's bucket; False if it is empty or KEY cannot be tracked."""
        now = time.monotonic() if now is None else now
        buckets = self._buckets
        state = buckets.get(key)
        if state is None:
            if len(buckets) >= self.max_keys and not self._evict_oldest(now):
                return False
            tokens = self.burst
        else:
            tokens = self._refilled(state[0], state[1], now)
            buckets.move_to_end(key)
        if tokens < 1.0:
            buckets[key] = (tokens, now)
            return False
        buckets[key] = (tokens - 1.0, now)
        return True

    def _evict_oldest(self, now: float) -> bool:
        oldest = next(iter(self._buckets))
        tokens, last = self._buckets[oldest]
        if self._refilled(tokens, last, now) < self.burst:
            return False
        del self._buckets[oldest]
        return True
