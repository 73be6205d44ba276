"""Bad hardware configs: a clear error at start naming the Thing and the setting, and the
gateway starts nothing half-way (no Thing started, no port opened, the state folder unlocked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from device_drivers.errors import DriverConfigError
from device_drivers.testing.serial_device import FakeController
from device_drivers.testing.sysfs import SysfsTree
from gateway.app import Gateway
from gateway.config import load_config
from gateway.config.model import GatewayConfig, HttpConfig, LockSafety, ThingConfig


def lock(name: str, **settings: Any) -> ThingConfig:
    base = {"pin_factory": "mock", "bolt": {"pin": 17}, "bolt_sensor": "relay", "door": {"pin": 27}}
    return ThingConfig(
        name,
        "lock",
        name,
        driver="gpio",
        driver_settings={**base, **settings},
        safety=LockSafety(auto_relock_s=0),
    )


def config(tmp: Path, *things: ThingConfig) -> GatewayConfig:
    return GatewayConfig("bad", tmp / "state", http=HttpConfig(port=0), things=things)


async def refused(tmp: Path, *things: ThingConfig) -> str:
    with pytest.raises(DriverConfigError) as err:
        await Gateway.create(config(tmp, *things), create_key=True)
    # nothing half-way: the state folder is free again for a good config
    gw = await Gateway.create(config(tmp), create_key=True)
    await gw.start()
    await gw.stop()
    return str(err.value)


async def test_unknown_driver(tmp_path: Path) -> None:
    msg = await refused(tmp_path, ThingConfig("hall", "switch", "Hall", driver="zwave"))
    assert "thing 'hall'" in msg and "unknown driver backend 'zwave'" in msg and "gpio" in msg


async def test_pin_used_twice_across_things(tmp_path: Path) -> None:
    other = ThingConfig(
        "porch",
        "switch",
        "Porch",
        driver="gpio",
        driver_settings={"pin_factory": "mock", "output": {"pin": "BOARD13"}},
    )
    msg = await refused(tmp_path, lock("front-door"), other)  # BOARD13 is GPIO27, the door
    assert "thing 'porch'" in msg and "'output.pin'" in msg
    assert "GPIO27" in msg and "thing 'front-door'" in msg and "'door.pin'" in msg


async def test_pin_that_the_board_does_not_have(tmp_path: Path) -> None:
    msg = await refused(tmp_path, lock("front-door", door={"pin": 41}))
    assert "thing 'front-door'" in msg and "'door.pin'" in msg and "not a GPIO pin" in msg


async def test_missing_device_file(tmp_path: Path) -> None:
    tree = SysfsTree(tmp_path / "sys")
    stat = ThingConfig(
        "living-room",
        "thermostat",
        "Living room",
        driver="gpio",
        driver_settings={
            "pin_factory": "mock",
            "heater": {"pin": 22},
            "temperature": {"ds18b20": "28-0316a2794eff"},
            "sysfs_root": str(tree.root),
        },
    )
    msg = await refused(tmp_path, lock("front-door"), stat)
    assert "thing 'living-room'" in msg and "'temperature.ds18b20'" in msg
    assert "28-0316a2794eff" in msg and "w1-gpio" in msg


async def test_missing_serial_port_opens_nothing(tmp_path: Path) -> None:
    board = FakeController(tmp_path / "ttyOK", "switch")
    board.start()
    good = ThingConfig(
        "porch", "switch", "Porch", driver="serial", driver_settings={"port": str(board.path)}
    )
    bad = ThingConfig(
        "garage",
        "sensor",
        "Garage",
        driver="serial",
        driver_settings={"port": str(tmp_path / "ttyUSB9")},
    )
    msg = await refused(tmp_path, good, bad)
    assert "thing 'garage'" in msg and "'port'" in msg and "does not exist" in msg
    assert board.received == []  # the good Thing's port was never even opened
    board.stop()


async def test_check_config_names_file_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "hw.toml"
    path.write_text(
        '[gateway]\nname = "x"\nstate_dir = "state"\n'
        '[[things]]\nname = "hall"\ntype = "switch"\ndriver = "gpio"\n'
        '[things.driver_settings]\npin_factory = "mock"\noutput = { pin = 99 }\n'
    )
    cfg = load_config(path)
    with pytest.raises(DriverConfigError, match=r"thing 'hall': driver setting 'output.pin'"):
        await Gateway.create(cfg, create_key=True)
