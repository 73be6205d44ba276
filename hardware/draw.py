"""Draws a recipe with schemdraw (pure-Python SVG backend): parts where the description puts
them, every net routed by `route.Board`, junction dots where the geometry has a T, the mains
zone as a dashed, labelled box. Also returns the netlist read back from the drawn wires."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import schemdraw
import schemdraw.elements as elm
from schemdraw.segments import Segment, SegmentText

from .geometry import Point, Seg, drawn_netlist, junctions
from .recipe import DIRS, Part, Pin, Recipe, RecipeError
from .route import Board, RouteError, simplify

Halign = Literal["left", "center", "right"]
Valign = Literal["center", "top", "bottom"]
G = 0.5  # drawing units per grid step (schemdraw draws 36 px per unit: 18 px per step)
PX = 18.0  # pixels per grid step
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
PIN_PT, TITLE_PT, NOTE_PT, ZONE_PT, HEAD_PT = 11.0, 12.0, 11.0, 13.0, 15.0
CHAR_EM = 0.62  # generous average glyph width (em) for the router's text boxes
MARGIN = 2  # grid steps of empty frame around everything
PART_INK = "#222222"
LEGEND = "● = wires joined;  wires crossing without a dot = not joined;  ○ = terminal left free"
ZONE_INK = "#c00000"

TWO_TERM: dict[str, Callable[[], elm.Element]] = {
    "resistor": elm.Resistor,
    "diode": elm.Diode,
    "coil": elm.Inductor2,
    "switch": elm.Switch,
    "reed": elm.SwitchReed,
    "fuse": elm.Fuse,
    "heater": elm.ResistorIEC,
    "motor": elm.Motor,
    "cutout": lambda: elm.Switch(nc=True),
}


@dataclass
class Drawn:
    svg: str
    netlist: list[frozenset[str]]
    segments: list[tuple[str, Seg]] = field(default_factory=list)  # (net, segment)
    pins: dict[str, Point] = field(default_factory=dict)
    text_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    bodies: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def _plain() -> elm.Element:
    """An empty element anchored at the drawing's origin: its segments use absolute units."""
    return elm.Element().at((0, 0)).theta(0)


def _xy(p: tuple[float, float]) -> tuple[float, float]:
    return p[0] * G, -p[1] * G


def text_box(
    x: float, y: float, text: str, pt: float, halign: Halign, valign: Valign = "center"
) -> tuple[float, float, float, float]:
    """A generous estimate of TEXT's box in grid steps (x0, y0, x1, y1)."""
    lines = text.split("\n")
    w = max(len(s) for s in lines) * pt * CHAR_EM / PX + 0.3
    h = len(lines) * pt * 1.25 / PX + 0.2
    x0 = {"left": x - 0.15, "center": x - w / 2, "right": x - w + 0.15}[halign]
    y0 = {"top": y - 0.1, "center": y - h / 2, "bottom": y - h + 0.1}[valign]
    return x0, y0, x0 + w, y0 + h


def _slots(pins: list[Pin]) -> list[int]:
    """The row of each pin on one side of a block: its `row`, else the one after the last."""
    out: list[int] = []
    for q in pins:
        out.append(q.row if q.row >= 0 else (out[-1] + 1 if out else 0))
    return out


