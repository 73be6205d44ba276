"""Regenerates every recipe's wiring.svg, netlist.json and README tables from its recipe.toml.

python -m hardware.build            # write them
python -m hardware.build --check    # exit 1 naming the files that are out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.storage import atomic_write_text

from . import HARDWARE_DIR, RECIPES
from .docs import config_value, load_config, readme
from .draw import Drawn, draw
from .recipe import Recipe, RecipeError, load_recipe


def netlist(r: Recipe, drawn: Drawn, repo: Path) -> dict[str, Any]:
    """The netlist as drawn, named after the description's nets; refuses any difference."""
    by_pins = {frozenset(n.pins): n.name for n in r.nets}
    drawn_sets = set(drawn.netlist)
    if drawn_sets != set(by_pins):
        missing = sorted(by_pins[s] for s in set(by_pins) - drawn_sets)
        extra = sorted(sorted(s) for s in drawn_sets - set(by_pins))
        raise RecipeError(r.name, "nets", f"drawing differs: not drawn {missing}, drawn {extra}")
    config = load_config(r, repo)
    settings: dict[str, Any] = {}
    for part in r.parts:
        for pin in part.pins:
            for ref in pin.config:
                net = r.net_of(f"{part.id}.{pin.id}")
                settings[ref] = {
                    "value": config_value(config, ref),
                    "pin": f"{part.id}.{pin.id}",
                    "gpio": pin.gpio,
                    "channel": pin.channel or None,
                    "net": net.name if net else None,
                }
    return {
        "recipe": r.name,
        "nets": {by_pins[s]: sorted(s) for s in sorted(drawn_sets, key=lambda s: by_pins[s])},
        "free": sorted(f"{p.id}.{q.id}" for p in r.parts for q in p.pins if q.free),
        "mains": sorted(p.id for p in r.parts if p.mains),
        "parts": {p.id: {"ref": p.ref, "kind": p.kind, "value": p.value} for p in r.parts},
        "config": settings,
    }


def outputs(name: str, root: Path = HARDWARE_DIR) -> dict[Path, str]:
    """Every generated file of recipe NAME (in ROOT, whose parent holds examples/)."""
    r = load_recipe(name, root)
    drawn = draw(r)
    folder = root / name
    readme_path = folder / "README.md"
    nets = netlist(r, drawn, root.parent)
    return {
        folder / "wiring.svg": drawn.svg + "\n",
        folder / "netlist.json": json.dumps(nets, indent=2, ensure_ascii=False) + "\n",
        readme_path: readme(r, readme_path.read_text(encoding="utf-8"), root.parent),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hardware.build", description=__doc__)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    ap.add_argument("--root", type=Path, default=HARDWARE_DIR, help="the hardware/ folder to use")
    ap.add_argument("recipes", nargs="*", help=f"default: all of {', '.join(RECIPES)}")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        print(f"error (recipe): no recipe named {', '.join(unknown)}", file=sys.stderr)
        return 2
    stale: list[str] = []
    try:
        for name in args.recipes or RECIPES:
            for path, text in outputs(name, args.root).items():
                current = path.read_text(encoding="utf-8") if path.exists() else None
                if current == text:
                    continue
                stale.append(str(path.relative_to(args.root.parent)))
                if not args.check:
                    atomic_write_text(path, text, mode=0o644)
    except RecipeError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "written"
    for path_text in stale:
        print(f"{verb}: {path_text}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
