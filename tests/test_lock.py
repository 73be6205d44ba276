"""The lock Thing against the simulated lock: fail-secure, auto-relock, jam detection, events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from device_drivers.sim import SimDriver
from gateway.config.model import LockSafety, ThingConfig
from gateway.errors import ThingError
from gateway.things import Lock, build_thing
from gateway.things.bus import Subscription

JAM_S = 0.15
FAST = LockSafety(auto_relock_s=0, jam_timeout_s=JAM_S)


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


def make(safety: LockSafety = FAST, **settings: Any) -> tuple[Lock, SimDriver]:
    driver = SimDriver("front", "lock", {"bolt_travel_s": 0.02, **settings})
    cfg = ThingConfig(name="front", type="lock", title="Front door", safety=safety)
    thing = build_thing(cfg, driver)
    assert isinstance(thing, Lock)
    return thing, driver


@pytest.fixture
async def lock() -> AsyncIterator[tuple[Lock, SimDriver]]:
    thing, driver = make()
    await thing.start()
    yield thing, driver
    await thing.stop()


async def test_locked_at_start() -> None:
    thing, driver = make()  # the simulated bolt powers up retracted
    events = thing.bus.subscribe("event", "locked")
    assert await thing.read_property("state") == "jammed"  # unknown before start
    await thing.start()
    assert await thing.read_property("state") == "locked"
    assert await thing.read_property("fault") is None
    assert driver.value("bolt") is True and driver.value("bolt_sensor") is True
    [ev] = drain(events)
    assert ev["actor"] == "system" and "start" in ev["reason"] and ev["at"].endswith("Z")
    await thing.stop()


async def test_operations_carry_the_actor(lock: tuple[Lock, SimDriver]) -> None:
    thing, _ = lock
    unlocked = thing.bus.subscribe("event", "unlocked")
    locked = thing.bus.subscribe("event", "locked")
    states = thing.bus.subscribe("property", "state")
    assert await thing.invoke_action("unlock", None, "alice") == "unlocked"
    assert await thing.invoke_action("lock", None, "bob") == "locked"
    assert await thing.invoke_action("lock", None, "carol") == "locked"  # every operation logged
    assert [e["actor"] for e in drain(unlocked)] == ["alice"]
    assert [e["actor"] for e in drain(locked)] == ["bob", "carol"]
    assert drain(states) == ["unlocked", "locked"]


async def test_untrusted_input_is_refused(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    for name, value, code in [
        ("unlock", {"force": True}, "invalid_input"),
        ("open", None, "unknown_affordance"),
    ]:
        with pytest.raises(ThingError) as err:
            await thing.invoke_action(name, value, "mallory")
        assert err.value.code == code
    with pytest.raises(ThingError) as err:
        await thing.write_property("state", "unlocked", "mallory")
    assert err.value.code == "read_only"
    assert await thing.read_property("state") == "locked"
    assert driver.value("bolt") is True


async def test_auto_relock() -> None:
    thing, driver = make(LockSafety(auto_relock_s=0.15, jam_timeout_s=JAM_S))
    await thing.start()
    locked = thing.bus.subscribe("event", "locked")
    await thing.invoke_action("unlock", None, "alice")
    await asyncio.sleep(0.05)
    assert await thing.read_property("state") == "unlocked"
    await until(lambda: thing._state == "locked")
    [ev] = drain(locked)
    assert ev["actor"] == "system" and "auto-relock" in ev["reason"]
    assert driver.value("bolt") is True
    await thing.stop()


async def test_auto_relock_waits_for_the_door() -> None:
    thing, driver = make(LockSafety(auto_relock_s=0.1, jam_timeout_s=JAM_S))
    await thing.start()
    doors = thing.bus.subscribe("property", "door")
    await thing.invoke_action("unlock", None, "alice")
    driver.set_door(False)
    assert await thing.read_property("door") == "open"
    await asyncio.sleep(0.3)
    assert await thing.read_property("state") == "unlocked"  # no bolt thrown into an open door
    driver.set_door(True)
    await until(lambda: thing._state == "locked")
    assert drain(doors) == ["open", "closed"]
    await thing.stop()


async def test_jam_on_lock_then_retry(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    jammed = thing.bus.subscribe("event", "jammed")
    await thing.invoke_action("unlock", None, "alice")
    driver.jam_bolt()
    with pytest.raises(ThingError) as err:
        await thing.invoke_action("lock", None, "bob")
    assert err.value.code == "jammed"
    assert await thing.read_property("state") == "jammed"
    assert "bolt" in await thing.read_property("fault")
    [ev] = drain(jammed)
    assert ev["actor"] == "bob"
    assert driver.value("bolt") is True  # still commanded locked
    with pytest.raises(ThingError) as err:
        await thing.invoke_action("unlock", None, "alice")  # never unlock what we cannot see
    assert err.value.code == "jammed"
    assert driver.value("bolt") is True
    driver.jam_bolt(False)
    assert await thing.invoke_action("lock", None, "bob") == "locked"
    assert await thing.read_property("fault") is None


async def test_jam_on_unlock_commands_locked(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    driver.jam_bolt()  # stuck thrown
    with pytest.raises(ThingError) as err:
        await thing.invoke_action("unlock", None, "alice")
    assert err.value.code == "jammed"
    assert await thing.read_property("state") == "jammed"
    assert driver.writes[-1] == ("bolt", True)


async def test_door_forced_open_while_locked(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    jammed = thing.bus.subscribe("event", "jammed")
    driver.set_door(False)
    await asyncio.sleep(JAM_S / 3)
    assert await thing.read_property("state") == "locked"  # grace for contact bounce
    await until(lambda: thing._state == "jammed")
    [ev] = drain(jammed)
    assert ev["actor"] == "system" and "door open" in ev["reason"]


async def test_lock_with_door_open_is_not_reported_locked(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    await thing.invoke_action("unlock", None, "alice")
    driver.set_door(False)
    with pytest.raises(ThingError) as err:
        await thing.invoke_action("lock", None, "alice")
    assert err.value.code == "jammed" and "door open" in str(err.value)


async def test_write_fault_fails_secure(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    await thing.invoke_action("unlock", None, "alice")
    driver.fail_writes("motor driver offline")
    with pytest.raises(ThingError) as err:
        await thing.invoke_action("lock", None, "alice")
    assert err.value.code == "driver_fault"
    assert await thing.read_property("state") == "jammed"
    assert "motor driver offline" in await thing.read_property("fault")
    driver.restore_writes()
    assert await thing.invoke_action("lock", None, "alice") == "locked"


async def test_sensor_fault_fails_secure(lock: tuple[Lock, SimDriver]) -> None:
    thing, driver = lock
    jammed = thing.bus.subscribe("event", "jammed")
    await thing.invoke_action("unlock", None, "alice")
    driver.fail_sensor("bolt_sensor", "lost link")
    await until(lambda: thing._state == "jammed")
    assert driver.value("bolt") is True  # commanded locked at once
    [ev] = drain(jammed)
    assert ev["actor"] == "system" and "lost link" in ev["reason"]
    driver.fail_sensor("door", "lost link")
    with pytest.raises(ThingError) as err:
        await thing.read_property("door")
    assert err.value.code == "sensor_fault"


async def test_stop_locks_and_never_raises() -> None:
    thing, driver = make()
    await thing.start()
    await thing.invoke_action("unlock", None, "alice")
    await thing.stop()
    assert driver.value("bolt") is True
    assert thing._state == "locked"
    assert not driver.running
    assert not [t for t in asyncio.all_tasks() if "front" in t.get_name()]

    thing, driver = make()
    await thing.start()
    await thing.invoke_action("unlock", None, "alice")
    driver.fail_writes("dead")
    await thing.stop()  # does not raise
    assert thing._state == "jammed"
    with pytest.raises(ThingError):
        await thing.invoke_action("unlock", None, "alice")


async def test_start_with_door_open_is_jammed_not_locked() -> None:
    thing, driver = make(door_closed=False)
    await thing.start()
    assert await thing.read_property("state") == "jammed"
    assert driver.value("bolt") is True
    driver.set_door(True)
    assert await thing.invoke_action("lock", None, "owner") == "locked"
    await thing.stop()


async def test_nothing_runs_after_stop() -> None:
    thing, driver = make()
    await thing.start()
    first = asyncio.create_task(thing.invoke_action("unlock", None, "alice"))
    await asyncio.sleep(0.005)  # the unlock is waiting for the bolt
    stopping = asyncio.create_task(thing.stop())
    await asyncio.sleep(0)
    with pytest.raises(ThingError) as err:
        await thing.invoke_action("unlock", None, "mallory")  # queued behind stop()
    assert err.value.code == "driver_fault"
    assert await first == "unlocked"
    await stopping
    assert driver.value("bolt") is True and thing._state == "locked"


async def test_cancelled_unlock_fails_secure() -> None:
    """A caller that gives up part-way through an unlock must not leave the bolt open."""
    import asyncio as _asyncio

    from device_drivers.sim import SimDriver
    from gateway.config import LockSafety
    from gateway.things import Lock

    for delay in (0.0, 0.01, 0.1, 0.3):  # all before the 0.5 s bolt travel ends
        driver = SimDriver("door", "lock", {"bolt_travel_s": 0.5})
        lock = Lock("door", "Door", driver, LockSafety(auto_relock_s=0, jam_timeout_s=1.0))
        await lock.start()
        try:
            task = _asyncio.create_task(lock.invoke_action("unlock", None, "alice"))
            await _asyncio.sleep(delay)
            task.cancel()
            with __import__("contextlib").suppress(_asyncio.CancelledError, Exception):
                await task
            await _asyncio.sleep(0.6)
            state = await lock.read_property("state")
            assert state in ("locked", "jammed"), (delay, state)
            assert driver.value("bolt") is True, f"bolt commanded open after cancel at {delay}"
        finally:
            await lock.stop()