class Layout:
    """Collects the schemdraw elements, the router's obstacles and the pins of one recipe."""

    def __init__(self, recipe: Recipe) -> None:
        self.r = recipe
        self.elements: list[elm.Element] = []
        self.boxes: list[tuple[float, float, float, float]] = []  # text, grid steps
        self.bodies: list[tuple[float, float, float, float]] = []  # part bodies, grid steps
        self.body_of: dict[str, tuple[float, float, float, float]] = {}
        self.pins: dict[str, Point] = {}
        self.free_pins: list[tuple[Point, Point]] = []

    def text(
        self,
        x: float,
        y: float,
        s: str,
        pt: float,
        ha: Halign,
        color: str = PART_INK,
        va: Valign = "center",
    ) -> SegmentText:
        self.boxes.append(text_box(x, y, s, pt, ha, va))
        return SegmentText(_xy((x, y)), s, align=(ha, va), fontsize=pt, font=FONT, color=color)

    def block(self, p: Part) -> None:
        x, y = p.at
        left = [q for q in p.pins if q.side == "left"]
        right = [q for q in p.pins if q.side == "right"]
        t = len(p.title)
        slots = {side: _slots(pins) for side, pins in (("left", left), ("right", right))}
        bottom = y + t + 2 * max(1, *(max(v, default=0) + 1 for v in slots.values()))
        e = _plain()
        e.segments.append(
            Segment(
                [_xy(c) for c in ((x, y), (x + p.w, y), (x + p.w, bottom), (x, bottom), (x, y))],
                color=PART_INK,
                lw=2,
            )
        )
        for i, line in enumerate(p.title):
            e.segments.append(self.text(x + p.w / 2, y + 1 + i, line, TITLE_PT, "center"))
        sides: tuple[tuple[list[Pin], int, int, Halign], ...] = (
            (left, x, x - 1, "left"),
            (right, x + p.w, x + p.w + 1, "right"),
        )
        for pins, edge, out, ha in sides:
            for j, q in zip(slots[ha], pins, strict=True):
                py = y + t + 1 + 2 * j
                e.segments.append(Segment([_xy((edge, py)), _xy((out, py))], color=PART_INK, lw=2))
                lx = edge + 0.4 if ha == "left" else edge - 0.4
                e.segments.append(self.text(lx, py, q.label, PIN_PT, ha))
                if q.free:
                    self.free_pins.append(((out, py), (edge, py)))
                else:
                    self.pins[f"{p.id}.{q.id}"] = (out, py)
        self.bodies.append((x, y, x + p.w, bottom))
        self.body_of[p.id] = self.bodies[-1]
        self.elements.append(e)

    def two_terminal(self, p: Part) -> None:
        dx, dy = DIRS[p.dir]
        x, y = p.at
        end = (x + dx * p.length, y + dy * p.length)
        e = TWO_TERM[p.kind]().at(_xy((x, y))).theta(math.degrees(math.atan2(-dy, dx)))
        self.elements.append(e.length(p.length * G).color(PART_INK))
        self.pins[f"{p.id}.{p.pins[0].id}"] = (x, y)
        self.pins[f"{p.id}.{p.pins[1].id}"] = end
        x0, x1 = sorted((x, end[0]))
        y0, y1 = sorted((y, end[1]))
        half = 1.0  # half the symbol's width across its axis
        body = (
            (x0 + 1, y0 - half, x1 - 1, y1 + half)
            if dy == 0
            else (x0 - half, y0 + 1, x1 + half, y1 - 1)
        )
        self.bodies.append(body)
        self.body_of[p.id] = body
        lines = "\n".join([*p.title, p.value] if p.value else p.title)
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        places: dict[str, tuple[float, float, Halign, Valign]] = {
            "top": (mx, body[1] - 0.2, "center", "bottom"),
            "bottom": (mx, body[3] + 0.2, "center", "top"),
            "left": (body[0] - 0.3, my, "right", "center"),
            "right": (body[2] + 0.3, my, "left", "center"),
        }
        place = places[p.label_side]
        label = _plain()
        label.segments.append(self.text(place[0], place[1], lines, PIN_PT, place[2], va=place[3]))
        self.elements.append(label)

    def decorations(self) -> None:
        e = _plain()
        e.segments.append(self.text(MARGIN, MARGIN - 0.5, self.r.title, HEAD_PT, "left"))
        for z in self.r.zones:
            x0, y0, x1, y1 = z.rect
            e.segments.append(
                Segment(
                    [_xy(c) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))],
                    color=ZONE_INK,
                    lw=2.5,
                    ls="--",
                )
            )
            e.segments.append(self.text(x0 + 0.8, y0 + 1.2, z.label, ZONE_PT, "left", ZONE_INK))
        for n in self.r.notes:
            e.segments.append(self.text(n.at[0], n.at[1], n.text, NOTE_PT, "left", n.color, "top"))
        self.elements.append(e)


