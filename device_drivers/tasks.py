"""Owned background tasks: the one way this product starts an asyncio task.

    tasks = TaskOwner("lock front-door", on_death=report)
    tasks.spawn(relock(), name="lock-front-door-auto-relock")       # runs once
    tasks.keep_running(watch, name="acl-watch", backoff=Backoff())  # restarted if it dies
    ...
    await tasks.close()                                              # cancel all, wait for all

A `TaskOwner` keeps a strong reference to every task it started (the event loop keeps only weak
ones), names it, and when a task ends with an exception it logs it (one cleaned line plus the
traceback) and calls `on_death(name, exc)`, so a dying task is never silent. `keep_running`
restarts a loop that must not stop after a capped, jittered backoff (`device_drivers.backoff`).
`close()` cancels and awaits every task except the caller itself; if the caller is cancelled
meanwhile, its CancelledError propagates (it is never swallowed). The owner can be used again
after `close()` (a Thing that is stopped and started again).

An owner built without `on_death` (the DHT, the bindings, mDNS, the drivers, ...) reports to
the death report of the context its task runs in: `report_deaths_here(report)` sets it, and
every task started from that context inherits it. The Gateway sets its audit there when it is
made, so a dying task of any of its parts is audited too (`taskdied`), with no report passed
through every constructor.

It lives in `device_drivers` (the lowest layer, which never imports `gateway`) so that drivers
use it too; `gateway.tasks` re-exports it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from device_drivers.backoff import Backoff
from device_drivers.text import clean

log = logging.getLogger(__name__)

DESCRIBE_CAP: Final = 200  # characters of an exception's one-line description
CLOSE_ROUNDS: Final = 8  # tasks spawned while closing are cancelled too, this many times at most

DeathReport = Callable[[str, BaseException], None]
CoroFactory = Callable[[], Coroutine[Any, Any, None]]


_CONTEXT_REPORT: contextvars.ContextVar[DeathReport | None] = contextvars.ContextVar(
    "streembit_task_death_report", default=None
)


def report_deaths_here(report: DeathReport | None) -> None:
    """Make REPORT the death report of owners without their own `on_death`, for tasks that run
    in the current context and in every task started from it from now on."""
    _CONTEXT_REPORT.set(report)


def describe(exc: BaseException, cap: int = DESCRIBE_CAP) -> str:
    """EXC as one short printable line, "Type: message" (it may quote a device's bytes)."""
    return clean(f"{type(exc).__name__}: {exc}", cap, fold=True)


class TaskOwner:
    """The tasks of one component (OWNER names it in logs); see the module docstring."""

    def __init__(
        self,
        owner: str,
        on_death: DeathReport | None = None,
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        self.owner = owner
        self.on_death = on_death
        self.deaths = 0  # tasks that ended with an exception (restarts of a loop included)
        self._log = logger or log
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run CORO as the task NAME, owned until it ends; an exception is reported."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def keep_running(
        self, factory: CoroFactory, *, name: str, backoff: Backoff | None = None
    ) -> asyncio.Task[None]:
        """Run FACTORY() as the task NAME; each time it raises, report it and run it again
        after BACKOFF's next delay (reset once a run lasted longer than its cap). A normal
        return ends the task."""
        return self.spawn(self._supervise(factory, name, backoff or Backoff()), name=name)

    @staticmethod
    def cancel(task: asyncio.Task[None] | None) -> None:
        """Cancel TASK unless it is the caller (a task must not cancel itself by accident)."""
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        """Cancel every task but the caller and wait until they have ended."""
        me = asyncio.current_task()
        for _ in range(CLOSE_ROUNDS):
            tasks = [t for t in self._tasks if t is not me]
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            # the tasks' own CancelledErrors are collected; ours (close() cancelled) propagates
            await asyncio.gather(*tasks, return_exceptions=True)
        self._log.error("%s: tasks kept spawning tasks while closing", self.owner)

    async def _supervise(self, factory: CoroFactory, name: str, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._report(name, exc, restart=True)
            else:
                return
            if loop.time() - began > backoff.cap_s:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._report(task.get_name(), exc, restart=False)

    def _report(self, name: str, exc: BaseException, *, restart: bool) -> None:
        self.deaths += 1
        again = "; restarting it" if restart else ""
        self._log.error(
            "%s: task %s died: %s%s", self.owner, name, describe(exc), again, exc_info=exc
        )
        report = self.on_death or _CONTEXT_REPORT.get()
        if report is None:
            return
        try:
            report(name, exc)
        except Exception:  # a broken report must not hide the death, nor kill the loop
            self._log.exception("%s: reporting the death of task %s failed", self.owner, name)
