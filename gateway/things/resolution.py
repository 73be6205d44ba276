"""The resolution of a measured value, and values rounded to it.

A DS18B20 resolves 0.0625 °C, a DHT22 or an XY-MD02 0.1 °C and 0.1 %RH, a BLE Environmental
Sensing characteristic 0.01; the simulated backend is given 0.1. A companion board reports what
its sensor resolves (it knows its sensor, the gateway does not), so its values are kept as sent.
Digits below the resolution are noise (`20.080277496948078`), so a Thing rounds what it reports
(property reads, notifications, events) to it; its control logic keeps the full value. A driver
may say its resolution itself with a method `resolution(channel) -> float | None`; otherwise it
is looked up here from the backend and the sensor its settings name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from device_drivers.base import Driver

#: per sensor named in the driver settings (the finest one found wins)
SENSORS: Final[Mapping[str, float]] = {
    "ds18b20": 0.0625,
    "dht22": 0.1,
    "dht11": 1.0,
    "xy-md02": 0.1,
    "xymd02": 0.1,
    "sht20": 0.1,
}
#: per backend, when the settings name no known sensor (None: kept as the device reports it)
BACKENDS: Final[Mapping[str, float | None]] = {"ble": 0.01, "companion": None}
DEFAULT: Final = 0.1  # sim, serial line protocol, companion ADC: tenths
MEASURED: Final = frozenset({"temperature", "humidity"})


def _words(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k} {_words(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(_words(v) for v in value)
    return str(value)


def resolution(driver: Driver, channel: str) -> float | None:
    """The resolution of CHANNEL of DRIVER; None for a value that is not measured."""
    own = getattr(driver, "resolution", None)
    if callable(own):
        found = own(channel)
        if isinstance(found, (int, float)) and found > 0:
            return float(found)
    if channel not in MEASURED:
        return None
    settings = driver.settings
    text = _words(settings.get(channel, settings)).lower()
    named = [r for sensor, r in SENSORS.items() if sensor in text]
    if not named:
        named = [r for sensor, r in SENSORS.items() if sensor in _words(settings).lower()]
    if named:
        return min(named)
    return BACKENDS.get(driver.backend, DEFAULT)


def rounded(value: float, step: float | None) -> float:
    """VALUE rounded to a multiple of STEP, printed without float noise (20.1, not
    20.100000000000001); VALUE itself when STEP is None or VALUE is not finite."""
    if step is None or not math.isfinite(value):
        return value
    exponent = Decimal(repr(step)).as_tuple().exponent
    digits = max(0, -exponent) if isinstance(exponent, int) else 4
    return round(round(value / step) * step, digits)
