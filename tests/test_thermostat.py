"""The thermostat Thing against the simulated room: hysteresis, bounds, frost protection,
sensor faults, maximum on-time, heater off at stop."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from device_drivers.sim import SimDriver
from gateway.config.model import ThermostatSafety, ThingConfig
from gateway.errors import ThingError
from gateway.things import Thermostat, build_thing
from gateway.things.bus import Subscription

TICK = 0.01
FAST = ThermostatSafety(control_interval_s=TICK, sensor_stale_s=0.2)
FROZEN = {"heat_rate_c_per_s": 0.0, "loss_rate_per_s": 0.0, "sample_s": TICK}  # room holds still


async def until(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def settle() -> None:
    await asyncio.sleep(TICK * 5)


def drain(sub: Subscription) -> list[Any]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait().data)
    return out


def make(safety: ThermostatSafety = FAST, **settings: Any) -> tuple[Thermostat, SimDriver]:
    driver = SimDriver("living", "thermostat", {**FROZEN, **settings})
    cfg = ThingConfig(name="living", type="thermostat", title="Living room", safety=safety)
    thing = build_thing(cfg, driver)
    assert isinstance(thing, Thermostat)
    return thing, driver


@pytest.fixture
async def stat() -> AsyncIterator[tuple[Thermostat, SimDriver]]:
    thing, driver = make(initial_c=19.8)  # inside the band around the default 20 °C target
    await thing.start()
    yield thing, driver
    await thing.stop()


async def test_start_is_safe(stat: tuple[Thermostat, SimDriver]) -> None:
    thing, driver = stat
    assert driver.writes[0] == ("heater", False)  # off before any decision
    assert await thing.read_property("mode") == "heat"
    assert await thing.read_property("targetTemperature") == 20.0
    assert await thing.read_property("temperature") == pytest.approx(19.8)
    assert await thing.read_property("heating") is False  # inside the band: keeps off
    assert await thing.read_property("fault") is None


async def test_hysteresis(stat: tuple[Thermostat, SimDriver]) -> None:
    thing, driver = stat
    changes = thing.bus.subscribe("property", "heating")
    for temp, heating in [(19.6, False), (19.4, True), (20.4, True), (20.6, False), (19.6, False)]:
        driver.set_room_temperature(temp)
        await settle()
        assert thing._heating is heating, temp
        assert driver.value("heater") is heating
    assert drain(changes) == [True, False]


async def test_setpoint_bounds_refused_and_nothing_changes(
    stat: tuple[Thermostat, SimDriver],
) -> None:
    thing, _ = stat
    seen = thing.bus.subscribe("property", "targetTemperature")
    refused = [
        (90, "out_of_range"),
        (-3.0, "out_of_range"),
        ("22", "invalid_input"),
        (True, "invalid_input"),
        (float("nan"), "invalid_input"),
    ]
    for value, code in refused:
        with pytest.raises(ThingError) as err:
            await thing.write_property("targetTemperature", value, "mallory")
        assert err.value.code == code, value
    assert await thing.read_property("targetTemperature") == 20.0
    assert drain(seen) == []
    others = [
        ("mode", "cool", "invalid_input"),
        ("heating", True, "read_only"),
        ("temperature", 30, "read_only"),
        ("boost", 1, "unknown_affordance"),
    ]
    for name, value, code in others:
        with pytest.raises(ThingError) as err:
            await thing.write_property(name, value, "mallory")
        assert err.value.code == code, name
    await thing.write_property("targetTemperature", 22, "alice")
    assert await thing.read_property("targetTemperature") == 22.0
    assert drain(seen) == [22.0]
    await settle()
    assert thing._heating is True  # 19.8 < 22 - 0.5


async def test_mode_off_and_frost_protection(stat: tuple[Thermostat, SimDriver]) -> None:
    thing, driver = stat
    driver.set_room_temperature(10.0)
    await settle()
    assert thing._heating is True
    await thing.write_property("mode", "off", "alice")
    await settle()
    assert thing._heating is False
    for temp, heating in [(4.9, True), (5.4, True), (5.6, False), (5.2, False)]:
        driver.set_room_temperature(temp)
        await settle()
        assert thing._heating is heating, temp


@pytest.mark.parametrize(
    "inject, words",
    [
        (lambda d: d.make_stale("temperature"), "stale"),
        (lambda d: d.force_value("temperature", 127.0), "range"),
        (lambda d: d.force_value("temperature", -127.0), "range"),
        (lambda d: d.fail_sensor("temperature", "1-wire CRC error"), "CRC"),
    ],
)
async def test_sensor_problems_turn_the_heater_off(
    stat: tuple[Thermostat, SimDriver], inject: Callable[[SimDriver], None], words: str
) -> None:
    thing, driver = stat
    faults = thing.bus.subscribe("event", "fault")
    driver.set_room_temperature(15.0)
    await settle()
    assert thing._heating is True
    inject(driver)
    await until(lambda: thing._heating is False)
    assert driver.value("heater") is False
    assert words in await thing.read_property("fault")
    with pytest.raises(ThingError) as err:
        await thing.read_property("temperature")
    assert err.value.code == "sensor_fault"
    [ev] = drain(faults)
    assert ev["active"] is True and words in ev["reason"]
    driver.clear_sensor_faults()
    await until(lambda: thing._heating is True)
    assert await thing.read_property("fault") is None
    assert await thing.read_property("temperature") == pytest.approx(15.0)
    assert [e["active"] for e in drain(faults)] == [False]


async def test_heater_write_fault(stat: tuple[Thermostat, SimDriver]) -> None:
    thing, driver = stat
    driver.fail_writes("relay driver offline")
    driver.set_room_temperature(15.0)
    await settle()
    assert thing._heating is False
    assert "relay driver offline" in await thing.read_property("fault")
    driver.restore_writes()
    await until(lambda: thing._heating is True)
    assert await thing.read_property("fault") is None


async def test_maximum_on_time_then_rest() -> None:
    safety = dataclasses.replace(FAST, max_on_s=0.15, min_off_s=0.2)
    thing, _ = make(safety, initial_c=15.0)
    heating = thing.bus.subscribe("event", "heatingChanged")
    await thing.start()
    assert thing._heating is True
    t_on = time.monotonic()
    await until(lambda: thing._heating is False)
    t_off = time.monotonic()
    assert 0.13 <= t_off - t_on < 0.4
    await until(lambda: thing._heating is True)
    assert time.monotonic() - t_off >= 0.18  # rested min_off_s despite the demand
    reasons = [e["reason"] for e in drain(heating)]
    assert "maximum on-time" in reasons[1]
    await thing.stop()


async def test_stop_turns_the_heater_off() -> None:
    thing, driver = make(initial_c=15.0)
    await thing.start()
    assert driver.value("heater") is True
    await thing.stop()
    assert driver.value("heater") is False
    assert thing._heating is False
    assert not [t for t in asyncio.all_tasks() if "living" in t.get_name()]
    driver.fail_writes("dead")
    await thing.stop()  # never raises, even twice and with a dead driver


async def test_holds_the_room_near_target() -> None:
    # the real heat model, 200x faster: 4 °C/s heating
    thing, driver = make(heat_rate_c_per_s=0.02, loss_rate_per_s=0.0005, time_scale=200.0)
    seen = thing.bus.subscribe("property", "temperature")
    await thing.start()
    await thing.write_property("targetTemperature", 21, "alice")
    await until(lambda: thing._heating is False and float(driver.value("temperature")) > 21.3)
    await asyncio.sleep(0.5)
    temps = [float(t) for t in drain(seen)]
    assert temps and max(temps) < 22.0
    assert 20.0 < float(driver.value("temperature")) < 22.0
    await thing.stop()


class HangingRoom(SimDriver):
    """A backend whose temperature read never returns (a hung 1-wire bus)."""

    hang = False

    async def read(self, channel: str) -> Any:
        if self.hang:
            await asyncio.Event().wait()
        return await super().read(channel)


async def test_hung_sensor_read_turns_the_heater_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.things.io as mod  # every Thing bounds its driver calls there

    monkeypatch.setattr(mod, "IO_TIMEOUT_S", 0.05)
    driver = HangingRoom("living", "thermostat", {**FROZEN, "initial_c": 15.0})
    thing = Thermostat("living", "Living room", driver, FAST)
    await thing.start()
    assert thing._heating is True
    driver.hang = True
    await until(lambda: thing._heating is False)
    assert "timed out" in await thing.read_property("fault")
    await thing.stop()
