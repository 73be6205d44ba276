"""The hardware recipes: the committed diagrams, netlists and README tables are exactly what
`python -m hardware.build` makes from each recipe.toml; the netlist read back from the drawn
wires equals the description; every pin the example config names is wired in the diagram; the
pull-ups, flyback diodes, relay modules and the mains zone are where safety needs them."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from hardware import HARDWARE_DIR, RECIPES
from hardware.build import main, netlist, outputs
from hardware.docs import config_value, load_config
from hardware.draw import Drawn, draw
from hardware.geometry import Seg, drawn_netlist, junctions
from hardware.recipe import Pin, Recipe, RecipeError, load_recipe

REPO = HARDWARE_DIR.parent
SVG_NS = "{http://www.w3.org/2000/svg}"
PIN_KEYS = ("pin", "w1_pin")  # driver settings whose value is a GPIO number


@pytest.fixture(scope="module")
def drawn() -> dict[str, tuple[Recipe, Drawn]]:
    return {name: (r := load_recipe(name), draw(r)) for name in RECIPES}


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")]


def test_every_recipe_folder_is_described() -> None:
    folders = sorted(p.name for p in HARDWARE_DIR.iterdir() if (p / "README.md").exists())
    assert folders == sorted(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_committed_files_are_what_the_generator_makes(name: str) -> None:
    for path, text in outputs(name).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(REPO)} is stale: run python -m hardware.build"
        )


def test_check_mode_reports_drift_and_the_build_repairs_it(tmp_path: Path, capsys: Any) -> None:
    assert main(["--check"]) == 0
    root = tmp_path / "hardware"
    shutil.copytree(HARDWARE_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    svg = root / "ble-sensor" / "wiring.svg"
    svg.write_bytes(svg.read_bytes().replace(b"GPIO8", b"GPIO7"))
    config = tmp_path / "examples" / "gpio-door-lock.toml"
    config.write_text(config.read_text().replace("pin = 17,", "pin = 18,"))
    args = ["--root", str(root)]
    assert main(["--check", *args]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [  # the changed config number shows in the pin map and the netlist
        "out of date: hardware/gpio-door-lock/netlist.json",
        "out of date: hardware/gpio-door-lock/README.md",
        "out of date: hardware/ble-sensor/wiring.svg",
    ]
    assert b"GPIO7" in svg.read_bytes()  # --check wrote nothing
    assert main(args) == 0
    assert main(["--check", *args]) == 0
    assert svg.read_bytes() == (HARDWARE_DIR / "ble-sensor" / "wiring.svg").read_bytes()
    assert "`bolt.pin = 18`" in (root / "gpio-door-lock" / "README.md").read_text()
    assert main(["no-such-recipe"]) == 2
    assert "no recipe named no-such-recipe" in capsys.readouterr().err


@pytest.mark.parametrize("name", RECIPES)
def test_svg_parses_and_shows_every_part(name: str, drawn: dict[str, tuple[Recipe, Drawn]]) -> None:
    r, _ = drawn[name]
    text = (HARDWARE_DIR / name / "wiring.svg").read_text(encoding="utf-8")
    root = ET.fromstring(text)
    assert root.tag == f"{SVG_NS}svg"
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    assert 400 <= width <= 1700 and 300 <= height <= 1300, (width, height)
    shown = " ".join(svg_texts(text))
    for part in r.parts:
        assert part.ref in shown or part.title[0] in shown, part.id
        if part.value:
            assert part.value in shown, (part.id, part.value)
    for pin in r.part(r.board).pins:
        assert pin.label in shown


@pytest.mark.parametrize("name", RECIPES)
def test_drawn_netlist_is_the_description(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    r, d = drawn[name]
    assert set(d.netlist) == {frozenset(n.pins) for n in r.nets}
    committed = json.loads((HARDWARE_DIR / name / "netlist.json").read_text(encoding="utf-8"))
    assert {n: frozenset(p) for n, p in committed["nets"].items()} == {
        n.name: frozenset(n.pins) for n in r.nets
    }
    wired = {ref for n in r.nets for ref in n.pins}
    for part in r.parts:
        for pin in part.pins:
            assert (f"{part.id}.{pin.id}" in wired) != bool(pin.free), (part.id, pin.id)


@pytest.mark.parametrize("name", RECIPES)
def test_wires_of_different_nets_never_touch(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    """Only right-angle crossings of two straight runs: no shared end, no T, no overlap, so
    e.g. a relay module's VCC, GND and IN wires can never meet at one point."""
    _, d = drawn[name]
    ends = {p: net for net, s in d.segments for p in (s.a, s.b)}
    for i, (net_a, a) in enumerate(d.segments):
        for net_b, b in d.segments[i + 1 :]:
            if net_a == net_b:
                continue
            assert not a.overlaps(b), (net_a, net_b, a, b)
            for p in (b.a, b.b):
                assert not a.contains(p), (net_a, net_b, p)
            for p in (a.a, a.b):
                assert not b.contains(p), (net_a, net_b, p)
    r = drawn[name][0]
    for ref, p in d.pins.items():
        assert ends.get(p, "") in ("", _net_of(r, ref)), (ref, p)
        for net, s in d.segments:
            assert net == _net_of(r, ref) or not s.contains(p), (ref, net)  # no wire over a pin