def _board(lay: Layout, width: int, height: int) -> Board:
    b = Board(width, height)
    for x0, y0, x1, y1 in [*lay.bodies, *lay.boxes]:
        b.block_rect(math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))
    for z in lay.r.zones:
        x0, y0, x1, y1 = z.rect
        b.block_rect(x0, y0, x1, y0)
        b.block_rect(x0, y1, x1, y1)
        b.block_rect(x0, y0, x0, y1)
        b.block_rect(x1, y0, x1, y1)
    for (ox, oy), (ex, _) in lay.free_pins:
        b.block_rect(min(ox, ex), oy, max(ox, ex), oy)
    for net in lay.r.nets:
        for ref in net.pins:
            b.pins[lay.pins[ref]] = net.name
    return b


def _px(svg: str) -> str:
    """Size the root in CSS pixels, one per user unit (schemdraw writes points)."""
    head, sep, rest = svg.partition(">")
    _, w, h = (float(v) for v in re.findall(r'viewBox="([-\d. ]+)"', head)[0].split()[1:4])
    head = re.sub(r'height="[\d.]+pt"', f'height="{h:.0f}"', head)
    head = re.sub(r'width="[\d.]+pt"', f'width="{w:.0f}"', head)
    return head + sep + rest


def draw(recipe: Recipe) -> Drawn:
    lay = Layout(recipe)
    for p in recipe.parts:
        (lay.block if p.kind == "block" else lay.two_terminal)(p)
    lay.decorations()
    every = [*lay.bodies, *lay.boxes, *[tuple(map(float, z.rect)) for z in recipe.zones]]
    legend = _plain()
    legend.segments.append(
        lay.text(MARGIN, max(b[3] for b in every) + 1.5, LEGEND, NOTE_PT, "left")
    )
    lay.elements.append(legend)
    every.append(lay.boxes[-1])
    width = math.ceil(max(b[2] for b in every)) + MARGIN
    height = math.ceil(max(b[3] for b in every)) + MARGIN
    if min(min(b[0], b[1]) for b in every) < 0.5:
        raise RecipeError(recipe.name, "parts", "something lies left of or above the frame")
    board = _board(lay, width + 1, height + 1)
    segs: list[tuple[str, Seg]] = []
    color = {n.name: n.color for n in recipe.nets}
    try:
        for net in recipe.nets:
            for path in board.route_net(net.name, [lay.pins[ref] for ref in net.pins]):
                corners = simplify(path)
                segs += [(net.name, Seg(a, b)) for a, b in itertools.pairwise(corners)]
    except RouteError as exc:
        raise RecipeError(recipe.name, "nets", str(exc)) from exc
    d = schemdraw.Drawing(show=False, canvas="svg")
    d.config(fontsize=PIN_PT, font=FONT, lw=2)
    frame = _plain()
    frame.segments.append(
        Segment(
            [_xy(c) for c in ((0, 0), (width, 0), (width, height), (0, height), (0, 0))],
            color="#bbbbbb",
            lw=1,
        )
    )
    d.add(frame)
    for e in lay.elements:
        d.add(e)
    for net_name, s in segs:
        d.add(elm.Line().at(_xy(s.a)).to(_xy(s.b)).color(color[net_name]).linewidth(2.5))
    for (ox, oy), _ in lay.free_pins:
        d.add(elm.Dot(open=True, radius=0.09).at(_xy((ox, oy))).color(PART_INK))
    for dot in junctions([s for _, s in segs], list(lay.pins.values())):
        net_name = next(n for n, s in segs if s.contains(dot))
        d.add(elm.Dot(radius=0.14).at(_xy(dot)).color(color[net_name]))
    svg = _px(d.get_imagedata("svg").decode("utf-8"))
    return Drawn(
        svg=svg,
        netlist=drawn_netlist([s for _, s in segs], lay.pins),
        segments=segs,
        pins=dict(lay.pins),
        text_boxes=list(lay.boxes),
        bodies=dict(lay.body_of),
    )
