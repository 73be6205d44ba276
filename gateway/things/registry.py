"""Build a Thing from its configuration and an (unstarted) driver."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from device_drivers.base import Driver
from device_drivers.registry import check_drivers, create_driver
from gateway.config.model import (
    LockSafety,
    SensorSafety,
    SwitchSafety,
    ThermostatSafety,
    ThingConfig,
)
from gateway.errors import ConfigError
from gateway.things.base import Thing
from gateway.things.lock import Lock
from gateway.things.sensor import Sensor
from gateway.things.switch import Switch
from gateway.things.thermostat import Thermostat

THING_CLASSES: Mapping[str, type[Thing]] = MappingProxyType(
    {"lock": Lock, "thermostat": Thermostat, "switch": Switch, "sensor": Sensor}
)
SOURCE = "thing config"  # ThingConfig does not know its file; the loader has checked it already
_SAFETY: Mapping[str, type] = {
    "lock": LockSafety,
    "thermostat": ThermostatSafety,
    "switch": SwitchSafety,
    "sensor": SensorSafety,
}


def _lock(cfg: ThingConfig, driver: Driver) -> Thing:
    s = cfg.safety if isinstance(cfg.safety, LockSafety) else LockSafety()
    return Lock(cfg.name, cfg.title, driver, s, cfg.description)


def _thermostat(cfg: ThingConfig, driver: Driver) -> Thing:
    s = cfg.safety if isinstance(cfg.safety, ThermostatSafety) else ThermostatSafety()
    return Thermostat(cfg.name, cfg.title, driver, s, cfg.description)


def _switch(cfg: ThingConfig, driver: Driver) -> Thing:
    s = cfg.safety if isinstance(cfg.safety, SwitchSafety) else SwitchSafety()
    return Switch(cfg.name, cfg.title, driver, s, cfg.description)


def _sensor(cfg: ThingConfig, driver: Driver) -> Thing:
    s = cfg.safety if isinstance(cfg.safety, SensorSafety) else SensorSafety()
    return Sensor(cfg.name, cfg.title, driver, s, cfg.description)


_BUILDERS: Mapping[str, Callable[[ThingConfig, Driver], Thing]] = {
    "lock": _lock,
    "thermostat": _thermostat,
    "switch": _switch,
    "sensor": _sensor,
}


def build_thing(cfg: ThingConfig, driver: Driver) -> Thing:
    """The Thing for CFG, driven by DRIVER (which `Thing.start()` starts).

    Refused with ConfigError: an unknown type, a driver built for another Thing or type, or safety
    settings of another type. The one exception is the dataclass default `LockSafety()` on a
    non-lock Thing (a ThingConfig made without `safety=`): it means "defaults" for that type.
    """
    where = f"things.{cfg.name}"
    build = _BUILDERS.get(cfg.type)
    if build is None:
        raise ConfigError(SOURCE, f"{where}.type", f"one of {', '.join(THING_CLASSES)}")
    if driver.thing_type != cfg.type or driver.thing != cfg.name:
        raise ConfigError(
            SOURCE,
            f"{where}.driver",
            f"a driver for {cfg.type} {cfg.name!r} "
            f"(got one for {driver.thing_type} {driver.thing!r})",
        )
    wanted = _SAFETY[cfg.type]
    if not isinstance(cfg.safety, wanted) and cfg.safety != LockSafety():
        raise ConfigError(
            SOURCE, f"{where}.safety", f"{wanted.__name__} (got {type(cfg.safety).__name__})"
        )
    return build(cfg, driver)


def build_things(
    configs: Sequence[ThingConfig],
    inject: Callable[[ThingConfig], Mapping[str, Any]] = lambda tc: {},
) -> dict[str, Thing]:
    """The Things of a gateway, none started: the one validation path of `run` (Gateway.create)
    and `check-config`. Each driver is created by name from the registry (an unknown backend is
    refused here), all of them pass the pre-flight together (`validate()`, then no pin or port
    claimed twice; nothing is opened), then each Thing is built. INJECT gives the objects a
    Thing's driver needs (companion hubs, test doubles)."""
    drivers = [
        create_driver(tc.driver, tc.name, tc.type, tc.driver_settings, **inject(tc))
        for tc in configs
    ]
    check_drivers(drivers)
    return {tc.name: build_thing(tc, d) for tc, d in zip(configs, drivers, strict=True)}