@pytest.mark.parametrize("name", RECIPES)
def test_part_bodies_do_not_overlap(name: str, drawn: dict[str, tuple[Recipe, Drawn]]) -> None:
    _, d = drawn[name]
    items = sorted(d.bodies.items())
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(items):
        assert ax0 > 0 and ay0 > 0
        for b, (bx0, by0, bx1, by1) in items[i + 1 :]:
            apart = ax1 < bx0 or bx1 < ax0 or ay1 < by0 or by1 < ay0
            assert apart, (name, a, b)


def _net_of(r: Recipe, ref: str) -> str:
    net = r.net_of(ref)
    assert net is not None, ref
    return net.name


def _config_leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [
            leaf
            for k, v in node.items()
            for leaf in _config_leaves(v, f"{path}.{k}" if path else k)
        ]
    return [(path, node)]


def config_problems(r: Recipe, d: Drawn, config: dict[str, Any]) -> tuple[int, list[str]]:
    """How many pin settings CONFIG has, and each one the diagram does not wire as it says."""
    claimed: dict[str, tuple[str, Pin]] = {}  # config ref -> (PART.PIN, pin)
    for part in r.parts:
        for pin in part.pins:
            for ref in pin.config:
                claimed[ref] = (f"{part.id}.{pin.id}", pin)
    on_nets = {ref for group in d.netlist for ref in group}
    named, problems = 0, []
    for thing in config["things"]:
        for path, value in _config_leaves(thing.get("driver_settings", {})):
            key = path.rsplit(".", 1)[-1]
            if key not in PIN_KEYS and not path.startswith("names."):
                continue
            named += 1
            ref = f"{thing['name']}:{path}"
            if ref not in claimed:
                problems.append(f"{ref} = {value!r} is on no pin of the diagram")
                continue
            pin_ref, pin = claimed[ref]
            if pin_ref not in on_nets:
                problems.append(f"{ref}: {pin_ref} is not wired")
            elif key in PIN_KEYS and (value != pin.gpio or f"GPIO{value}" not in pin.label):
                problems.append(f"{ref} = {value!r} but the diagram has GPIO{pin.gpio}")
            elif key not in PIN_KEYS and value not in [c.strip() for c in pin.channel.split(",")]:
                problems.append(f"{ref} = {value!r} but the diagram has {pin.channel!r}")
    for ref in claimed:
        try:
            config_value(config, ref)
        except KeyError:
            problems.append(f"{ref} is named in the recipe but not in the config")
    shown = " ".join(svg_texts(d.svg))
    problems += [ref for ref in r.shown if str(config_value(config, ref)) not in shown]
    return named, problems


