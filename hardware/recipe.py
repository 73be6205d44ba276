"""The machine-readable description of one hardware recipe (`hardware/<recipe>/recipe.toml`).

Everything the diagram, the netlist, the README tables and the tests use comes from here:
parts (with their pins and grid positions), nets (which pins are wired together), the mains
zone, the bill of materials and which example-config settings name which pins. Coordinates are
in grid steps (`GRID` drawing units each), x to the right and y downwards.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_drivers.errors import StreembitError

from . import HARDWARE_DIR

KINDS_2TERM = ("resistor", "diode", "coil", "switch", "reed", "fuse", "heater", "motor", "cutout")
DIRS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
SIDES = ("left", "right")
TERMINAL_LABELS = {"A": "anode", "K": "cathode (band)"}


class RecipeError(StreembitError):
    """A recipe description is malformed or inconsistent. Names the recipe and the key."""

    code = "recipe"

    def __init__(self, recipe: str, key: str, problem: str) -> None:
        self.recipe, self.key, self.problem = recipe, key, problem
        super().__init__(f"hardware/{recipe}/recipe.toml: {key}: {problem}")


@dataclass(frozen=True)
class Pin:
    id: str
    label: str
    side: str  # "left"/"right" on a block, "start"/"end" on a two-terminal part
    free: str = ""  # why the pin stays unwired ("" = it is wired)
    header: int | None = None  # Raspberry Pi header pin number
    gpio: int | None = None  # BCM / board GPIO number
    channel: str = ""  # board channel name in the line protocol
    config: tuple[str, ...] = ()  # "thing:dotted.path" settings in the example config naming it
    note: str = ""
    row: int = -1  # slot on a block's side (-1: the next one)


@dataclass(frozen=True)
class Part:
    id: str
    kind: str
    title: tuple[str, ...]
    short: str  # how the tables name it ("relay module K1")
    at: tuple[int, int]
    pins: tuple[Pin, ...]
    value: str = ""
    mains: bool = False
    w: int = 0  # block width (grid steps)
    dir: str = "right"  # two-terminal direction, start to end
    length: int = 4  # two-terminal length (grid steps)
    label_side: str = "top"  # two-terminal label: top/bottom/left/right of the body
    ref: str = ""  # reference designator; one part may be drawn as two (coil and contacts)

    def pin(self, pin_id: str) -> Pin:
        for p in self.pins:
            if p.id == pin_id:
                return p
        raise KeyError(pin_id)


@dataclass(frozen=True)
class Net:
    name: str
    color: str
    pins: tuple[str, ...]  # "PART.PIN"


@dataclass(frozen=True)
class Zone:
    label: str
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclass(frozen=True)
class Note:
    at: tuple[int, int]
    text: str
    color: str = "#333333"


@dataclass(frozen=True)
class BomRow:
    qty: str
    part: str
    notes: str
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    config: str
    board: str
    pinmap_columns: tuple[tuple[str, str], ...]  # (heading, key)
    parts: tuple[Part, ...]
    nets: tuple[Net, ...]
    zones: tuple[Zone, ...] = ()
    notes: tuple[Note, ...] = ()
    bom: tuple[BomRow, ...] = ()
    shown: tuple[str, ...] = ()  # "thing:path" config values the drawing must show as text
    extra: dict[str, Any] = field(default_factory=dict)

    def part(self, part_id: str) -> Part:
        for p in self.parts:
            if p.id == part_id:
                return p
        raise RecipeError(self.name, "parts", f"no part {part_id!r}")

    def net_of(self, ref: str) -> Net | None:
        for n in self.nets:
            if ref in n.pins:
                return n
        return None


def _tuple2(value: Any, recipe: str, key: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise RecipeError(recipe, key, "expected [x, y] in grid steps")
    return value[0], value[1]


def _pin(raw: dict[str, Any]) -> Pin:
    return Pin(
        id=str(raw["id"]),
        label=str(raw.get("label", raw["id"])),
        side=str(raw.get("side", "left")),
        free=str(raw.get("free", "")),
        header=raw.get("header"),
        gpio=raw.get("gpio"),
        channel=str(raw.get("channel", "")),
        config=tuple(raw.get("config", ())),
        note=str(raw.get("note", "")),
        row=int(raw.get("row", -1)),
    )


def _part(raw: dict[str, Any], recipe: str) -> Part:
    pid = str(raw["id"])
    kind = str(raw["kind"])
    if kind != "block" and kind not in KINDS_2TERM:
        raise RecipeError(recipe, f"parts.{pid}.kind", f"unknown kind {kind!r}")
    pins = tuple(_pin(p) for p in raw.get("pins", ()))
    if kind != "block":
        names = raw.get("terminals", ["1", "2"])
        have = {p.id: p for p in pins}
        pins = tuple(
            have.get(n, Pin(id=n, label=TERMINAL_LABELS.get(n, n), side=s))
            for n, s in zip(names, ("start", "end"), strict=True)
        )
    elif any(p.side not in SIDES for p in pins):
        raise RecipeError(recipe, f"parts.{pid}.pins", "side must be left or right")
    title = raw.get("title", [])
    part = Part(
        id=pid,
        kind=kind,
        title=tuple([title] if isinstance(title, str) else title),
        short=str(raw.get("short", pid)),
        at=_tuple2(raw.get("at"), recipe, f"parts.{pid}.at"),
        pins=pins,
        value=str(raw.get("value", "")),
        mains=bool(raw.get("mains", False)),
        w=int(raw.get("w", 0)),
        dir=str(raw.get("dir", "right")),
        length=int(raw.get("length", 4)),
        label_side=str(raw.get("label_side", "top")),
        ref=str(raw.get("ref", pid)),
    )
    if part.label_side not in ("top", "bottom", "left", "right"):
        raise RecipeError(recipe, f"parts.{pid}.label_side", "top, bottom, left or right")
    if part.dir not in DIRS:
        raise RecipeError(recipe, f"parts.{pid}.dir", f"unknown direction {part.dir!r}")
    if kind == "block" and part.w < 4:
        raise RecipeError(recipe, f"parts.{pid}.w", "a block needs a width of 4 or more")
    return part


def load_recipe(name: str, root: Path = HARDWARE_DIR) -> Recipe:
    path = root / name / "recipe.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(name, "(file)", str(exc)) from exc
    try:
        recipe = Recipe(
            name=name,
            title=str(raw["title"]),
            config=str(raw["config"]),
            board=str(raw["board"]),
            shown=tuple(str(v) for v in raw.get("shown", ())),
            pinmap_columns=tuple((str(h), str(k)) for h, k in raw["pinmap_columns"]),
            parts=tuple(_part(p, name) for p in raw["parts"]),
            nets=tuple(
                Net(str(n["name"]), str(n.get("color", "black")), tuple(n["pins"]))
                for n in raw["nets"]
            ),
            zones=tuple(Zone(str(z["label"]), tuple(z["rect"])) for z in raw.get("zones", ())),
            notes=tuple(
                Note(
                    _tuple2(n["at"], name, "notes.at"),
                    str(n["text"]),
                    str(n.get("color", "#333333")),
                )
                for n in raw.get("notes", ())
            ),
            bom=tuple(
                BomRow(
                    str(b["qty"]), str(b["part"]), str(b.get("notes", "")), tuple(b.get("refs", ()))
                )
                for b in raw["bom"]
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecipeError(name, "(structure)", f"missing or malformed {exc}") from exc
    check_recipe(recipe)
    return recipe


def check_recipe(r: Recipe) -> None:
    """Every net names existing pins, every pin is on exactly one net or marked free."""
    ids = [p.id for p in r.parts]
    if len(ids) != len(set(ids)):
        raise RecipeError(r.name, "parts", "duplicate part id")
    seen: dict[str, str] = {}
    for net in r.nets:
        if len(net.pins) < 2:
            raise RecipeError(r.name, f"nets.{net.name}", "a net joins two pins or more")
        for ref in net.pins:
            part_id, _, pin_id = ref.partition(".")
            try:
                pin = r.part(part_id).pin(pin_id)
            except KeyError:
                raise RecipeError(r.name, f"nets.{net.name}", f"no pin {ref!r}") from None
            if pin.free:
                raise RecipeError(r.name, f"nets.{net.name}", f"{ref} is marked free")
            if ref in seen:
                raise RecipeError(r.name, f"nets.{net.name}", f"{ref} is already on {seen[ref]}")
            seen[ref] = net.name
    for part in r.parts:
        for pin in part.pins:
            ref = f"{part.id}.{pin.id}"
            if ref not in seen and not pin.free:
                raise RecipeError(r.name, f"parts.{part.id}", f"pin {pin.id} is on no net")
    board = r.part(r.board)
    if board.kind != "block":
        raise RecipeError(r.name, "board", "the board must be a block")
    designators = {p.ref for p in r.parts}
    listed: set[str] = set()
    for row in r.bom:
        if not set(row.refs) <= designators:
            raise RecipeError(r.name, "bom", f"{row.part}: no part {set(row.refs) - designators}")
        if row.refs and row.qty != str(len(row.refs)):
            raise RecipeError(r.name, "bom", f"{row.part}: qty {row.qty} but refs {row.refs}")
        listed.update(row.refs)
    if designators - listed:
        raise RecipeError(r.name, "bom", f"parts missing from the BOM: {designators - listed}")
