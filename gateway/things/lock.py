"""Lock Thing: a motorised bolt with a bolt sensor and a door contact, run fail-secure.

Safety rules:

1. Fail-secure. The bolt is commanded locked (thrown) when the Thing starts, whenever a driver
   operation fails (a write error, a read error, a fault pushed by the driver such as a lost link),
   whenever the lock becomes `jammed`, and when the Thing stops. `stop()` never raises and always
   ends with the bolt commanded locked.
2. Only confirmed states are reported. `state` becomes `locked` only when, within `jam_timeout_s` of
   the command, the bolt sensor reports the bolt thrown *and* the door contact reports the door
   closed; it becomes `unlocked` only when the bolt sensor reports the bolt retracted. Otherwise
   the state is `jammed` and `fault` says why (bolt did not move, door open, sensor or driver
   fault).
3. Watching. While `locked` or `unlocked`, a bolt sensor that disagrees with the commanded position,
   or a door that opens while locked, for longer than `jam_timeout_s` makes the lock `jammed`.
4. Jammed. On entering `jammed` the bolt is commanded locked. While jammed, `unlock` is refused with
   code `jammed`: a lock whose position cannot be verified is never driven open remotely (the inside
   handle / mechanical key remain the way out). `lock` retries: it re-commands the bolt and leaves
   `jammed` only when the sensors confirm it locked. Sensors recovering on their own do not clear a
   jam: someone has to lock it, and that is recorded.
5. Auto-relock. After each successful unlock the lock relocks itself (actor "system") after
   `auto_relock_s` seconds (0 disables it). With `relock_requires_door_closed` it then waits, as
   long as it takes, for the door contact to report the door closed; a door contact fault locks at
   once.
   A new unlock restarts the timer; a lock cancels it.
6. Every operation is reported. `locked`, `unlocked` and `jammed` events carry `{"actor", "reason",
   "at"}`: the requester's id, or "system" for start, auto-relock, jam detection and shutdown. An
   operation that does not reach its goal raises ThingError (`jammed`, `sensor_fault` or
   `driver_fault`) to its requester, so a failed lock never looks like success.
7. Operations are serialised (one at a time); `stop()` waits for a running one at most
   `jam_timeout_s` + 1 s and then locks anyway. Every driver call is bounded (5 s): a hung
   call counts as a driver fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from device_drivers.base import Driver, Reading, Unsubscribe
from device_drivers.errors import DriverConfigError, DriverError
from gateway.config.model import LockSafety
from gateway.errors import ThingError
from gateway.tasks import TaskOwner, describe
from gateway.things.base import ActionSpec, EventSpec, PropertySpec, Thing, check_value
from gateway.things.io import bounded_read, bounded_write, now_iso, stop_driver

log = logging.getLogger(__name__)

LockState = Literal["locked", "unlocked", "jammed"]
STATES: tuple[LockState, ...] = ("locked", "unlocked", "jammed")
SYSTEM = "system"  # the actor of operations the lock does by itself
CONFIRM_POLL_S = 0.02  # sensor re-read period while waiting for the bolt: far below any jam timeout
DOOR_POLL_S = 0.5  # auto-relock re-reads the door this often, in case the driver does not push
STOP_GRACE_S = 1.0  # stop() waits this much beyond jam_timeout_s for a running operation

FAULT_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {"oneOf": [{"type": "string"}, {"type": "null"}]}
)
EVENT_DATA: Mapping[str, Any] = MappingProxyType(
    {
        "type": "object",
        "properties": {
            "actor": {"type": "string"},
            "reason": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
        },
    }
)
NO_INPUT: Mapping[str, Any] = MappingProxyType({"type": "null"})
STATE_SCHEMA: Mapping[str, Any] = MappingProxyType({"type": "string", "enum": list(STATES)})

PROPERTIES: Mapping[str, PropertySpec] = MappingProxyType(
    {
        "state": PropertySpec(
            "state",
            "Lock state",
            STATE_SCHEMA,
            description="locked, unlocked or jammed, as confirmed by the bolt sensor and door",
        ),
        "door": PropertySpec(
            "door",
            "Door",
            {"type": "string", "enum": ["closed", "open"]},
            description="the door contact",
        ),
        "fault": PropertySpec(
            "fault", "Fault", FAULT_SCHEMA, description="why the lock is jammed, or null"
        ),
    }
)
ACTIONS: Mapping[str, ActionSpec] = MappingProxyType(
    {
        "lock": ActionSpec(
            "lock",
            "Lock",
            output=STATE_SCHEMA,
            idempotent=True,
            description="throw the bolt; also retries a jammed lock",
        ),
        "unlock": ActionSpec(
            "unlock",
            "Unlock",
            output=STATE_SCHEMA,
            idempotent=True,
            description="retract the bolt (refused while jammed); relocks after auto_relock_s",
        ),
    }
)
EVENTS: Mapping[str, EventSpec] = MappingProxyType(
    {
        name: EventSpec(name, name.capitalize(), EVENT_DATA, description=f"the lock is {name}")
        for name in STATES
    }
)


def _as_bool(channel: str, reading: Reading) -> bool:
    if not isinstance(reading.value, bool):
        raise DriverError(f"{channel} sensor returned {reading.value!r}, not true/false")
    return reading.value


class Lock(Thing):
    """A fail-secure door lock (see the module docstring for the safety rules)."""

    type_name: ClassVar[str] = "lock"

    def __init__(
        self,
        name: str,
        title: str,
        driver: Driver,
        safety: LockSafety | None = None,
        description: str = "",
    ) -> None:
        super().__init__(name, title, description)
        self.driver = driver
        self.safety = safety if safety is not None else LockSafety()
        self._state: LockState = "jammed"  # unknown until start() has confirmed the bolt
        self._fault: str | None = "not started"
        self._bolt: bool | None = None  # last bolt sensor value (True = thrown)
        self._door: bool | None = None  # last door contact value (True = closed)
        self._door_closed = asyncio.Event()
        self._op = asyncio.Lock()
        self._tasks = TaskOwner(f"lock {name}", self._task_died)
        self._relock: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._fault_task: asyncio.Task[None] | None = None
        self._unsubs: list[Unsubscribe] = []
        self._driver_up = False
        self._stopping = False

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
        """Start the driver and lock (rule 1). A jam or driver fault leaves the lock `jammed`;
        only a configuration error (DriverConfigError) is raised."""
        self._stopping = False
        async with self._op:
            try:
                await self._bring_up(SYSTEM)
                await self._drive(True, SYSTEM, "start: fail-secure lock")
            except ThingError as exc:
                log.warning("lock %s did not lock at start: %s", self.name, exc)

    async def stop(self) -> None:
        """Lock and stop the driver. Never raises (rule 1, rule 7)."""
        self._stopping = True
        await self._tasks.close()
        acquired = False
        try:
            async with asyncio.timeout(self.safety.jam_timeout_s + STOP_GRACE_S):
                await self._op.acquire()
                acquired = True
        except TimeoutError:
            log.warning("lock %s: an operation is still running; locking anyway", self.name)
        try:
            await self._secure_for_stop()
        finally:
            if acquired:
                self._op.release()
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        await stop_driver(self.driver, f"lock {self.name}")
        self._driver_up = False

    def safe_state_problem(self) -> str | None:
        return None if self._state == "locked" else (self._fault or self._state)

    # -- interactions
    async def read_property(self, name: str) -> Any:
        self._prop(name)
        if name == "state":
            return self._state
        if name == "fault":
            return self._fault
        try:
            closed = _as_bool("door", await self._read("door"))
        except DriverError as exc:
            self._fault_later(f"door contact fault: {exc}")
            raise ThingError(
                f"{self.name}: door contact fault: {exc}", code="sensor_fault"
            ) from exc
        self._note("door", closed)
        return "closed" if closed else "open"

    async def invoke_action(self, name: str, value: Any, actor: str) -> Any:
        self._action(name)
        check_value(NO_INPUT, value, f"input of action {name!r}")
        async with self._op:
            if self._stopping:  # checked under `_op`: nothing may follow stop()'s final lock
                raise ThingError(f"{self.name} is shutting down", code="driver_fault")
            if name == "lock":
                self._tasks.cancel(self._relock)
                retry = self._state == "jammed"
                await self._bring_up(actor)
                return await self._drive(True, actor, "lock retry" if retry else "lock requested")
            if self._state == "jammed":
                raise ThingError(
                    f"{self.name} is jammed ({self._fault}); lock it to retry before unlocking",
                    code="jammed",
                )
            state = await self._drive(False, actor, "unlock requested")
            self._schedule_relock()
            return state

    # -- the bolt
    async def _bring_up(self, actor: str) -> None:
        """Start the driver and subscribe, once (retried by `lock` after a failed start)."""
        if self._driver_up:
            return
        try:
            await self.driver.start()
        except DriverConfigError:
            raise
        except DriverError as exc:
            reason = f"driver failed to start: {exc}"
            self._set_state("jammed", reason)
            self.emit("jammed", self._event(actor, reason))
            raise ThingError(f"{self.name}: {reason}", code="driver_fault") from exc
        for channel in ("bolt_sensor", "door"):
            self._unsubs.append(self.driver.subscribe(channel, self._on_sensor))
        self._driver_up = True

    async def _drive(self, locked: bool, actor: str, reason: str) -> LockState:
        """Command the bolt and wait for confirmation (rule 2). The caller holds `_op`.

        Cancelled part-way (a caller gave up, shutdown), the lock fails secure: the bolt is
        commanded locked and the state becomes `jammed` until a `lock` confirms it."""
        try:
            return await self._drive_once(locked, actor, reason)
        except asyncio.CancelledError:
            await asyncio.shield(self._fail_secure("operation cancelled part-way", actor))
            raise

    async def _drive_once(self, locked: bool, actor: str, reason: str) -> LockState:
        self._tasks.cancel(self._watch)
        try:
            await self._write("bolt", locked)
        except DriverError as exc:
            why = f"driver fault: {exc}"
            await self._fail_secure(why, actor)
            raise ThingError(f"{self.name}: {why}", code="driver_fault") from exc
        problem, code = await self._confirm(locked)
        if problem is not None:
            await self._fail_secure(problem, actor)
            raise ThingError(f"{self.name} is jammed: {problem}", code=code)
        state: LockState = "locked" if locked else "unlocked"
        self._set_state(state, None)
        self.emit(state, self._event(actor, reason))
        return state

    async def _confirm(self, locked: bool) -> tuple[str | None, str]:
        """Poll the sensors until they agree with LOCKED, at most jam_timeout_s;
        returns (problem or None, error code)."""
        deadline = time.monotonic() + self.safety.jam_timeout_s
        while True:
            try:
                problem = self._disagreement(locked, *await self._read_sensors())
            except DriverError as exc:
                return f"sensor fault: {exc}", "sensor_fault"
            if problem is None:
                return None, ""
            if time.monotonic() >= deadline:
                return problem, "jammed"
            await asyncio.sleep(CONFIRM_POLL_S)

    async def _read_sensors(self) -> tuple[bool, bool]:
        bolt = _as_bool("bolt_sensor", await self._read("bolt_sensor"))
        door = _as_bool("door", await self._read("door"))
        self._note("bolt_sensor", bolt)
        self._note("door", door)
        return bolt, door

    @staticmethod
    def _disagreement(locked: bool, bolt: bool | None, door: bool | None) -> str | None:
        if bolt is None or door is None:
            return "sensor state unknown"
        if bolt != locked:
            now = "thrown" if bolt else "retracted"
            want = "locked" if locked else "unlocked"
            return f"bolt sensor reports the bolt {now}, commanded {want}"
        if locked and not door:
            return "door open while locked"
        return None

    async def _fail_secure(self, reason: str, actor: str) -> None:
        """Command the bolt locked and enter `jammed` (rules 1 and 4)."""
        self._tasks.cancel(self._relock)
        self._tasks.cancel(self._watch)
        try:
            await self._write("bolt", True)
        except DriverError as exc:
            reason = f"{reason}; commanding the bolt locked failed: {exc}"
        log.warning("lock %s jammed (%s): %s", self.name, actor, reason)
        self._set_state("jammed", reason)
        self.emit("jammed", self._event(actor, reason))

    async def _secure_for_stop(self) -> None:
        try:
            await self._write("bolt", True)
            problem, _ = await self._confirm(True)
        except Exception as exc:  # stop() never raises; report and stay jammed
            problem = f"commanding the bolt locked failed: {exc}"
        if problem is None:
            self._set_state("locked", None)
            self.emit("locked", self._event(SYSTEM, "shutdown"))
        else:
            reason = f"shutdown: {problem}"
            self._set_state("jammed", reason)
            self.emit("jammed", self._event(SYSTEM, reason))

    # -- watching the sensors (rule 3)
    def _on_sensor(self, channel: str, item: Reading | DriverError) -> None:
        if self._stopping:
            return
        try:
            if isinstance(item, DriverError):
                raise item
            self._note(channel, _as_bool(channel, item))
        except DriverError as exc:
            self._fault_later(f"{channel} fault: {exc}")
            return
        if not self._op.locked() and self._state != "jammed":
            problem = self._disagreement(self._state == "locked", self._bolt, self._door)
            if problem is not None and (self._watch is None or self._watch.done()):
                self._watch = self._spawn(self._jam_watch(), "jam-watch")

    def _note(self, channel: str, value: bool) -> None:
        if channel == "bolt_sensor":
            self._bolt = value
            return
        if value:
            self._door_closed.set()
        else:
            self._door_closed.clear()
        if value != self._door:
            self._door = value
            self.changed("door", "closed" if value else "open")

    async def _jam_watch(self) -> None:
        await asyncio.sleep(self.safety.jam_timeout_s)
        async with self._op:
            if self._state == "jammed" or self._stopping:
                return
            try:
                problem = self._disagreement(self._state == "locked", *await self._read_sensors())
            except DriverError as exc:
                problem = f"sensor fault: {exc}"
            if problem is not None:
                await self._fail_secure(problem, SYSTEM)

    def _fault_later(self, reason: str) -> None:
        """A driver fault outside an operation: fail-secure in a task (callbacks cannot await)."""
        if self._stopping or not self._driver_up:
            return
        if self._fault_task is None or self._fault_task.done():
            self._fault_task = self._spawn(self._handle_fault(reason), "fault")

    async def _handle_fault(self, reason: str) -> None:
        async with self._op:
            if not self._stopping and self._state != "jammed":
                await self._fail_secure(reason, SYSTEM)

    # -- auto-relock (rule 5)
    def _schedule_relock(self) -> None:
        self._tasks.cancel(self._relock)
        if self.safety.auto_relock_s > 0:
            self._relock = self._spawn(self._auto_relock(), "auto-relock")

    async def _auto_relock(self) -> None:
        await asyncio.sleep(self.safety.auto_relock_s)
        if self.safety.relock_requires_door_closed:
            await self._wait_door_closed()
        async with self._op:
            if self._state != "unlocked" or self._stopping:
                return
            with contextlib.suppress(ThingError):  # a failed relock is already jammed + reported
                await self._drive(True, SYSTEM, f"auto-relock after {self.safety.auto_relock_s} s")

    async def _wait_door_closed(self) -> None:
        while True:
            try:
                closed = _as_bool("door", await self._read("door"))
            except DriverError:
                return  # cannot see the door: lock now (fail-secure)
            self._note("door", closed)
            if closed:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DOOR_POLL_S):
                    await self._door_closed.wait()

    # -- helpers
    def _set_state(self, state: LockState, fault: str | None) -> None:
        if state != self._state:
            self._state = state
            self.changed("state", state)
        if fault != self._fault:
            self._fault = fault
            self.changed("fault", fault)

    def _event(self, actor: str, reason: str) -> dict[str, str]:
        return {"actor": actor, "reason": reason, "at": now_iso()}

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        return self._tasks.spawn(coro, name=f"lock-{self.name}-{what}")

    def _task_died(self, name: str, exc: BaseException) -> None:
        """A task of ours raised (logged by the owner): a bug, treated like a crash (rule 1)."""
        self._fault_later(f"internal error in {name}: {describe(exc)}")

    async def _read(self, channel: str) -> Reading:
        return await bounded_read(self.driver, channel)

    async def _write(self, channel: str, value: bool) -> None:
        await bounded_write(self.driver, channel, value)