@pytest.mark.parametrize("name", RECIPES)
def test_every_pin_the_example_config_names_is_on_a_drawn_net(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    r, d = drawn[name]
    named, problems = config_problems(r, d, load_config(r))
    assert problems == []
    assert named or r.shown, f"{name}: the test checked nothing"


def test_a_config_that_disagrees_with_the_diagram_is_caught(
    drawn: dict[str, tuple[Recipe, Drawn]],
) -> None:
    r, d = drawn["gpio-door-lock"]
    config = load_config(r)
    settings = config["things"][0]["driver_settings"]
    settings["bolt"]["pin"] = 18
    settings["bolt_sensor"] = {"pin": 22}
    del settings["door"]
    named, problems = config_problems(r, d, config)
    assert named == 2
    assert problems == [
        "front-door:bolt.pin = 18 but the diagram has GPIO17",
        "front-door:bolt_sensor.pin = 22 is on no pin of the diagram",
        "front-door:door.pin is named in the recipe but not in the config",
    ]
    r, d = drawn["esp32-companion"]
    config = load_config(r)
    config["things"][0]["driver_settings"]["names"]["output"] = "relay2"
    assert config_problems(r, d, config)[1] == [
        "pond-pump:names.output = 'relay2' but the diagram has 'relay1'"
    ]


def test_the_checks_above_cover_every_recipe() -> None:
    counts = {
        name: len([p for p in load_recipe(name).part(load_recipe(name).board).pins if p.config])
        for name in RECIPES
    }
    assert counts == {
        "gpio-door-lock": 2,
        "gpio-thermostat": 2,
        "ble-sensor": 0,
        "serial-controller": 2,
        "esp32-companion": 2,
    }


PULL_UPS = {  # recipe: (resistor, value, data pin of the board, its sensor pin, supply pin)
    "gpio-thermostat": ("R1", "4.7 kΩ", "PI.7", "U1.DQ", "PI.1"),
    "serial-controller": ("R1", "4.7 kΩ", "A1.D2", "U1.DQ", "A1.5V"),
    "esp32-companion": ("R1", "10 kΩ", "U1.GPIO4", "U2.DATA", "U1.3V3"),
}


@pytest.mark.parametrize("name", sorted(PULL_UPS))
def test_pull_up_is_between_the_data_line_and_the_supply(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    r, d = drawn[name]
    res, value, board_pin, sensor_pin, supply = PULL_UPS[name]
    assert r.part(res).value == value
    groups = {ref: g for g in d.netlist for ref in g}
    data, vcc = groups[board_pin], groups[supply]
    assert sensor_pin in data, "the data line runs straight from the board to the sensor"
    assert {f"{res}.1", f"{res}.2"} == {ref for ref in data | vcc if ref.startswith(f"{res}.")}
    assert (f"{res}.1" in data) != (f"{res}.1" in vcc)  # one end on each: a pull-up
    supply_label = r.part(supply.split(".")[0]).pin(supply.split(".")[1]).label
    assert supply_label.endswith(("3V3", "5V")), supply_label


FLYBACK = {  # recipe: (diode, coil +, coil -, relay contact feeding the coil)
    "gpio-door-lock": ("D1", "L1.+", "L1.-", "K1.NO"),
    "gpio-thermostat": ("D1", "K2C.A1", "K2C.A2", "K1.NO"),
    "serial-controller": ("D1", "K2C.A1", "K2C.A2", "K1.NO"),
    "esp32-companion": ("D1", "K2C.A1", "K2C.A2", "K1.NO"),
}


@pytest.mark.parametrize("name", sorted(FLYBACK))
def test_flyback_diode_is_across_the_coil_cathode_to_plus(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    r, d = drawn[name]
    diode, plus, minus, contact = FLYBACK[name]
    assert r.part(diode).kind == "diode" and r.part(diode).value == "1N4007"
    groups = {ref: g for g in d.netlist for ref in g}
    assert f"{diode}.K" in groups[plus] and contact in groups[plus]
    assert f"{diode}.A" in groups[minus]
    assert groups[plus] != groups[minus]
    assert not r.part(plus.split(".")[0]).mains


@pytest.mark.parametrize("name", RECIPES)
def test_relay_modules_have_distinct_supply_ground_and_input_nets(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    r, d = drawn[name]
    modules = [p for p in r.parts if p.title and "relay module" in p.title[0]]
    assert bool(modules) == (name != "ble-sensor")
    groups = {ref: g for g in d.netlist for ref in g}
    for k in modules:
        ins = [q.id for q in k.pins if q.id.startswith("IN")]
        nets = [groups[f"{k.id}.{pin}"] for pin in ("VCC", "GND", *ins)]
        assert len(set(nets)) == 3, nets
        for net in nets:  # each one goes to the board
            assert any(ref.startswith(f"{r.board}.") for ref in net), net
        assert f"{k.id}.NC" not in groups  # the NC contact stays free: off = safe


@pytest.mark.parametrize("name", RECIPES)
def test_mains_parts_sit_in_the_labelled_mains_box(
    name: str, drawn: dict[str, tuple[Recipe, Drawn]]
) -> None:
    r, d = drawn[name]
    mains = {p.id for p in r.parts if p.mains}
    assert bool(mains) == bool(r.zones) == (name not in ("gpio-door-lock", "ble-sensor"))
    for z in r.zones:
        assert z.label.startswith("MAINS 230 V AC: qualified installer only")
        assert z.label in svg_texts(d.svg)
        x0, y0, x1, y1 = z.rect
        for ref, (x, y) in d.pins.items():
            inside = x0 < x < x1 and y0 < y < y1
            assert inside == (ref.split(".")[0] in mains), ref
    for net in r.nets:  # no wire crosses between the mains and the SELV side
        sides = {ref.split(".")[0] in mains for ref in net.pins}
        assert len(sides) == 1, net.name


def test_bom_lists_every_part_with_its_value() -> None:
    for name in RECIPES:
        r = load_recipe(name)
        rows = {ref: row for row in r.bom for ref in row.refs}
        for part in r.parts:
            assert part.ref in rows, (name, part.ref)
            if part.value:
                assert part.value in rows[part.ref].part + rows[part.ref].notes, (name, part.id)
        readme = (HARDWARE_DIR / name / "README.md").read_text(encoding="utf-8")
        for row in r.bom:
            assert row.part in readme


def test_hardware_readme_shows_every_diagram() -> None:
    text = (HARDWARE_DIR / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", text)
    assert images == [f"{name}/wiring.svg" for name in RECIPES]
    for name in RECIPES:
        assert "![Wiring diagram: " in (HARDWARE_DIR / name / "README.md").read_text()


def test_geometry_reads_crossings_and_tees_like_a_person() -> None:
    pins = {"A.1": (0, 0), "A.2": (10, 0), "B.1": (5, -5), "B.2": (5, 5), "C.1": (10, 5)}
    cross = [Seg((0, 0), (10, 0)), Seg((5, -5), (5, 5))]
    assert drawn_netlist(cross, pins) == [frozenset({"A.1", "A.2"}), frozenset({"B.1", "B.2"})]
    assert junctions(cross) == []  # a crossing gets no dot
    tee = [Seg((0, 0), (10, 0)), Seg((5, 0), (5, 5))]
    assert drawn_netlist(tee, pins) == [frozenset({"A.1", "A.2", "B.2"})]
    assert junctions(tee) == [(5, 0)]
    pin_tee = [Seg((0, 0), (10, 0)), Seg((10, 0), (10, 5))]  # two wires on pin A.2
    assert junctions(pin_tee, list(pins.values())) == [(10, 0)]
    assert drawn_netlist(pin_tee, pins) == [frozenset({"A.1", "A.2", "C.1"})]


def test_a_broken_recipe_is_refused_with_a_code(tmp_path: Path) -> None:
    src = (HARDWARE_DIR / "gpio-door-lock" / "recipe.toml").read_text(encoding="utf-8")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "recipe.toml").write_text(
        src.replace('pins = ["PI.13", "S1.1"]', 'pins = ["PI.13", "S9.1"]')
    )
    with pytest.raises(RecipeError, match=r"no part 'S9'") as exc:
        load_recipe("bad", root=tmp_path)
    assert exc.value.code == "recipe"
    (tmp_path / "bad" / "recipe.toml").write_text(src.replace('"PI.14", "S1.2"', '"PI.14"'))
    with pytest.raises(RecipeError, match="a net joins two pins or more"):
        load_recipe("bad", root=tmp_path)
    (tmp_path / "bad" / "recipe.toml").write_text(src.replace('refs = ["F1"]', "refs = []"))
    with pytest.raises(RecipeError, match="missing from the BOM"):
        load_recipe("bad", root=tmp_path)
    (tmp_path / "bad" / "recipe.toml").write_text("title = [")
    with pytest.raises(RecipeError, match=r"\(file\)"):
        load_recipe("bad", root=tmp_path)


def test_a_drawing_that_leaves_a_part_unwired_is_refused(
    drawn: dict[str, tuple[Recipe, Drawn]],
) -> None:
    """The old door-lock diagram's fault: a flyback diode drawn with no connections."""
    r, d = drawn["gpio-door-lock"]
    kept = [s for net, s in d.segments if net not in ("STRIKE_PLUS", "12V_0V")]
    broken = Drawn(svg=d.svg, netlist=drawn_netlist(kept, d.pins))
    assert not any("D1.K" in g or "D1.A" in g for g in broken.netlist)
    with pytest.raises(
        RecipeError, match=r"drawing differs: not drawn \['12V_0V', 'STRIKE_PLUS'\]"
    ):
        netlist(r, broken, REPO)
