"""Hardware recipes: one description per recipe (`<recipe>/recipe.toml`) from which
`python -m hardware.build` draws `wiring.svg`, writes `netlist.json` and the README tables."""

from __future__ import annotations

from pathlib import Path

HARDWARE_DIR = Path(__file__).resolve().parent
RECIPES = (
    "gpio-door-lock",
    "gpio-thermostat",
    "ble-sensor",
    "serial-controller",
    "esp32-companion",
)
