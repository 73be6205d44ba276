"""Switch Thing: one on/off output (relay, smart plug) with a safe state.

Safety rules:

1. Safe state. The output is set to `safe_state` when the Thing starts, after any driver fault
   (a failed write, a fault pushed by the driver; best effort) and when it stops (`stop()` never
   raises).
2. Maximum on-time. With `max_on_s` > 0 the output is switched off (actor "system") once it has
   been on for `max_on_s`, however it was switched on; switching it on again while on does not
   extend the limit.
3. `on` is the last state the driver confirmed (a successful write or a change it pushed). When
   that state is unknown (a write and the safe-state write both failed) reading `on` and `toggle`
   fail with `driver_fault` until a write succeeds; `fault` says why.
4. Every operation emits `switched` with `{"on", "actor", "reason", "at"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from device_drivers.base import Driver, Reading, Unsubscribe
from device_drivers.errors import DriverConfigError, DriverError
from gateway.config.model import SwitchSafety
from gateway.errors import ThingError
from gateway.tasks import TaskOwner, describe
from gateway.things.base import ActionSpec, EventSpec, PropertySpec, Thing, check_value
from gateway.things.io import IO_TIMEOUT_S, bounded_write, now_iso, stop_driver

log = logging.getLogger(__name__)

SYSTEM = "system"  # the actor of operations the switch does by itself
STOP_GRACE_S = 1.0  # stop() waits this much beyond IO_TIMEOUT_S for a running write
BOOL: Mapping[str, Any] = MappingProxyType({"type": "boolean"})
NO_INPUT: Mapping[str, Any] = MappingProxyType({"type": "null"})
PROPERTIES: Mapping[str, PropertySpec] = MappingProxyType(
    {
        "on": PropertySpec("on", "On", BOOL, read_only=False, description="the output"),
        "fault": PropertySpec("fault", "Fault", {"oneOf": [{"type": "string"}, {"type": "null"}]}),
    }
)
ACTIONS: Mapping[str, ActionSpec] = MappingProxyType(
    {"toggle": ActionSpec("toggle", "Toggle", output=BOOL, description="returns the new state")}
)
EVENTS: Mapping[str, EventSpec] = MappingProxyType(
    {
        "switched": EventSpec(
            "switched",
            "Switched",
            {
                "type": "object",
                "properties": {
                    "on": {"type": "boolean"},
                    "actor": {"type": "string"},
                    "reason": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"},
                },
            },
        )
    }
)


class Switch(Thing):
    """An output with a safe state and an optional maximum on-time (module docstring)."""

    type_name: ClassVar[str] = "switch"

    def __init__(
        self,
        name: str,
        title: str,
        driver: Driver,
        safety: SwitchSafety | None = None,
        description: str = "",
    ) -> None:
        super().__init__(name, title, description)
        self.driver = driver
        self.safety = safety if safety is not None else SwitchSafety()
        self._on: bool | None = None  # unknown until the safe state is written
        self._fault: str | None = "not started"
        self._op = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._fault_task: asyncio.Task[None] | None = None
        self._tasks = TaskOwner(f"switch {name}", self._task_died)
        self._unsub: Unsubscribe | None = None
        self._stopping = False
        self._stop_problem: str | None = None  # stop() could not set the safe state

    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return PROPERTIES

    @property
    def actions(self) -> Mapping[str, ActionSpec]:
        return ACTIONS

    @property
    def events(self) -> Mapping[str, EventSpec]:
        return EVENTS

    # -- lifecycle
    async def start(self) -> None:
        """Start the driver and set the safe state; only DriverConfigError is raised."""
        self._stopping = False
        try:
            await self.driver.start()
        except DriverConfigError:
            raise
        except DriverError as exc:
            self._set_fault(f"driver failed to start: {exc}")
            return
        if self._unsub is None:
            self._unsub = self.driver.subscribe("output", self._on_output)
        async with self._op:
            with contextlib.suppress(ThingError):
                await self._set(self.safety.safe_state, SYSTEM, "start: safe state")

    async def stop(self) -> None:
        """Set the safe state and stop the driver. Never raises."""
        self._stopping = True
        self._stop_problem = None
        await self._tasks.close()
        acquired = False
        try:  # let a running write finish so that nothing follows the safe-state write
            async with asyncio.timeout(IO_TIMEOUT_S + STOP_GRACE_S):
                await self._op.acquire()
                acquired = True
        except TimeoutError:
            log.warning("switch %s: a write is still running; setting the safe state", self.name)
        try:
            await self._write("output", self.safety.safe_state)
            self._apply(self.safety.safe_state, SYSTEM, "shutdown: safe state")
        except Exception as exc:
            log.exception("switch %s: safe state at stop failed", self.name)
            self._stop_problem = f"safe state at shutdown failed: {exc}"
            self._set_fault(self._stop_problem)
        finally:
            if acquired:
                self._op.release()
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        await stop_driver(self.driver, f"switch {self.name}")

    def safe_state_problem(self) -> str | None:
        return self._stop_problem

    # -- interactions
    async def read_property(self, name: str) -> Any:
        self._prop(name)
        if name == "fault":
            return self._fault
        return self._known()

    async def write_property(self, name: str, value: Any, actor: str) -> None:
        spec = self._prop(name)
        if spec.read_only:
            raise ThingError(f"property {name!r} is read-only", code="read_only")
        value = check_value(spec.schema, value, name)
        async with self._op:
            self._not_stopping()  # checked under `_op`: nothing may follow stop()'s safe state
            await self._set(value, actor, f"{name} written")

    async def invoke_action(self, name: str, value: Any, actor: str) -> Any:
        self._action(name)
        check_value(NO_INPUT, value, f"input of action {name!r}")
        async with self._op:
            new = not self._known()
            await self._set(new, actor, "toggle")
            return new

    # -- internals
    def _not_stopping(self) -> None:
        if self._stopping:
            raise ThingError(f"{self.name} is shutting down", code="driver_fault")

    def _known(self) -> bool:
        self._not_stopping()
        if self._on is None:
            raise ThingError(
                f"{self.name}: output state unknown: {self._fault}", code="driver_fault"
            )
        return self._on

    async def _set(self, on: bool, actor: str, reason: str) -> None:
        """Write the output (caller holds `_op`); a failure sets the safe state (rule 1)."""
        try:
            await self._write("output", on)
        except DriverError as exc:
            await self._fail_safe(f"write failed: {exc}", actor)
            raise ThingError(f"{self.name}: {exc}", code="driver_fault") from exc
        self._set_fault(None)
        self._apply(on, actor, reason)

    def _apply(self, on: bool, actor: str, reason: str) -> None:
        if on != self._on:
            self._on = on
            self.changed("on", on)
        self.emit("switched", {"on": on, "actor": actor, "reason": reason, "at": now_iso()})
        if not on:
            self._tasks.cancel(self._timer)
            self._timer = None
        elif self.safety.max_on_s > 0 and self._timer is None and not self._stopping:
            self._timer = self._tasks.spawn(self._max_on(), name=f"switch-{self.name}-max-on")

    async def _fail_safe(self, reason: str, actor: str) -> None:
        self._set_fault(reason)
        try:
            await self._write("output", self.safety.safe_state)
        except DriverError as exc:
            self._on = None
            self._set_fault(f"{reason}; safe state failed: {exc}")
            return
        self._apply(self.safety.safe_state, actor, f"safe state after fault: {reason}")

    async def _max_on(self) -> None:
        await asyncio.sleep(self.safety.max_on_s)
        async with self._op:
            self._timer = None
            if self._on:
                with contextlib.suppress(ThingError):
                    await self._set(False, SYSTEM, f"maximum on-time {self.safety.max_on_s} s")

    def _on_output(self, channel: str, item: Reading | DriverError) -> None:
        if self._stopping:
            return
        if isinstance(item, Reading) and isinstance(item.value, bool):
            # while a write is running, its own echo is not news: the write sets the state
            if item.value != self._on and not self._op.locked():
                self._apply(item.value, SYSTEM, "changed at the device")
            return
        why = str(item) if isinstance(item, DriverError) else f"output reads {item.value!r}"
        if self._fault_task is None or self._fault_task.done():
            self._fault_task = self._tasks.spawn(
                self._pushed_fault(why), name=f"switch-{self.name}-fault"
            )

    def _task_died(self, name: str, exc: BaseException) -> None:
        """A task of ours raised (logged by the owner): a bug, so the safe state (rule 1)."""
        if not self._stopping and (self._fault_task is None or self._fault_task.done()):
            reason = f"internal error in {name}: {describe(exc)}"
            self._fault_task = self._tasks.spawn(
                self._pushed_fault(reason), name=f"switch-{self.name}-fault"
            )

    async def _pushed_fault(self, reason: str) -> None:
        async with self._op:
            await self._fail_safe(f"driver fault: {reason}", SYSTEM)

    def _set_fault(self, fault: str | None) -> None:
        if fault != self._fault:
            self._fault = fault
            self.changed("fault", fault)

    async def _write(self, channel: str, value: bool) -> None:
        await bounded_write(self.driver, channel, value)
