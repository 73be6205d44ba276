"""Capped, jittered exponential backoff: the one reconnect policy of every backend.

    backoff = Backoff(initial_s=0.5, cap_s=30.0)
    while True:
        try:
            await connect()
            backoff.reset()
            ...
        except DriverError:
            await asyncio.sleep(backoff.next())

The n-th delay is drawn uniformly from `[(1 - jitter) * b, b]` with `b = min(cap_s, initial_s *
factor ** n)`, so a fleet of gateways that lost the same device (or the same adapter after a
power cut) never retries in lock-step, and no delay ever exceeds `cap_s`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # 0 = no jitter; 1 = "full jitter" (any delay from 0 to the bound)
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        for name in ("initial_s", "cap_s", "factor", "jitter"):
            val = getattr(self, name)
            if not math.isfinite(val) or val < 0:
                raise ValueError(f"backoff {name} must be finite and >= 0")
        if self.jitter > 1 or self.factor < 1 or self.cap_s < self.initial_s:
            raise ValueError("backoff needs jitter <= 1, factor >= 1 and cap_s >= initial_s")

    def bound(self) -> float:
        """The upper bound of the next delay (before jitter)."""
        # cap the exponent too: factor ** attempt overflows a float after ~1000 attempts
        exp = min(self.attempt, 64)
        return min(self.cap_s, self.initial_s * self.factor**exp)

    def next(self) -> float:
        """The next delay in seconds; each call moves one step up the ladder."""
        top = self.bound()
        self.attempt += 1
        return top * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """Call after a success: the next failure starts again from `initial_s`."""
        self.attempt = 0
