"""The simulated driver (device_drivers.sim) and the backend registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from device_drivers.base import Reading
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.registry import available_backends, create_driver, driver_class
from device_drivers.sim import SimDriver


async def until(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def sim_tasks(thing: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"sim-{thing}-")]


@pytest.fixture
async def lock_sim() -> AsyncIterator[SimDriver]:
    d = SimDriver("door", "lock", {"bolt_travel_s": 0.05})
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def room() -> AsyncIterator[SimDriver]:
    d = SimDriver("room", "thermostat", {"time_scale": 100.0, "sample_s": 0.01})
    await d.start()
    yield d
    await d.stop()


# -- construction and registry
def test_bad_configuration_is_refused() -> None:
    with pytest.raises(DriverConfigError, match="toaster"):
        SimDriver("t", "toaster", {})
    with pytest.raises(DriverConfigError, match="bolt_speed"):
        SimDriver("t", "lock", {"bolt_speed": 1})
    with pytest.raises(DriverConfigError, match="bolt_travel_s"):
        SimDriver("t", "lock", {"bolt_travel_s": "fast"})
    with pytest.raises(DriverConfigError, match="time_scale"):
        SimDriver("t", "thermostat", {"time_scale": -1.0})
    with pytest.raises(DriverConfigError, match="injected"):
        SimDriver("t", "switch", {}, pin_factory=object())
    SimDriver("t", "thermostat", {"outside_c": -10, "time_scale": 3})  # ints widen, negatives ok


def test_registry() -> None:
    assert "sim" in available_backends()
    assert driver_class("sim") is SimDriver
    d = create_driver("sim", "front", "lock", {"bolt_travel_s": 0.1})
    assert isinstance(d, SimDriver) and d.thing == "front" and d.cfg["bolt_travel_s"] == 0.1
    with pytest.raises(DriverConfigError) as err:
        create_driver("zigbee", "front", "lock", {})
    msg = str(err.value)
    assert "'front'" in msg and "'zigbee'" in msg and "sim" in msg


async def test_io_needs_start_and_known_channels() -> None:
    d = SimDriver("s", "switch", {})
    with pytest.raises(DriverError, match="not running"):
        await d.read("output")
    await d.start()
    with pytest.raises(DriverConfigError):
        await d.read("heater")
    with pytest.raises(DriverConfigError):
        d.subscribe("heater", lambda c, r: None)
    with pytest.raises(DriverError):
        await d.write("output", 1)  # not a bool
    await d.stop()


# -- lock
async def test_bolt_travels_and_pushes(lock_sim: SimDriver) -> None:
    got: list[Reading | DriverError] = []
    lock_sim.subscribe("bolt_sensor", lambda ch, item: got.append(item))
    assert (await lock_sim.read("bolt_sensor")).value is False  # power-up: retracted
    await lock_sim.write("bolt", True)
    assert (await lock_sim.read("bolt_sensor")).value is False  # still travelling
    await until(lambda: lock_sim.value("bolt_sensor") is True)
    assert [r.value for r in got if isinstance(r, Reading)] == [True]
    assert lock_sim.writes == [("bolt", True)]


async def test_jammed_bolt_stays_then_moves(lock_sim: SimDriver) -> None:
    lock_sim.jam_bolt()
    await lock_sim.write("bolt", True)
    await asyncio.sleep(0.1)
    assert (await lock_sim.read("bolt_sensor")).value is False
    lock_sim.jam_bolt(False)
    await until(lambda: lock_sim.value("bolt_sensor") is True)


async def test_door_contact(lock_sim: SimDriver) -> None:
    got: list[object] = []
    lock_sim.subscribe("door", lambda ch, item: got.append(item))
    assert (await lock_sim.read("door")).value is True
    lock_sim.set_door(False)
    assert (await lock_sim.read("door")).value is False
    assert isinstance(got[-1], Reading) and got[-1].value is False


async def test_write_faults(lock_sim: SimDriver) -> None:
    lock_sim.fail_writes("relay welded")
    with pytest.raises(DriverError, match="relay welded"):
        await lock_sim.write("bolt", True)
    lock_sim.restore_writes()
    await lock_sim.write("bolt", True)


async def test_stop_cancels_tasks_and_locks() -> None:
    d = SimDriver("door2", "lock", {"bolt_travel_s": 5.0})
    await d.start()
    await d.write("bolt", False)
    assert sim_tasks("door2")
    await d.stop()
    assert not sim_tasks("door2")
    assert d.value("bolt") is True and d.value("bolt_sensor") is True
    with pytest.raises(DriverError):
        await d.read("door")


# -- thermostat
async def test_room_heats_and_cools(room: SimDriver) -> None:
    start = (await room.read("temperature")).value
    assert start == pytest.approx(18.0, abs=0.1)
    await room.write("heater", True)
    await until(lambda: float(room.value("temperature")) > 19.0)
    await room.write("heater", False)
    peak = float(room.value("temperature"))
    await asyncio.sleep(0.2)
    assert float(room.value("temperature")) < peak


async def test_temperature_is_sampled_and_pushed(room: SimDriver) -> None:
    got: list[Reading | DriverError] = []
    room.subscribe("temperature", lambda ch, item: got.append(item))
    await until(lambda: len(got) >= 3)
    assert all(isinstance(r, Reading) for r in got)
    room.set_room_temperature(25.0)
    assert (await room.read("temperature")).value == pytest.approx(25.0, abs=0.1)


async def test_sensor_fault_hooks(room: SimDriver) -> None:
    got: list[Reading | DriverError] = []
    room.subscribe("temperature", lambda ch, item: got.append(item))
    room.fail_sensor("temperature", "wire cut")
    with pytest.raises(DriverError, match="wire cut"):
        await room.read("temperature")
    assert isinstance(got[-1], DriverError)
    room.clear_sensor_faults()
    room.force_value("temperature", -127.0)
    assert (await room.read("temperature")).value == -127.0
    room.clear_sensor_faults("temperature")
    room.make_stale("temperature")
    frozen = await room.read("temperature")
    got.clear()
    await asyncio.sleep(0.05)
    assert got == []  # no more samples
    assert (await room.read("temperature")).at == frozen.at
    room.clear_sensor_faults()
    assert (await room.read("temperature")).at > frozen.at


async def test_stop_turns_heater_off(room: SimDriver) -> None:
    await room.write("heater", True)
    await room.stop()
    assert room.value("heater") is False
    assert not sim_tasks("room")


# -- switch and sensor
async def test_switch_safe_output_and_sensor_values() -> None:
    sw = SimDriver("plug", "switch", {"safe_output": True})
    await sw.start()
    assert (await sw.read("output")).value is True
    await sw.write("output", False)
    await sw.stop()
    assert sw.value("output") is True
    se = SimDriver("env", "sensor", {"humidity_pct": 60, "sample_s": 0.01})
    await se.start()
    assert (await se.read("humidity")).value == 60.0
    assert (await se.read("contact")).value is True
    se.set_value("contact", False)
    assert (await se.read("contact")).value is False
    await se.stop()
