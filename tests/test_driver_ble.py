"""The ble backend: the real bleak BlueZ path against a fake BlueZ on a private dbus-daemon."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device_drivers.ble import BleDriver, decode
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.testing.bluez import FakeBluez, private_bus, system_bus
from tests.driver_rigs import until

FAST = {"reconnect_initial_s": 0.05, "reconnect_cap_s": 0.2, "connect_timeout_s": 2.0}


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[str]:
    before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    async with private_bus(tmp_path) as address:
        with system_bus(address):
            yield address
    assert os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") == before  # restored


def test_decode() -> None:
    assert decode("temperature", (2150).to_bytes(2, "little", signed=True)) == 21.5
    assert decode("temperature", (-1025).to_bytes(2, "little", signed=True)) == -10.25
    assert decode("humidity", (4550).to_bytes(2, "little")) == 45.5
    assert decode("door", b"\x01") is True
    for channel, data, needle in [
        ("temperature", b"\x00\x80", "unknown"),
        ("temperature", b"\x01", "expected 2"),
        ("humidity", (10001).to_bytes(2, "little"), "not a humidity"),
        ("door", b"\x02", "expected 00 or 01"),
        ("door", b"", "nothing"),
    ]:
        with pytest.raises(DriverError, match=needle):
            decode(channel, data)


async def test_notify_read_write_and_reconnect(bus: str) -> None:
    fake = await FakeBluez("sensor").start(bus)
    d = BleDriver("garage", "sensor", {"address": fake.address.lower(), **FAST})
    await d.start()
    got: list[Any] = []
    d.subscribe("temperature", lambda ch, item: got.append(item))
    fake.set_temperature(23.25)
    await until(lambda: any(getattr(i, "value", None) == 23.25 for i in got))
    assert (await d.read("humidity")).value == 45.0
    fake.set_temperature_raw(b"\x00\x80")  # the sensor says "unknown": a fault, not a value
    await until(lambda: isinstance(got[-1], DriverError))
    with pytest.raises(DriverError, match="unknown"):
        await d.read("temperature")
    fake.go_away()
    await until(lambda: "disconnected" in str(got[-1]))
    with pytest.raises(DriverError, match="link down"):
        await d.read("temperature")
    await asyncio.sleep(0.3)  # several reconnect attempts fail while it is away
    fake.come_back()
    await until(d.connected.is_set)
    fake.set_temperature(19.5)
    await until(lambda: getattr(got[-1], "value", None) == 19.5)  # notifications re-armed
    assert d.connects == 2
    await d.stop()
    await fake.stop()


async def test_poll_mode_and_write_with_response(bus: str) -> None:
    fake = await FakeBluez("switch", notify=False).start(bus)
    d = BleDriver("porch", "switch", {"address": fake.address, "mode": "poll", **FAST})
    await d.start()
    await d.write("output", True)
    assert fake.actuator() is True and fake.writes[-1][1] == b"\x01"
    assert (await d.read("output")).value is True
    with pytest.raises(DriverError, match="true or false"):
        await d.write("output", 0.5)
    await d.stop()
    assert fake.actuator() is False  # safe state written before disconnecting
    await fake.stop()


async def test_missing_adapter_names_the_fix(bus: str) -> None:
    fake = await FakeBluez("sensor", adapter=False).start(bus)
    d = BleDriver("garage", "sensor", {"address": fake.address, **FAST})
    with pytest.raises(DriverConfigError) as err:
        await d.start()
    assert "thing 'garage'" in str(err.value) and "hci0" in str(err.value)
    assert "systemctl enable --now bluetooth" in str(err.value)
    await fake.stop()


async def test_no_bluez_on_the_bus_names_the_fix(bus: str) -> None:
    d = BleDriver("garage", "sensor", {"address": "C0:FF:EE:00:00:09", **FAST})
    with pytest.raises(DriverConfigError, match="bluetooth"):
        await d.start()


async def test_device_out_of_range_at_start_is_a_fault_not_a_crash(bus: str) -> None:
    fake = await FakeBluez("thermostat").start(bus)
    fake.go_away()
    d = BleDriver("room", "thermostat", {"address": fake.address, **FAST})
    await d.start()
    with pytest.raises(DriverError, match="link down"):
        await d.read("temperature")
    fake.come_back()
    await until(d.connected.is_set)
    assert (await d.read("temperature")).value == 20.0
    await d.stop()
    await fake.stop()


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({}, "'address': required"),
        ({"address": "C0:FF:EE"}, "'address'"),
        ({"address": "C0:FF:EE:00:00:01", "adapter": "bt0"}, "'adapter'"),
        ({"address": "C0:FF:EE:00:00:01", "mode": "push"}, "'mode'"),
        ({"address": "C0:FF:EE:00:00:01", "temperature": {"uuid": "xyz"}}, "'temperature.uuid'"),
        ({"address": "C0:FF:EE:00:00:01", "rssi": 3}, "'rssi'"),
    ],
)
def test_ble_bad_settings(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(DriverConfigError) as err:
        BleDriver("room", "sensor", settings)
    assert "thing 'room'" in str(err.value) and needle in str(err.value)
