"""The switch and sensor Things against the simulator, and build_thing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from device_drivers.sim import SimDriver
from gateway.config.model import (
    LockSafety,
    Safety,
    SensorSafety,
    SwitchSafety,
    ThermostatSafety,
    ThingConfig,
)
from gateway.errors import ConfigError, ThingError
from gateway.things import Lock, Sensor, Switch, Thermostat, build_thing
from gateway.things.bus import Subscription


async def until(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def drain(sub: Subscription) -> list[Any]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait().data)
    return out


def switch(safety: SwitchSafety | None = None, **settings: Any) -> tuple[Switch, SimDriver]:
    safety = safety or SwitchSafety()
    driver = SimDriver("plug", "switch", settings)
    cfg = ThingConfig(name="plug", type="switch", title="Plug", safety=safety)
    thing = build_thing(cfg, driver)
    assert isinstance(thing, Switch)
    return thing, driver


def sensor(safety: SensorSafety, **settings: Any) -> tuple[Sensor, SimDriver]:
    driver = SimDriver("env", "sensor", {"sample_s": 0.01, **settings})
    cfg = ThingConfig(name="env", type="sensor", title="Environment", safety=safety)
    thing = build_thing(cfg, driver)
    assert isinstance(thing, Sensor)
    return thing, driver


# -- switch
async def test_switch_safe_state_at_start_and_stop() -> None:
    thing, driver = switch(SwitchSafety(safe_state=True))  # e.g. a ventilation fan
    await thing.start()
    assert await thing.read_property("on") is True and driver.value("output") is True
    await thing.write_property("on", False, "alice")
    assert driver.value("output") is False
    await thing.stop()
    assert driver.value("output") is True
    assert not driver.running


async def test_switch_operations_carry_the_actor() -> None:
    thing, driver = switch()
    await thing.start()
    assert await thing.read_property("on") is False
    events = thing.bus.subscribe("event", "switched")
    await thing.write_property("on", True, "alice")
    assert await thing.invoke_action("toggle", None, "bob") is False
    assert [(e["actor"], e["on"]) for e in drain(events)] == [("alice", True), ("bob", False)]
    for call, code in [
        (thing.write_property("on", "yes", "m"), "invalid_input"),
        (thing.write_property("fault", None, "m"), "read_only"),
        (thing.invoke_action("toggle", 1, "m"), "invalid_input"),
        (thing.invoke_action("blink", None, "m"), "unknown_affordance"),
    ]:
        with pytest.raises(ThingError) as err:
            await call
        assert err.value.code == code
    assert driver.value("output") is False
    await thing.stop()


async def test_switch_max_on_time() -> None:
    thing, driver = switch(SwitchSafety(max_on_s=0.1))
    await thing.start()
    events = thing.bus.subscribe("event", "switched")
    await thing.write_property("on", True, "alice")
    await thing.write_property("on", True, "alice")  # does not extend the limit
    await until(lambda: driver.value("output") is False, timeout=0.5)
    assert drain(events)[-1]["actor"] == "system"
    await thing.stop()


async def test_switch_faults_go_to_safe_state() -> None:
    thing, driver = switch()
    await thing.start()
    await thing.write_property("on", True, "alice")
    driver.fail_sensor("output", "link lost")  # a fault pushed by the driver
    await until(lambda: driver.value("output") is False)
    assert "link lost" in await thing.read_property("fault")
    driver.clear_sensor_faults()
    driver.fail_writes("relay dead")
    with pytest.raises(ThingError) as err:
        await thing.write_property("on", True, "alice")
    assert err.value.code == "driver_fault"
    with pytest.raises(ThingError) as err:
        await thing.read_property("on")  # neither write worked: the state is unknown
    assert err.value.code == "driver_fault"
    driver.restore_writes()
    await thing.write_property("on", False, "alice")
    assert await thing.read_property("on") is False
    assert await thing.read_property("fault") is None
    await thing.stop()


# -- sensor
ALL = SensorSafety(kinds=("temperature", "humidity", "contact"), stale_s=0.15, poll_s=0.02)


async def test_sensor_values_and_observation() -> None:
    thing, driver = sensor(ALL, humidity_pct=55)
    temps = thing.bus.subscribe("property", "temperature")
    await thing.start()
    assert await thing.read_property("temperature") == 21.0
    assert await thing.read_property("humidity") == 55.0
    assert await thing.read_property("contact") is True
    assert await thing.read_property("fault") is None
    driver.set_value("temperature", 23.5)
    await until(lambda: thing.bus.last[("property", "temperature")].data == 23.5)
    assert drain(temps)[:1] == [21.0]  # the first trusted value, then only real changes
    with pytest.raises(ThingError) as err:
        await thing.write_property("temperature", 1.0, "m")
    assert err.value.code == "read_only"
    await thing.stop()


@pytest.mark.parametrize(
    "inject, words",
    [
        (lambda d: d.make_stale("humidity"), "stale"),
        (lambda d: d.fail_sensor("humidity", "i2c nack"), "i2c nack"),
        (lambda d: d.force_value("humidity", 150.0), "outside"),
    ],
)
async def test_sensor_faults_are_never_values(
    inject: Callable[[SimDriver], None], words: str
) -> None:
    thing, driver = sensor(ALL)
    await thing.start()
    inject(driver)

    async def humidity_fails() -> bool:
        try:
            await thing.read_property("humidity")
        except ThingError as err:
            assert err.code == "sensor_fault" and words in str(err)
            return True
        return False

    deadline = time.monotonic() + 1.0
    while not await humidity_fails():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert "humidity" in await thing.read_property("fault")
    assert await thing.read_property("temperature") == 21.0  # the other kinds carry on
    driver.clear_sensor_faults()
    await until(lambda: thing._fault is None)
    assert await thing.read_property("humidity") == 45.0
    await thing.stop()
    assert not [t for t in asyncio.all_tasks() if "env" in t.get_name()]


async def test_sensor_only_configured_kinds() -> None:
    thing, _ = sensor(SensorSafety(kinds=("contact",)))
    assert set(thing.properties) == {"contact", "fault"}
    with pytest.raises(ThingError) as err:
        await thing.read_property("temperature")
    assert err.value.code == "unknown_affordance"
    with pytest.raises(ConfigError, match="kinds"):
        sensor(SensorSafety(kinds=("pressure",)))


# -- build_thing
def test_build_thing_types_and_mismatches() -> None:
    cases: list[tuple[str, type, Safety]] = [
        ("lock", Lock, LockSafety()),
        ("thermostat", Thermostat, ThermostatSafety()),
        ("switch", Switch, SwitchSafety()),
        ("sensor", Sensor, SensorSafety()),
    ]
    for typ, cls, safety in cases:
        cfg = ThingConfig(name="x", type=typ, title="X", safety=safety)
        thing = build_thing(cfg, SimDriver("x", typ, {}))
        assert isinstance(thing, cls) and thing.type_name == typ
    # a ThingConfig made without safety= gets the type's defaults
    thing = build_thing(
        ThingConfig(name="x", type="switch", title="X"), SimDriver("x", "switch", {})
    )
    assert isinstance(thing, Switch) and thing.safety == SwitchSafety()
    bad = [
        (ThingConfig(name="x", type="toaster", title="X"), SimDriver("x", "switch", {})),
        (ThingConfig(name="x", type="lock", title="X"), SimDriver("x", "switch", {})),
        (ThingConfig(name="x", type="lock", title="X"), SimDriver("y", "lock", {})),
        (
            ThingConfig(name="x", type="lock", title="X", safety=ThermostatSafety()),
            SimDriver("x", "lock", {}),
        ),
    ]
    for cfg, driver in bad:
        with pytest.raises(ConfigError):
            build_thing(cfg, driver)


async def test_switch_nothing_runs_after_stop() -> None:
    thing, driver = switch()
    await thing.start()
    stopping = asyncio.create_task(thing.stop())
    await asyncio.sleep(0)
    with pytest.raises(ThingError):
        await thing.write_property("on", True, "mallory")
    await stopping
    assert driver.value("output") is False
