"""A small orthogonal maze router on the drawing grid.

Nets are routed one after another (Dijkstra over grid nodes and headings). A wire never runs
along another net's wire, never bends, ends or branches on another net's node, and never enters
a part body, a text box or a zone border; it may cross another net's straight wire at right
angles (drawn without a dot). Bends and crossings cost extra, so wires stay short and tidy.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Node = tuple[int, int]
STEPS: tuple[Node, ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))
BEND_COST = 6
CROSS_COST = 8
HUG_COST = 1  # running right next to another net's parallel wire


class RouteError(Exception):
    """A net could not be routed on the grid without breaking the rules above."""


@dataclass
class Board:
    width: int
    height: int
    blocked: set[Node] = field(default_factory=set)
    pins: dict[Node, str] = field(default_factory=dict)  # pin node -> net
    horiz: dict[Node, str] = field(default_factory=dict)  # node -> net running through it
    vert: dict[Node, str] = field(default_factory=dict)
    hard: dict[Node, str] = field(default_factory=dict)  # ends, bends, branches: no other net

    def block_rect(self, x0: int, y0: int, x1: int, y1: int) -> None:
        for x in range(max(x0, 0), min(x1, self.width - 1) + 1):
            for y in range(max(y0, 0), min(y1, self.height - 1) + 1):
                self.blocked.add((x, y))

    def _free_for(self, node: Node, net: str, horizontal: bool) -> bool:
        x, y = node
        if not (0 <= x < self.width and 0 <= y < self.height):
            return False
        if self.pins.get(node, net) != net or self.hard.get(node, net) != net:
            return False
        if node in self.blocked and node not in self.pins:
            return False
        lane = self.horiz if horizontal else self.vert
        return lane.get(node, net) == net

    def route(self, net: str, sources: Sequence[Node], targets: Iterable[Node]) -> list[Node]:
        """The cheapest path from one of SOURCES to one of TARGETS for NET."""
        goal = set(targets)
        tie = itertools.count()
        frontier: list[tuple[int, int, Node, int]] = []
        best: dict[tuple[Node, int], int] = {}
        prev: dict[tuple[Node, int], tuple[Node, int] | None] = {}
        for s in sources:
            heapq.heappush(frontier, (0, next(tie), s, -1))
            best[(s, -1)] = 0
            prev[(s, -1)] = None
        while frontier:
            cost, _, node, heading = heapq.heappop(frontier)
            if cost > best.get((node, heading), 1 << 30):
                continue
            if node in goal and heading != -1:
                return self._unwind(prev, (node, heading))
            for d, (dx, dy) in enumerate(STEPS):
                if heading != -1 and d != heading and d // 2 == heading // 2:
                    continue  # no U-turn
                horizontal = d < 2
                nxt = (node[0] + dx, node[1] + dy)
                if not self._free_for(nxt, net, horizontal):
                    continue
                if nxt in self.pins and nxt not in goal:
                    continue  # never pass through a pin, not even one of our own
                step = 1
                bend = heading != -1 and d != heading
                if bend and not self._bend_ok(node, net):
                    continue
                other = self.vert if horizontal else self.horiz
                if other.get(nxt, net) != net:
                    step += CROSS_COST
                step += self._hug(nxt, net, horizontal)
                new = cost + step + (BEND_COST if bend else 0)
                key = (nxt, d)
                if new < best.get(key, 1 << 30):
                    best[key] = new
                    prev[key] = (node, heading)
                    heapq.heappush(frontier, (new, next(tie), nxt, d))
        raise RouteError(f"net {net}: no route from {list(sources)} to {sorted(goal)}")

    def _bend_ok(self, node: Node, net: str) -> bool:
        return all(lane.get(node, net) == net for lane in (self.horiz, self.vert, self.hard))

    def _hug(self, node: Node, net: str, horizontal: bool) -> int:
        lane = self.horiz if horizontal else self.vert
        sides = ((0, 1), (0, -1)) if horizontal else ((1, 0), (-1, 0))
        return sum(
            HUG_COST for dx, dy in sides if lane.get((node[0] + dx, node[1] + dy), net) != net
        )

    @staticmethod
    def _unwind(
        prev: dict[tuple[Node, int], tuple[Node, int] | None], key: tuple[Node, int]
    ) -> list[Node]:
        path: list[Node] = []
        cur: tuple[Node, int] | None = key
        while cur is not None:
            path.append(cur[0])
            cur = prev[cur]
        return path[::-1]

    def commit(self, net: str, path: Sequence[Node]) -> None:
        """Claim PATH's nodes for NET: lanes for straight runs, whole nodes at ends and bends."""
        for a, b in itertools.pairwise(path):
            lane = self.horiz if a[1] == b[1] else self.vert
            lane[a] = lane[b] = net
        for i, node in enumerate(path):
            if i in (0, len(path) - 1):
                self.hard[node] = net
                continue
            (ax, ay), (bx, by) = path[i - 1], path[i + 1]
            if ax != bx and ay != by:
                self.hard[node] = net

    def route_net(self, net: str, pins: Sequence[Node]) -> list[list[Node]]:
        """Connect every pin of NET: the first two directly, each further pin to the tree."""
        paths: list[list[Node]] = []
        tree: set[Node] = {pins[0]}
        for pin in pins[1:]:
            path = self.route(net, [pin], tree)
            self.commit(net, path)
            tree.update(path)
            paths.append(path)
        return paths


def simplify(path: Sequence[Node]) -> list[Node]:
    """The corners of PATH: its ends and the nodes where it turns."""
    out = [path[0]]
    for i in range(1, len(path) - 1):
        (ax, ay), (bx, by) = path[i - 1], path[i + 1]
        if ax != bx and ay != by:
            out.append(path[i])
    out.append(path[-1])
    return out
