"""The driver contract: the same Thing-level checks on every backend, through its test double,
inside a real Gateway (so faults are checked in the audit log too).

In every fault: the lock stays locked (the bolt is physically thrown), the heater goes off, the
Thing reports the fault in its state, and the audit log records it as a system record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config.model import GatewayConfig, HttpConfig
from gateway.errors import ThingError
from tests.driver_rigs import NAME, RIGS, Rig, rig_id, until


def cases(types: tuple[str, ...], faults: bool = False) -> list[Any]:
    out = []
    for rig in RIGS:
        for t in types:
            if t in (rig.fault_types if faults else rig.types):
                out.append(pytest.param((rig, t), id=f"{rig_id(rig)}-{t}"))
    return out


class Running:
    def __init__(self, rig: Rig, gw: Gateway, thing_type: str) -> None:
        self.rig, self.gw = rig, gw
        self.thing = gw.things[NAME[thing_type]]

    async def read(self, name: str) -> Any:
        return await self.thing.read_property(name)

    def fault_records(self) -> list[Any]:
        return [
            r
            for r in self.gw.audit.query(limit=50, subject="system")
            if r.op == "fault" and r.thing == self.thing.name
        ]


@pytest.fixture
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    rig_cls, thing_type = request.param
    rig = rig_cls(tmp_path)
    await rig.open(thing_type)
    tc, inject = rig.config(thing_type)
    cfg = GatewayConfig(
        name="contract", state_dir=tmp_path / "state", http=HttpConfig(port=0), things=(tc,)
    )
    gw = await Gateway.create(cfg, create_key=True, inject={tc.name: inject})
    rig.gw = gw
    await gw.start()
    try:
        yield Running(rig, gw, thing_type)
    finally:
        await gw.stop()
        await rig.close()


async def value_is(r: Running, name: str, want: float) -> None:
    async def close() -> bool:
        try:
            return abs(await r.read(name) - want) < 0.01
        except ThingError:
            return False

    deadline = time.monotonic() + 3.0
    while not await close():
        assert time.monotonic() < deadline, f"{name} never read {want}"
        await asyncio.sleep(0.01)


async def audited(r: Running, text: str) -> None:
    await until(lambda: any(text in rec.detail for rec in r.fault_records()), what="audit")


# ---------------------------------------------------------------- lock
@pytest.mark.parametrize("running", cases(("lock",)), indirect=True)
async def test_lock_locks_at_start_and_on_command(running: Running) -> None:
    r = running
    assert await r.read("state") == "locked" and await r.read("fault") is None
    assert r.rig.bolt_locked()
    assert await r.thing.invoke_action("unlock", None, "alice") == "unlocked"
    assert not r.rig.bolt_locked()
    assert await r.thing.invoke_action("lock", None, "bob") == "locked"
    assert r.rig.bolt_locked()


@pytest.mark.parametrize("running", cases(("lock",), faults=True), indirect=True)
async def test_lock_fault_stays_locked(running: Running) -> None:
    r = running
    await r.thing.invoke_action("unlock", None, "alice")
    if r.rig.lock_fault_when_locked:
        await r.thing.invoke_action("lock", None, "alice")
    text = r.rig.fault()
    await until(lambda: r.thing._state == "jammed", what="jammed")
    await until(r.rig.bolt_locked, what="bolt thrown")
    assert text in (await r.read("fault") or "")
    with pytest.raises(ThingError):
        await r.thing.invoke_action("unlock", None, "alice")  # never unlock what we cannot see
    assert r.rig.bolt_locked()
    await audited(r, text)
    r.rig.recover()
    await until(lambda: r.thing._state == "jammed")  # a jam is cleared by a lock, not by itself

    async def relock() -> bool:
        try:
            return await r.thing.invoke_action("lock", None, "bob") == "locked"
        except ThingError:
            return False

    deadline = time.monotonic() + 5.0
    while not await relock():  # a serial board reconnects first
        assert time.monotonic() < deadline, "never locked again"
        await asyncio.sleep(0.05)
    assert await r.read("state") == "locked" and r.rig.bolt_locked()


# ---------------------------------------------------------------- thermostat
@pytest.mark.parametrize("running", cases(("thermostat",)), indirect=True)
async def test_thermostat_drives_the_heater(running: Running) -> None:
    r = running
    r.rig.set_temperature(17.0)
    await value_is(r, "temperature", 17.0)
    await until(r.rig.heater_on, what="heater on")
    await heating_reads(r, True)
    r.rig.set_temperature(22.0)
    await until(lambda: not r.rig.heater_on(), what="heater off")
    await heating_reads(r, False)


async def heating_reads(r: Running, want: bool) -> None:
    """The device sees the heater write before the Thing records it: wait for the Thing too."""
    deadline = time.monotonic() + 3.0
    while await r.read("heating") is not want:
        assert time.monotonic() < deadline, f"heating never read {want} after the heater did"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("running", cases(("thermostat",), faults=True), indirect=True)
async def test_thermostat_fault_turns_the_heater_off(running: Running) -> None:
    r = running
    r.rig.set_temperature(17.0)
    await until(r.rig.heater_on, what="heater on")
    text = r.rig.fault()
    await until(lambda: not r.rig.heater_on(), what="heater off")
    await until(lambda: text in (r.thing._fault or ""), what="fault reported")
    with pytest.raises(ThingError) as err:
        await r.read("temperature")
    assert err.value.code == "sensor_fault"
    await audited(r, text)
    r.rig.recover()
    r.rig.set_temperature(17.0)
    await until(lambda: r.thing._fault is None, timeout=5.0, what="fault cleared")
    await until(r.rig.heater_on, what="heating again")
    await until(lambda: any(rec.reason == "cleared" for rec in r.fault_records()))


# ---------------------------------------------------------------- switch
@pytest.mark.parametrize("running", cases(("switch",)), indirect=True)
async def test_switch_switches(running: Running) -> None:
    r = running
    assert not r.rig.output_on() and await r.read("on") is False
    await r.thing.write_property("on", True, "alice")
    assert r.rig.output_on()
    assert await r.thing.invoke_action("toggle", None, "alice") is False
    assert not r.rig.output_on()


@pytest.mark.parametrize("running", cases(("switch",), faults=True), indirect=True)
async def test_switch_fault_is_safe(running: Running) -> None:
    r = running
    await r.thing.write_property("on", True, "alice")
    text = r.rig.fault()
    await until(lambda: not r.rig.output_on(), what="output off")
    await until(lambda: text in (r.thing._fault or ""), what="fault reported")
    await audited(r, text)


# ---------------------------------------------------------------- sensor
@pytest.mark.parametrize("running", cases(("sensor",)), indirect=True)
async def test_sensor_reads(running: Running) -> None:
    r = running
    r.rig.set_temperature(23.5)
    await until(lambda: r.thing._fault is None, what="no fault")
    await value_is(r, "temperature", 23.5)
    for kind in r.rig.sensor_kinds:
        value = await r.read(kind)
        assert isinstance(value, bool) if kind == "contact" else isinstance(value, float)


@pytest.mark.parametrize("running", cases(("sensor",), faults=True), indirect=True)
async def test_sensor_fault_is_never_a_value(running: Running) -> None:
    r = running
    await until(lambda: r.thing._fault is None, what="no fault")
    text = r.rig.fault()
    await until(lambda: text in (r.thing._fault or ""), what="fault reported")
    with pytest.raises(ThingError) as err:
        await r.read("temperature")
    assert err.value.code == "sensor_fault"
    await audited(r, text)
    r.rig.recover()
    await until(lambda: r.thing._fault is None, timeout=5.0, what="recovered")
    await value_is(r, "temperature", 20.0)
