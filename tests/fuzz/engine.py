"""Run a target on seeded mutations; count crashes (unexpected exceptions, slow inputs)."""

from __future__ import annotations

import random
import time
import traceback
import zlib
from dataclasses import dataclass, field

from tests.fuzz.mutate import mutate
from tests.fuzz.targets import Skip, Target

SLOW_S = 1.0  # one input taking longer than this is a crash (a denial of service)


@dataclass
class Crash:
    target: str
    kind: str  # the exception type, or "slow"
    where: str  # file:line of the innermost frame, or the time taken
    count: int
    sample: bytes  # the first input that caused it

    def __str__(self) -> str:
        sample = self.sample[:120]
        return f"{self.target}: {self.kind} at {self.where} (x{self.count}) input={sample!r}"


@dataclass
class Result:
    target: str
    inputs: int = 0
    skipped: int = 0
    refused: int = 0  # the parser refused with one of the project's errors (the expected case)
    seconds: float = 0.0
    slowest: float = 0.0
    crashes: dict[tuple[str, str], Crash] = field(default_factory=dict)

    @property
    def crash_count(self) -> int:
        return sum(c.count for c in self.crashes.values())


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 2)[-1]}:{last.lineno}"


def target_seed(seed: int, name: str) -> int:
    """The RNG seed of one target: fixed by the run's seed and the target's name."""
    return seed ^ zlib.crc32(name.encode())


def run(target: Target, inputs: int, seed: int = 1, slow_s: float = SLOW_S) -> Result:
    """Feed INPUTS mutated inputs to TARGET (its seeds first, unmutated)."""
    rng = random.Random(target_seed(seed, target.name))
    result = Result(target.name)
    start = time.perf_counter()
    for i in range(inputs):
        data = target.seeds[i] if i < len(target.seeds) else mutate(rng, target.seeds)
        try:
            built = target.build(data)
        except Skip:
            result.skipped += 1
            continue
        except target.allowed:
            result.skipped += 1  # the input could not even be built into a parser input
            continue
        result.inputs += 1
        t0 = time.perf_counter()
        key: tuple[str, str] | None = None
        try:
            target.parse(built)
        except target.allowed:
            result.refused += 1
        except Exception as exc:  # anything else is the crash being counted
            key = (type(exc).__name__, _where(exc))
        took = time.perf_counter() - t0
        result.slowest = max(result.slowest, took)
        if key is None and took > slow_s:
            key = ("slow", f"over {slow_s} s")
        if key is not None:
            hit = result.crashes.get(key)
            if hit is None:
                where = f"{took:.2f} s" if key[0] == "slow" else key[1]
                result.crashes[key] = Crash(target.name, key[0], where, 1, data)
            else:
                hit.count += 1
    result.seconds = time.perf_counter() - start
    return result
