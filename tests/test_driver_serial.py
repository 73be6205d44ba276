"""The serial backend against fake devices on real ptys: line protocol, Modbus RTU, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.registry import check_drivers
from device_drivers.serial import (
    LinkPool,
    SerialDriver,
    crc16_modbus,
    frame,
    parse_value,
    unframe,
)
from device_drivers.testing.serial_device import FakeController, FakeModbusBus
from gateway.config.model import LockSafety, ThingConfig
from gateway.errors import ThingError
from gateway.things import Lock, build_thing
from tests.driver_rigs import until

FAST = {"keepalive_s": 0.1, "timeout_s": 0.2, "reconnect_initial_s": 0.02, "reconnect_cap_s": 0.1}


def test_line_framing_and_modbus_crc() -> None:
    assert frame("1 GET door") == b"1 GET door*71\n"
    assert unframe(b"1 GET door*71") == "1 GET door"
    assert unframe(b"1 GET door*72") is None and unframe(b"\xff*00") is None
    assert unframe(b"no checksum") is None
    # the Modbus spec's example request: unit 0x11, read holding registers 0x6B..0x6D
    assert crc16_modbus(bytes.fromhex("1103006B0003")).to_bytes(2, "little") == b"\x76\x87"
    assert parse_value("temperature", "21.50") == 21.5
    for channel, text in [("door", "2"), ("temperature", "nan"), ("temperature", "inf")]:
        with pytest.raises(DriverError):
            parse_value(channel, text)


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[FakeController]:
    b = FakeController(tmp_path / "ttyBOARD", "lock", watchdog_s=0.5)
    b.start()
    yield b
    b.stop()


async def test_unplugged_mid_command_lock_stays_locked(board: FakeController) -> None:
    driver = SerialDriver("door", "lock", {"port": str(board.path), **FAST})
    lock = build_thing(
        ThingConfig("door", "lock", "Door", safety=LockSafety(auto_relock_s=0, jam_timeout_s=0.3)),
        driver,
    )
    assert isinstance(lock, Lock)
    await lock.start()
    assert await lock.read_property("state") == "locked"
    board.unplug_on("SET")  # the cable comes out as the unlock command arrives
    t0 = time.monotonic()
    with pytest.raises(ThingError) as err:
        await lock.invoke_action("unlock", None, "alice")
    assert err.value.code == "driver_fault"
    assert time.monotonic() - t0 < 0.2  # failed at once, not after a timeout
    assert "in the middle of a command" in (await lock.read_property("fault"))
    assert await lock.read_property("state") == "jammed"
    assert board.value("bolt") is True  # board unpowered: the strike is locked
    board.replug()
    await until(lambda: driver.link is not None and driver.link.up)
    assert driver.link is not None and driver.link.reconnects == 1
    assert await lock.invoke_action("lock", None, "bob") == "locked"
    await lock.stop()


async def test_board_events_faults_and_reboot(board: FakeController) -> None:
    d = SerialDriver("door", "lock", {"port": str(board.path), **FAST})
    await d.start()
    got: list[Any] = []
    for ch in d.channels():
        d.subscribe(ch, lambda ch, item: got.append((ch, item)))
    board.set_input("door", False)
    await until(lambda: any(ch == "door" for ch, _ in got))
    assert got[-1][1].value is False
    board.fail_channel("door", "reed switch wire cut")
    await until(lambda: isinstance(got[-1][1], DriverError))
    assert "reed switch wire cut" in str(got[-1][1])
    with pytest.raises(DriverError, match="fault"):
        await d.read("door")
    board.clear_fault("door")
    board.reboot()  # the board reset: its outputs went to their safe state
    await until(lambda: any("board reset" in str(i) for _, i in got))
    await d.stop()


async def test_corrupt_replies_time_out_then_recover(board: FakeController) -> None:
    d = SerialDriver("door", "lock", {"port": str(board.path), **FAST, "keepalive_s": 0})
    await d.start()
    board.corrupt_replies = 1
    with pytest.raises(DriverError, match="no reply to GET"):
        await d.read("door")
    assert d.link is not None and d.link.bad_frames >= 1
    assert (await d.read("door")).value is True
    await d.stop()


async def test_silent_board_is_a_fault_and_watchdog_makes_it_safe(board: FakeController) -> None:
    d = SerialDriver("door", "lock", {"port": str(board.path), **FAST})
    await d.start()
    await d.write("bolt", False)
    got: list[Any] = []
    d.subscribe("door", lambda ch, item: got.append(item))
    board.muted = True  # the sketch hangs: no replies
    await until(lambda: any(isinstance(i, DriverError) for i in got))
    assert "no reply to PING" in str(got[-1])
    await d.stop()
    board.muted = False
    await until(lambda: board.value("bolt") is True, timeout=2.0)  # board watchdog


async def test_modbus_crc_retry_exceptions_and_reconnect(tmp_path: Path) -> None:
    bus = FakeModbusBus(tmp_path / "ttyRS485")
    bus.start()
    d = SerialDriver(
        "room",
        "thermostat",
        {
            "port": str(bus.path),
            "protocol": "modbus",
            "timeout_s": 0.1,
            **{k: v for k, v in FAST.items() if k.startswith("reconnect")},
        },
    )
    await d.start()
    bus.temperature = -3.4
    assert (await d.read("temperature")).value == -3.4  # signed tenths
    bus.bad_crc_replies = 1
    assert (await d.read("temperature")).value == -3.4  # retried once
    assert d.link is not None and d.link.crc_errors == 1
    bus.sensor_failed = True
    with pytest.raises(DriverError, match="slave device failure"):
        await d.read("temperature")
    bus.sensor_failed = False
    bus.silent_units.add(2)
    with pytest.raises(DriverError, match="no reply"):
        await d.write("heater", True)
    bus.silent_units.clear()
    bus.unplug()
    await until(lambda: d.link is not None and not d.link.up)
    with pytest.raises(DriverError, match="link down"):
        await d.read("temperature")
    bus.replug()
    await until(lambda: d.link is not None and d.link.up)
    await d.write("heater", True)
    assert bus.coils[0] is True
    await d.stop()
    assert bus.coils[0] is False  # heater off at stop
    bus.stop()


async def test_one_bus_serves_two_things(tmp_path: Path) -> None:
    bus = FakeModbusBus(tmp_path / "ttyRS485")
    bus.start()
    pool = LinkPool()
    common = {"port": str(bus.path), "protocol": "modbus"}
    stat = SerialDriver("room", "thermostat", common, link_pool=pool)
    probe = SerialDriver("room-rh", "sensor", common, link_pool=pool)
    check_drivers([stat, probe])  # same port, same line settings: shared, not a conflict
    await stat.start()
    await probe.start()
    assert stat.link is probe.link and len(pool.get(str(bus.path)).drivers) == 2  # type: ignore[union-attr]
    results = await asyncio.gather(
        *(probe.read("humidity") for _ in range(5)), stat.read("temperature")
    )
    assert [r.value for r in results] == [45.0] * 5 + [21.0]
    await stat.stop()
    assert (await probe.read("humidity")).value == 45.0
    await probe.stop()
    assert pool.get(str(bus.path)) is None
    other = SerialDriver("x", "sensor", {**common, "baudrate": 19200})
    with pytest.raises(DriverConfigError, match="already used"):
        check_drivers([probe, other])
    bus.stop()


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({}, "'port': required"),
        ({"port": "/dev/ttyNOPE0"}, "'port': /dev/ttyNOPE0 does not exist"),
        ({"port": "/dev/null", "protocol": "zigbee"}, "'protocol'"),
        ({"port": "/dev/null", "baudrate": 12345}, "'baudrate'"),
        ({"port": "/dev/null", "names": {"door": "in 2"}}, "'names.door'"),
        ({"port": "/dev/null", "protocol": "modbus", "unit": 300}, "'unit'"),
        ({"port": "/dev/null", "speed": 9600}, "'speed'"),
    ],
)
def test_serial_bad_settings(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(DriverConfigError) as err:
        SerialDriver(
            "door", "lock" if "modbus" not in str(settings) else "sensor", settings
        ).validate()
    assert "thing 'door'" in str(err.value) and needle in str(err.value)


def test_protocol_doc_examples_have_right_checksums() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "serial-line-protocol.md").read_text()
    for line in ("7 SET relay1 1", "7 OK relay1 1", "! door 0"):
        assert frame(line).decode().strip() in doc
