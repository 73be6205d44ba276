"""One rig per driver backend: a Thing config on that backend's test double, and the physical
world behind it (is the bolt thrown, is the heater powered, set the room temperature, pull the
plug). The contract suite (tests/test_driver_contract.py) runs the same checks on every rig."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from device_drivers.testing.bluez import FakeBluez, private_bus, system_bus
from device_drivers.testing.gpio import level, mock_factory
from device_drivers.testing.serial_device import FakeController, FakeModbusBus
from device_drivers.testing.sysfs import SysfsTree
from gateway.config.model import (
    LockSafety,
    Safety,
    SensorSafety,
    SwitchSafety,
    ThermostatSafety,
    ThingConfig,
)

NAME = {"lock": "front-door", "thermostat": "living-room", "switch": "porch", "sensor": "garage"}
TICK = 0.05


async def until(pred: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"condition not reached in time {what}"
        await asyncio.sleep(0.005)


def safety(thing_type: str, kinds: tuple[str, ...]) -> Safety:
    if thing_type == "lock":
        return LockSafety(auto_relock_s=0, jam_timeout_s=0.4)
    if thing_type == "thermostat":
        return ThermostatSafety(control_interval_s=TICK, sensor_stale_s=5.0)
    if thing_type == "switch":
        return SwitchSafety()
    return SensorSafety(kinds=kinds, stale_s=5.0, poll_s=TICK)


class Rig:
    backend: ClassVar[str]
    types: ClassVar[tuple[str, ...]]
    fault_types: ClassVar[tuple[str, ...]]  # the types whose fault() this rig can inject
    sensor_kinds: ClassVar[tuple[str, ...]] = ("temperature",)
    lock_fault_when_locked: ClassVar[bool] = False  # the fault only exists while locked

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.thing_type = ""
        self.gw: Any = None

    async def open(self, thing_type: str) -> None:
        """Async set-up of the double before the config is made (a bus, a daemon)."""
        return None

    def config(self, thing_type: str) -> tuple[ThingConfig, dict[str, Any]]:
        self.thing_type = thing_type
        settings, inject = self.prepare(thing_type)
        tc = ThingConfig(
            name=NAME[thing_type],
            type=thing_type,
            title=f"{self.backend} {thing_type}",
            driver=self.backend,
            driver_settings=settings,
            safety=safety(thing_type, self.sensor_kinds),
        )
        return tc, inject

    @property
    def driver(self) -> Any:
        return self.gw.things[NAME[self.thing_type]].driver

    # -- per backend
    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def bolt_locked(self) -> bool:
        raise NotImplementedError

    def heater_on(self) -> bool:
        raise NotImplementedError

    def output_on(self) -> bool:
        raise NotImplementedError

    def set_temperature(self, celsius: float) -> None:
        raise NotImplementedError

    def fault(self) -> str:
        """Inject this backend's characteristic fault; returns text the Thing's fault names."""
        raise NotImplementedError

    def recover(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SimRig(Rig):
    backend = "sim"
    types = ("lock", "thermostat", "switch", "sensor")
    fault_types = types

    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        settings: dict[str, Any] = {
            "lock": {"bolt_travel_s": 0.01},
            "thermostat": {"heat_rate_c_per_s": 0.0, "loss_rate_per_s": 0.0, "sample_s": TICK},
            "switch": {},
            "sensor": {"sample_s": TICK, "temperature_c": 20.0},
        }[thing_type]
        return settings, {}

    def bolt_locked(self) -> bool:
        return bool(self.driver.value("bolt"))

    def heater_on(self) -> bool:
        return bool(self.driver.value("heater"))

    def output_on(self) -> bool:
        return bool(self.driver.value("output"))

    def set_temperature(self, celsius: float) -> None:
        if self.thing_type == "thermostat":
            self.driver.set_room_temperature(celsius)
        else:
            self.driver.set_value("temperature", celsius)

    def _faulty(self) -> str:
        return {"lock": "bolt_sensor", "switch": "output"}.get(self.thing_type, "temperature")

    def fault(self) -> str:
        self.driver.fail_sensor(self._faulty(), "simulated link loss")
        return "simulated link loss"

    def recover(self) -> None:
        self.driver.clear_sensor_faults()


class GpioRig(Rig):
    """Relays and contacts on gpiozero MockFactory pins; DS18B20 in a sysfs tree."""

    backend = "gpio"
    types = ("lock", "thermostat", "switch", "sensor")
    fault_types = ("lock", "thermostat", "sensor")
    sensor_kinds = ("temperature", "contact")
    lock_fault_when_locked = True  # pins do not fail: the lock's fault is a door forced open
    BOLT, DOOR, HEATER, OUTPUT, CONTACT = 17, 27, 22, 23, 24

    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.factory = mock_factory()
        self.tree = SysfsTree(self.tmp / "sys")
        self.probe = self.tree.add_ds18b20(celsius=20.0)
        root = str(self.tree.root)
        if thing_type == "lock":
            self.factory.pin(self.DOOR).wire(False)  # door closed (reed switch to GND)
            settings: dict[str, Any] = {
                "bolt": {"pin": self.BOLT, "active_high": False},
                "bolt_sensor": "relay",
                "door": {"pin": self.DOOR, "bounce_s": 0.0},
            }
        elif thing_type == "thermostat":
            settings = {
                "heater": {"pin": self.HEATER},
                "temperature": {"ds18b20": self.probe},
                "sysfs_root": root,
            }
        elif thing_type == "switch":
            settings = {"output": {"pin": f"GPIO{self.OUTPUT}"}}
        else:
            self.factory.pin(self.CONTACT).wire(False)
            settings = {
                "contact": {"pin": "BOARD18", "bounce_s": 0.0},  # BOARD18 is GPIO24
                "ds18b20": self.probe,
                "sysfs_root": root,
            }
        return settings, {"pin_factory": self.factory}

    def bolt_locked(self) -> bool:
        return level(self.factory, self.BOLT)  # active-low relay released = strike locked

    def heater_on(self) -> bool:
        return level(self.factory, self.HEATER)

    def output_on(self) -> bool:
        return level(self.factory, self.OUTPUT)

    def set_temperature(self, celsius: float) -> None:
        self.tree.set_ds18b20(self.probe, celsius)

    def fault(self) -> str:
        if self.thing_type == "lock":
            self.factory.pin(self.DOOR).wire(None)  # door forced open while locked
            return "door open"
        if self.thing_type == "sensor":
            self.tree.unplug(self.probe)
            return "absent"
        self.tree.ds18b20_crc_error(self.probe)
        return "CRC"

    def recover(self) -> None:
        if self.thing_type == "lock":
            self.factory.pin(self.DOOR).wire(False)
        elif self.thing_type == "sensor":
            self.tree.replug(self.probe)
        else:
            self.tree.set_ds18b20(self.probe, 20.0)


class OneWireRig(Rig):
    backend = "onewire"
    types = ("sensor",)
    fault_types = types
    sensor_kinds = ("temperature", "humidity")

    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.tree = SysfsTree(self.tmp / "sys")
        self.probe = self.tree.add_ds18b20(celsius=20.0)
        self.dht = self.tree.add_dht22("iio:device0", 20.0, 45.0)
        settings = {"ds18b20": self.probe, "humidity": {"dht22": self.dht}}
        return settings, {"sysfs_root": self.tree.root}

    def set_temperature(self, celsius: float) -> None:
        self.tree.set_ds18b20(self.probe, celsius)

    def fault(self) -> str:
        self.tree.ds18b20_crc_error(self.probe)
        return "CRC"

    def recover(self) -> None:
        self.tree.set_ds18b20(self.probe, 20.0)


class SerialLineRig(Rig):
    """A fake Arduino-class board on a pty; the fault is the USB cable pulled."""

    backend = "serial"
    types = ("lock", "thermostat", "switch", "sensor")
    fault_types = types
    sensor_kinds = ("temperature", "humidity", "contact")

    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.board = FakeController(self.tmp / f"tty-{thing_type}", thing_type, watchdog_s=1.0)
        if "temperature" in self.board.values:
            self.board.values["temperature"] = 20.0
        self.board.start()
        settings = {
            "port": str(self.board.path),
            "keepalive_s": 0.2,
            "timeout_s": 0.3,
            "reconnect_initial_s": 0.05,
            "reconnect_cap_s": 0.2,
        }
        return settings, {}

    def bolt_locked(self) -> bool:
        return bool(self.board.value("bolt"))

    def heater_on(self) -> bool:
        return bool(self.board.value("heater"))

    def output_on(self) -> bool:
        return bool(self.board.value("output"))

    def set_temperature(self, celsius: float) -> None:
        self.board.set_input("temperature", celsius)

    def fault(self) -> str:
        self.board.unplug()
        return "lost"

    def recover(self) -> None:
        self.board.replug()

    async def close(self) -> None:
        self.board.stop()


class SerialModbusRig(Rig):
    """An XY-MD02 and a relay module on a fake RS-485 bus; the fault is a corrupted line (every
    reply fails its CRC: the relay module still acts on the frames it receives intact)."""

    backend = "serial"
    types = ("thermostat", "switch", "sensor")
    fault_types = ("thermostat", "sensor")
    sensor_kinds = ("temperature", "humidity")

    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self.bus = FakeModbusBus(self.tmp / f"rs485-{thing_type}")
        self.bus.temperature = 20.0
        self.bus.start()
        settings = {
            "port": str(self.bus.path),
            "protocol": "modbus",
            "timeout_s": 0.1,
            "retries": 1,
            "reconnect_initial_s": 0.05,
        }
        return settings, {}

    def heater_on(self) -> bool:
        return self.bus.coils[0]

    def output_on(self) -> bool:
        return self.bus.coils[0]

    def set_temperature(self, celsius: float) -> None:
        self.bus.temperature = celsius

    def fault(self) -> str:
        self.bus.bad_crc_replies = 1_000_000
        return "CRC"

    def recover(self) -> None:
        self.bus.bad_crc_replies = 0

    async def close(self) -> None:
        self.bus.stop()


class BleRig(Rig):
    """The real bleak BlueZ backend against a fake BlueZ on a private dbus-daemon; the fault is
    the peripheral going out of range (and coming back)."""

    backend = "ble"
    types = ("lock", "thermostat", "switch", "sensor")
    fault_types = types
    sensor_kinds = ("temperature", "humidity", "contact")

    async def open(self, thing_type: str) -> None:
        self.stack = contextlib.AsyncExitStack()
        address = await self.stack.enter_async_context(private_bus(self.tmp))
        self.stack.enter_context(system_bus(address))
        self.fake = await FakeBluez(thing_type).start(address)
        if thing_type in ("thermostat", "sensor"):
            self.fake.set_temperature(20.0)

    def prepare(self, thing_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        settings = {
            "address": self.fake.address,
            "reconnect_initial_s": 0.05,
            "reconnect_cap_s": 0.2,
            "connect_timeout_s": 3.0,
        }
        return settings, {}

    def bolt_locked(self) -> bool:
        return self.fake.actuator()

    def heater_on(self) -> bool:
        return self.fake.actuator()

    def output_on(self) -> bool:
        return self.fake.actuator()

    def set_temperature(self, celsius: float) -> None:
        self.fake.set_temperature(celsius)

    def fault(self) -> str:
        self.fake.go_away()
        return "disconnected"

    def recover(self) -> None:
        self.fake.come_back()

    async def close(self) -> None:
        await self.fake.stop()
        await self.stack.aclose()


RIGS: list[type[Rig]] = [SimRig, GpioRig, OneWireRig, SerialLineRig, SerialModbusRig, BleRig]


def rig_id(rig: type[Rig]) -> str:
    return rig.__name__.removesuffix("Rig").lower()
