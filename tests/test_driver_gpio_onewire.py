"""The gpio and onewire backends on their test doubles: gpiozero mock pins and a sysfs tree."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from device_drivers.backoff import Backoff
from device_drivers.base import Reading
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.gpio import GpioDriver
from device_drivers.onewire import OneWireDriver, parse_w1_slave
from device_drivers.registry import available_backends, check_drivers
from device_drivers.testing.gpio import level, mock_factory
from device_drivers.testing.sysfs import SysfsTree, w1_slave_text
from tests.driver_rigs import until

LOCK = {
    "bolt": {"pin": 17, "active_high": False},
    "bolt_sensor": {"pin": 5, "bounce_s": 0.0},
    "door": {"pin": 27, "bounce_s": 0.0},
}


def gpio(thing_type: str, settings: dict[str, Any], factory: Any = None) -> GpioDriver:
    return GpioDriver("t", thing_type, settings, pin_factory=factory or mock_factory())


def test_backends_are_registered() -> None:
    assert {"sim", "gpio", "onewire", "serial", "ble"} <= set(available_backends())


def test_backoff_is_capped_and_jittered() -> None:
    import random

    b = Backoff(initial_s=0.1, cap_s=1.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next() for _ in range(12)]
    assert all(0 < d <= 1.0 for d in delays)
    assert delays[0] <= 0.1 and max(delays[6:]) > 0.5  # grows, then stays under the cap
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not lock-step
    b.reset()
    assert b.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(initial_s=2.0, cap_s=1.0)


# ---------------------------------------------------------------- gpio
async def test_active_low_relay_is_locked_at_power_up_and_stop() -> None:
    f = mock_factory()
    f.pin(27).drive_low()
    d = gpio("lock", LOCK, f)
    await d.start()
    assert level(f, 17) is True  # active-low module: released = strike unpowered = locked
    # no glitch: states[0] is the floating input before the pin became an output; the first
    # level it ever drove is the safe one
    assert [bool(s.state) for s in f.pin(17).states] == [False, True]
    await d.write("bolt", False)
    assert level(f, 17) is False
    assert (await d.read("bolt")).value is False
    await d.stop()
    # power-up locked, unlocked, locked again by stop() before the pin is released
    assert [bool(s.state) for s in f.pin(17).states][1:4] == [True, False, True]


async def test_bolt_sensor_pin_and_fail_safe_magnet() -> None:
    f = mock_factory()
    settings = {**LOCK, "bolt": {"pin": 17, "energized": "locked"}}
    d = gpio("lock", settings, f)
    await d.start()
    assert level(f, 17) is True  # a magnetic lock is powered while locked
    got: list[Any] = []
    d.subscribe("bolt_sensor", lambda ch, item: got.append(item))
    f.pin(5).drive_low()  # monitor switch closed: bolt thrown
    await until(lambda: bool(got))
    assert got[-1].value is True and (await d.read("bolt_sensor")).value is True
    await d.stop()


async def test_debounce_reports_one_settled_edge() -> None:
    f = mock_factory()
    settings = {**LOCK, "door": {"pin": 27, "bounce_s": 0.05}}
    d = gpio("lock", settings, f)
    await d.start()
    got: list[Any] = []
    d.subscribe("door", lambda ch, item: got.append(item.value))
    for _ in range(5):  # contact bounce: ten edges within a few ms
        f.pin(27).drive_low()
        f.pin(27).drive_high()
    f.pin(27).drive_low()
    await asyncio.sleep(0.02)
    assert got == []
    await until(lambda: got == [True])
    f.pin(27).drive_high()
    f.pin(27).drive_low()  # a glitch that comes back: no event
    await asyncio.sleep(0.1)
    assert got == [True]
    await d.stop()


async def test_thread_callbacks_reach_the_loop_thread() -> None:
    f = mock_factory()
    d = gpio("sensor", {"contact": {"pin": 24, "bounce_s": 0.0}}, f)
    await d.start()
    threads: list[str] = []
    d.subscribe("contact", lambda ch, item: threads.append(threading.current_thread().name))
    t = threading.Thread(target=f.pin(24).drive_low, name="gpio-edge")
    t.start()
    t.join()
    await until(lambda: bool(threads))
    assert threads == [threading.main_thread().name]
    await d.stop()


async def test_pwm_output_and_local_button() -> None:
    f = mock_factory()
    d = gpio(
        "switch",
        {"output": {"pin": 18, "pwm": True, "frequency_hz": 200}, "button": {"pin": 6}},
        f,
    )
    await d.start()
    await d.write("output", 0.25)
    assert f.pin(18).state == pytest.approx(0.25)
    assert (await d.read("output")).value == pytest.approx(0.25)
    await d.write("output", True)
    assert f.pin(18).state == 1
    with pytest.raises(DriverError):
        await d.write("output", 1.5)
    got: list[Any] = []
    d.subscribe("output", lambda ch, item: got.append(item.value))
    f.pin(6).drive_low()  # the wall button, pressed: toggles the output locally
    await until(lambda: got == [False])
    assert f.pin(18).state == 0
    await d.stop()


async def test_gpio_thermostat_reads_ds18b20(tmp_path: Path) -> None:
    tree = SysfsTree(tmp_path)
    probe = tree.add_ds18b20(celsius=19.25)
    d = gpio(
        "thermostat",
        {"heater": {"pin": 22}, "temperature": {"ds18b20": probe}, "sysfs_root": str(tmp_path)},
    )
    check_drivers([d])
    assert {c.resource for c in d.claims()} == {"gpio:GPIO22", "gpio:GPIO4"}
    await d.start()
    assert (await d.read("temperature")).value == 19.25
    await d.write("heater", True)
    tree.ds18b20_crc_error(probe)
    with pytest.raises(DriverError, match="CRC"):
        await d.read("temperature")
    await d.stop()
    assert d.factory is not None  # injected: the driver never closes what it was given


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"bolt": {"pin": 17}, "door": {"pin": 27}}, "bolt_sensor"),
        ({**LOCK, "bolt": {"pin": 40}}, "'bolt.pin'"),
        ({**LOCK, "bolt": {"pin": "3V3"}}, "not a GPIO pin"),
        ({**LOCK, "door": {"pin": 27, "pullup": True}}, "'door.pullup'"),
        ({**LOCK, "bolt": {"pin": 17, "pwm": True}}, "never PWM"),
        ({**LOCK, "door": {"pin": "BOARD11"}}, "already used"),  # BOARD11 is GPIO17
        ({**LOCK, "bolt_sensor": "yes"}, "'bolt_sensor'"),
        ({**LOCK, "pin_factory": "arduino"}, "'pin_factory'"),
    ],
)
def test_gpio_bad_settings_name_the_setting(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(DriverConfigError) as err:
        d = gpio("lock", settings)
        check_drivers([d])
    assert "thing 't'" in str(err.value) and needle in str(err.value)


async def test_gpio_factory_by_name_and_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    d = GpioDriver("t", "switch", {"output": {"pin": 23}})
    await d.start()
    await d.write("output", True)
    assert level(d.factory, 23) is True
    await d.stop()
    assert d.factory is None  # its own factory is closed with it
    bad = GpioDriver("t", "switch", {"output": {"pin": 23}, "pin_factory": "lgpio"})
    with pytest.raises(DriverConfigError, match="lgpio") as err:
        await bad.start()
    assert "pin_factory" in str(err.value)


# ---------------------------------------------------------------- onewire
def test_w1_slave_parsing() -> None:
    kernel_doc = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    assert parse_w1_slave(kernel_doc) == 23.125
    assert parse_w1_slave(w1_slave_text(-10.5)) == -10.5
    for text, needle in [
        (w1_slave_text(20.0, crc_ok=False), "CRC"),
        ("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", "zero"),
        (w1_slave_text(85.0), "power-on"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "truncated"),
        ("", "truncated"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 t=abc\n", "no temperature"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 t=130000\n", "outside"),
    ]:
        with pytest.raises(DriverError, match=needle):
            parse_w1_slave(text)


@pytest.fixture
def tree(tmp_path: Path) -> SysfsTree:
    return SysfsTree(tmp_path / "sys")


async def test_onewire_faults_are_never_values(tree: SysfsTree) -> None:
    probe = tree.add_ds18b20(celsius=21.0)
    dht = tree.add_dht22(celsius=22.0, humidity=50.0)
    d = OneWireDriver(
        "s",
        "sensor",
        {"ds18b20": probe, "humidity": {"dht22": dht}, "read_timeout_s": 0.2},
        sysfs_root=tree.root,
    )
    await d.start()
    assert (await d.read("temperature")).value == 21.0
    assert (await d.read("humidity")).value == 50.0
    tree.ds18b20_power_on_value(probe)
    with pytest.raises(DriverError, match="power-on"):
        await d.read("temperature")
    tree.set_ds18b20(probe, 21.0)
    with tree.hung(probe):  # a hung bus: the reading would be stale
        with pytest.raises(DriverError, match="stale"):
            await d.read("temperature")
        with pytest.raises(DriverError, match="has not returned"):
            await d.read("temperature")  # never a second thread on a hung bus
    await until(
        lambda: (
            d.sources["temperature"]._pending is None or d.sources["temperature"]._pending.done()
        )
    )
    assert (await d.read("temperature")).value == 21.0
    tree.dht22_error(dht)
    with pytest.raises(DriverError, match="checksum or timing"):
        await d.read("humidity")
    tree.set_dht22(dht, humidity=120.0)
    with pytest.raises(DriverError, match="outside"):
        await d.read("humidity")
    tree.unplug(probe)
    with pytest.raises(DriverError, match="absent"):
        await d.read("temperature")
    await d.stop()


async def test_onewire_auto_and_temperature_file(tree: SysfsTree) -> None:
    probe = tree.add_ds18b20(celsius=18.5)
    slave = tree.root / "bus/w1/devices" / probe / "w1_slave"
    slave.unlink()
    (slave.parent / "temperature").write_text("18500\n")  # newer kernels
    d = OneWireDriver("s", "sensor", {"ds18b20": "auto", "sysfs_root": str(tree.root)})
    await d.start()
    assert (await d.read("temperature")).value == 18.5
    assert d.channels() == ("temperature",)
    await d.stop()
    tree.add_ds18b20(celsius=18.5)
    two = OneWireDriver("s", "sensor", {"ds18b20": "auto", "sysfs_root": str(tree.root)})
    with pytest.raises(DriverConfigError, match="exactly one"):
        two.validate()


def test_onewire_bad_settings(tree: SysfsTree) -> None:
    root = str(tree.root)
    cases = [
        ("thermostat", {"ds18b20": "28-1"}, "gpio"),
        ("sensor", {"sysfs_root": root}, "name a source"),
        ("sensor", {"ds18b20": "28-000000000099", "sysfs_root": root}, "'ds18b20': no ds18b20"),
        ("sensor", {"humidity": {"ds18b20": "28-1"}, "sysfs_root": root}, "temperature only"),
        ("sensor", {"dht22": "iio:device7", "sysfs_root": root}, "dtoverlay=dht11"),
        ("sensor", {"ds18b20": "28-1", "sysfs": root}, "'sysfs'"),
    ]
    for thing_type, settings, needle in cases:
        with pytest.raises(DriverConfigError, match=needle):
            OneWireDriver("s", thing_type, settings).validate()


async def test_reading_timestamps_are_fresh(tree: SysfsTree) -> None:
    probe = tree.add_ds18b20(celsius=21.0)
    d = OneWireDriver("s", "sensor", {"ds18b20": probe}, sysfs_root=tree.root)
    await d.start()
    first = await d.read("temperature")
    await asyncio.sleep(0.01)
    second = await d.read("temperature")
    assert isinstance(second, Reading) and second.at > first.at
    await d.stop()
