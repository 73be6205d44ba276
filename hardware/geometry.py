"""The netlist as drawn: which pins the wire segments of a diagram actually join.

Worked out from the geometry alone (not from the router's bookkeeping), the way a person reads
the picture: segments that share an end, an end lying on another segment (a T, drawn with a
dot) or overlapping collinear segments are joined; segments crossing at right angles are not;
a pin is on every segment that ends on it or runs through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Point = tuple[int, int]


@dataclass(frozen=True)
class Seg:
    a: Point
    b: Point

    def horizontal(self) -> bool:
        return self.a[1] == self.b[1]

    def contains(self, p: Point) -> bool:
        (x1, y1), (x2, y2) = self.a, self.b
        if self.horizontal():
            return p[1] == y1 and min(x1, x2) <= p[0] <= max(x1, x2)
        return p[0] == x1 and min(y1, y2) <= p[1] <= max(y1, y2)

    def overlaps(self, other: Seg) -> bool:
        """Collinear with OTHER and sharing more than a point."""
        if self.horizontal() != other.horizontal():
            return False
        axis = 0 if self.horizontal() else 1
        if self.a[1 - axis] != other.a[1 - axis]:
            return False
        lo = max(min(self.a[axis], self.b[axis]), min(other.a[axis], other.b[axis]))
        hi = min(max(self.a[axis], self.b[axis]), max(other.a[axis], other.b[axis]))
        return hi > lo


class _Union:
    def __init__(self, n: int) -> None:
        self.up = list(range(n))

    def find(self, i: int) -> int:
        while self.up[i] != i:
            self.up[i] = self.up[self.up[i]]
            i = self.up[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.up[self.find(i)] = self.find(j)


def _touch(s: Seg, t: Seg) -> bool:
    return (
        s.overlaps(t)
        or any(t.contains(p) for p in (s.a, s.b))
        or any(s.contains(p) for p in (t.a, t.b))
    )


def drawn_netlist(segs: Sequence[Seg], pins: Mapping[str, Point]) -> list[frozenset[str]]:
    """The groups of pins (PART.PIN) that the drawn segments join, sorted."""
    refs = sorted(pins)
    n = len(segs)
    u = _Union(n + len(refs))
    for i in range(n):
        for j in range(i + 1, n):
            if _touch(segs[i], segs[j]):
                u.join(i, j)
    for k, ref in enumerate(refs):
        for i, s in enumerate(segs):
            if s.contains(pins[ref]):
                u.join(n + k, i)
    groups: dict[int, set[str]] = {}
    for k, ref in enumerate(refs):
        groups.setdefault(u.find(n + k), set()).add(ref)
    return sorted((frozenset(g) for g in groups.values() if len(g) > 1), key=sorted)


def junctions(segs: Sequence[Seg], pins: Sequence[Point] = ()) -> list[Point]:
    """Points where three or more wire ends meet (a pin's lead counts as one) or a wire ends
    on another's middle (a T): the places a wiring diagram marks with a dot."""
    ends: dict[Point, int] = {p: 1 for p in pins}
    for s in segs:
        for p in (s.a, s.b):
            ends[p] = ends.get(p, 0) + 1
    out: set[Point] = {p for p, count in ends.items() if count >= 3}
    for p in ends:
        if any(s.contains(p) and p not in (s.a, s.b) for s in segs):
            out.add(p)
    return sorted(out)
