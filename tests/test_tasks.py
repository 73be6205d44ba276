"""The task owner (device_drivers/tasks.py, re-exported as gateway.tasks): a dying task is logged
and reported, a loop that must keep running is restarted with backoff, close() cancels every
task, and a cancellation of the caller is never swallowed."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from device_drivers.backoff import Backoff
from gateway.tasks import TaskOwner, describe, report_deaths_here

FAST = Backoff(initial_s=0.01, cap_s=0.02, rng=random.Random(1))


async def test_a_dying_task_is_logged_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    deaths: list[tuple[str, BaseException]] = []
    owner = TaskOwner("unit", lambda name, exc: deaths.append((name, exc)))

    async def boom() -> None:
        raise RuntimeError("bad\nthing\x1b[31m")

    with caplog.at_level(logging.ERROR):
        task = owner.spawn(boom(), name="unit-boom")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback runs on the next loop turn
    assert task.get_name() == "unit-boom" and len(owner) == 0
    assert [(n, str(e)) for n, e in deaths] == [("unit-boom", "bad\nthing\x1b[31m")]
    (rec,) = [r for r in caplog.records if "unit-boom" in r.getMessage()]
    assert rec.getMessage() == "unit: task unit-boom died: RuntimeError: bad thing?[31m"
    assert rec.exc_info is not None and owner.deaths == 1


async def test_a_broken_report_does_not_hide_the_death(caplog: pytest.LogCaptureFixture) -> None:
    def report(name: str, exc: BaseException) -> None:
        raise OSError("audit log full")

    owner = TaskOwner("unit", report)

    async def boom() -> None:
        raise ValueError("x")

    await asyncio.gather(owner.spawn(boom(), name="unit-x"), return_exceptions=True)
    await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert "unit: task unit-x died: ValueError: x" in messages
    assert "unit: reporting the death of task unit-x failed" in messages


async def test_an_owner_without_a_report_uses_its_context_s() -> None:
    """report_deaths_here: owners without on_death report to the context's report, in tasks
    started from that context; an owner with its own report keeps it."""
    ambient: list[str] = []
    own: list[str] = []

    async def boom() -> None:
        raise RuntimeError("x")

    async def in_gateway_context() -> None:
        report_deaths_here(lambda name, exc: ambient.append(name))
        part, thing = TaskOwner("part"), TaskOwner("thing", lambda name, exc: own.append(name))
        await asyncio.gather(
            part.spawn(boom(), name="part-boom"),
            thing.spawn(boom(), name="thing-boom"),
            return_exceptions=True,
        )
        await asyncio.sleep(0)

    await asyncio.create_task(in_gateway_context())
    assert ambient == ["part-boom"] and own == ["thing-boom"]
    outside = TaskOwner("outside")  # this test's context never had a report set
    await asyncio.gather(outside.spawn(boom(), name="outside-boom"), return_exceptions=True)
    await asyncio.sleep(0)
    assert ambient == ["part-boom"] and outside.deaths == 1


async def test_keep_running_restarts_a_loop_until_it_returns() -> None:
    deaths: list[str] = []
    owner = TaskOwner("unit", lambda name, exc: deaths.append(str(exc)))
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise OSError(f"run {runs}")

    task = owner.keep_running(flaky, name="unit-loop", backoff=FAST)
    await asyncio.wait_for(task, 5)
    assert runs == 3 and deaths == ["run 1", "run 2"] and len(owner) == 0


async def test_close_cancels_and_awaits_every_task() -> None:
    owner = TaskOwner("unit")
    cancelled: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    tasks = [owner.spawn(forever(f"t{i}"), name=f"unit-{i}") for i in range(3)]
    owner.keep_running(lambda: forever("loop"), name="unit-loop")
    await asyncio.sleep(0)
    assert len(owner) == 4
    await owner.close()
    assert sorted(cancelled) == ["loop", "t0", "t1", "t2"]
    assert all(t.cancelled() for t in tasks) and len(owner) == 0 and owner.deaths == 0
    # usable again (a Thing stopped and started again)
    again = owner.spawn(forever("again"), name="unit-again")
    await owner.close()
    assert again.cancelled()


async def test_close_from_inside_an_owned_task_spares_the_caller() -> None:
    owner = TaskOwner("unit")
    other = owner.spawn(asyncio.sleep(3600), name="unit-other")

    async def closer() -> None:
        await owner.close()

    me = owner.spawn(closer(), name="unit-closer")
    await asyncio.wait_for(me, 5)
    assert other.cancelled() and not me.cancelled()


async def test_the_callers_cancellation_propagates_out_of_close() -> None:
    owner = TaskOwner("unit")

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # takes its time to clean up

    owner.spawn(stubborn(), name="unit-stubborn")
    await asyncio.sleep(0)
    closing = asyncio.create_task(owner.close(), name="test-closing")
    await asyncio.sleep(0.05)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closing.cancelled()


async def test_cancel_spares_the_current_task() -> None:
    owner = TaskOwner("unit")

    async def self_cancel() -> None:
        owner.cancel(asyncio.current_task())  # type: ignore[arg-type]
        await asyncio.sleep(0)

    task = owner.spawn(self_cancel(), name="unit-self")
    await task
    assert not task.cancelled()


def test_describe_is_one_printable_capped_line() -> None:
    assert describe(KeyError("a\r\nb")) == "KeyError: 'a\\r\\nb'"
    assert describe(OSError("x\ty\n z\x00")) == "OSError: x y z?"
    long = describe(ValueError("v" * 1000), cap=50)
    assert len(long) == 50 and long.endswith("…")
