"""Driver backends by name, like gpiozero's pin factories.

A backend is a `Driver` subclass registered under the entry point group `streembit.drivers`
(`sim = "device_drivers.sim:SimDriver"` in pyproject.toml). The built-in backends also work from a
source tree that was never installed. Nothing is imported until a backend is asked for, so a
backend whose library is missing (gpiozero, bleak) only fails for the Things that use it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from device_drivers.base import Claim, Driver
from device_drivers.errors import DriverConfigError

ENTRY_POINT_GROUP = "streembit.drivers"
BUILTIN_BACKENDS: Mapping[str, str] = {
    "sim": "device_drivers.sim:SimDriver",
    "gpio": "device_drivers.gpio:GpioDriver",
    "onewire": "device_drivers.onewire:OneWireDriver",
    "serial": "device_drivers.serial:SerialDriver",
    "ble": "device_drivers.ble:BleDriver",
    "companion": "device_drivers.companion:CompanionDriver",
}


def _targets() -> dict[str, list[str]]:
    """backend name -> "module:attr" targets to try, registered entry point first."""
    found: dict[str, list[str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(ep.value)
    for name, target in BUILTIN_BACKENDS.items():
        if target not in found.setdefault(name, []):
            found[name].append(target)
    return found


def available_backends() -> list[str]:
    """The names of every registered backend, sorted."""
    return sorted(_targets())


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = import_module(module.strip())
    return functools.reduce(getattr, attr.strip().split("."), obj) if attr else obj


def driver_class(backend: str, thing: str = "?") -> type[Driver]:
    """The Driver class of BACKEND; DriverConfigError naming THING if it is unknown or broken."""
    targets = _targets()
    if backend not in targets:
        raise DriverConfigError(
            f"thing {thing!r}: unknown driver backend {backend!r} "
            f"(known backends: {', '.join(sorted(targets)) or 'none'})"
        )
    problems: list[str] = []
    for target in targets[backend]:
        try:
            obj = _load(target)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{target}: {exc}")
            continue
        if isinstance(obj, type) and issubclass(obj, Driver):
            return obj
        problems.append(f"{target}: not a Driver subclass")
    raise DriverConfigError(
        f"thing {thing!r}: driver backend {backend!r} cannot be loaded ({'; '.join(problems)})"
    )


def create_driver(
    backend: str, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
) -> Driver:
    """A new, not yet started driver of BACKEND for THING (of THING_TYPE).

    `inject` passes test doubles or shared handles (a gpiozero pin factory, a sysfs root, an MQTT
    client) to backends that take them.
    """
    return driver_class(backend, thing)(thing, thing_type, settings, **inject)


def check_drivers(drivers: Sequence[Driver]) -> None:
    """Pre-flight for a whole gateway, before any Thing starts: every driver's `validate()`, then
    no exclusive resource (a pin, a serial port) claimed twice, within one Thing or across Things.
    Raises DriverConfigError naming the Thing and the setting."""
    for driver in drivers:
        driver.validate()
    seen: dict[str, tuple[Driver, Claim]] = {}
    for driver in drivers:
        for claim in driver.claims():
            prev = seen.get(claim.resource)
            if prev is None:
                seen[claim.resource] = (driver, claim)
                continue
            other, first = prev
            if claim.share is not None and claim.share == first.share:
                continue
            owner = "this thing" if other is driver else f"thing {other.thing!r}"
            raise DriverConfigError(
                f"thing {driver.thing!r}: driver setting {claim.setting!r}: {claim.resource} is "
                f"already used by {owner} (setting {first.setting!r}); a pin or port can serve "
                "one purpose only"
            )
