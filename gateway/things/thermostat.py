"""Thermostat Thing: a temperature sensor and a heater output under a hysteresis control loop.

Safety rules:

1. Heater off is the safe state. It is commanded off when the Thing starts (before the first
   control decision), when it stops (`stop()` never raises), and on every uncertainty: a sensor
   read error or a fault pushed by the driver, no reading fresher than `sensor_stale_s` (judged by
   the reading's own timestamp, so a frozen backend is caught too), a reading that is not a finite
   number or lies outside `sensor_min_c..sensor_max_c`, a failed heater write (the off command is
   then repeated every control period until a write succeeds), a driver call hung for more than
   5 s, and an unexpected error in the control loop. `fault` names every active cause; a `fault`
   event is emitted when a cause appears (`active` true) and when it clears (`active` false).
2. No untrusted value is served. While the sensor is faulty, stale or out of range, reading
   `temperature` raises ThingError `sensor_fault`; it never returns a stale value or null.
3. Hysteresis. In mode `heat` the heater turns on when the temperature is below
   `targetTemperature - hysteresis_c` and off when it is above `targetTemperature + hysteresis_c`;
   in between it keeps its state.
4. Frost protection. In every mode, `off` included, the heater turns on below `frost_protection_c`
   and off again above `frost_protection_c + hysteresis_c`.
5. Setpoint bounds. `targetTemperature` accepts only `min_setpoint_c..max_setpoint_c`; any other
   number is refused with `out_of_range` (a non-number with `invalid_input`) and nothing changes.
   The Thing starts in mode `heat` with target `default_setpoint_c`.
6. Maximum on-time. A heater run that reaches `max_on_s` is stopped and the heater then stays off
   for `min_off_s`; this rest overrides both heating demand and frost protection (the limit
   protects the heater and the room from a stuck control decision).
7. The control loop is the only writer of the heater. It runs every `control_interval_s`, and at
   once after a write of `targetTemperature` or `mode` and after a sensor fault pushed by the
   driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from device_drivers.base import Driver, Reading, Unsubscribe
from device_drivers.errors import DriverConfigError, DriverError
from gateway.config.model import ThermostatSafety
from gateway.errors import ConfigError, ThingError
from gateway.tasks import TaskOwner, describe
from gateway.things.base import EventSpec, PropertySpec, Thing, check_value
from gateway.things.io import bounded_read, bounded_write, now_iso, stop_driver
from gateway.things.resolution import resolution, rounded

log = logging.getLogger(__name__)

MODES = ("off", "heat")
TEMP_PUBLISH_DELTA_C = 0.05  # publish temperature changes this big; smaller ones are sensor noise
UNIT_C = "degree Celsius"
FAULT_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {"oneOf": [{"type": "string"}, {"type": "null"}]}
)


class Thermostat(Thing):
    """Heater control with hysteresis and the safety rules of the module docstring."""

    type_name: ClassVar[str] = "thermostat"

    def __init__(
        self,
        name: str,
        title: str,
        driver: Driver,
        safety: ThermostatSafety | None = None,
        description: str = "",
    ) -> None:
        super().__init__(name, title, description)
        self.driver = driver
        self.safety = s = safety if safety is not None else ThermostatSafety()
        if not s.min_setpoint_c <= s.default_setpoint_c <= s.max_setpoint_c:
            raise ConfigError(
                f"thing {name}", "safety.default_setpoint_c", "min_setpoint_c..max_setpoint_c"
            )
        self._setpoint_schema = MappingProxyType(
            {
                "type": "number",
                "unit": UNIT_C,
                "minimum": s.min_setpoint_c,
                "maximum": s.max_setpoint_c,
            }
        )
        self._resolution = resolution(driver, "temperature")
        self._properties = MappingProxyType(
            {
                "temperature": PropertySpec(
                    "temperature",
                    "Temperature",
                    {"type": "number", "unit": UNIT_C},
                    description="room temperature; fails with sensor_fault when not trusted",
                    resolution=self._resolution,
                ),
                "targetTemperature": PropertySpec(
                    "targetTemperature",
                    "Target temperature",
                    self._setpoint_schema,
                    read_only=False,
                ),
                "mode": PropertySpec(
                    "mode",
                    "Mode",
                    {"type": "string", "enum": list(MODES)},
                    read_only=False,
                    description="heat: hold the target; off: frost protection only",
                ),
                "heating": PropertySpec(
                    "heating", "Heating", {"type": "boolean"}, description="heater running"
                ),
                "fault": PropertySpec("fault", "Fault", FAULT_SCHEMA, description="or null"),
            }
        )
        self._target = s.default_setpoint_c
        self._mode = "heat"
        self._heating = False  # the last state successfully written to the heater
        self._on_since: float | None = None
        self._rest_until = 0.0
        self._heat_demand = False
        self._frost_demand = False
        self._temp: float | None = None  # last trusted temperature, None while not trusted
        self._temp_at = 0.0
        self._published: float | None = None
        self._pushed: Reading | None = None
        self._pushed_fault: tuple[str, float] | None = None
        self._problems: dict[str, str] = {}  # "sensor" | "heater" | "control" -> reason
        self._fault: str | None = None
        self._wake = asyncio.Event()
        self._tasks = TaskOwner(f"thermostat {name}", self._loop_died)
        self._unsub: Unsubscribe | None = None

    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return self._properties

    @property
    def events(self) -> Mapping[str, EventSpec]:
        return {
            "fault": EventSpec(
                "fault",
                "Fault",
                {
                    "type": "object",
                    "properties": {
                        "active": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
                description="a fault appeared (active) or cleared; the heater is off while active",
            ),
            "heatingChanged": EventSpec(
                "heatingChanged",
                "Heating changed",
                {
                    "type": "object",
                    "properties": {
                        "heating": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
            ),
        }

    # -- lifecycle
    async def start(self) -> None:
        """Start the driver, command the heater off, run one control step, start the loop."""
        try:
            await self.driver.start()
        except DriverConfigError:
            raise
        except DriverError as exc:
            self._set_problem("sensor", f"driver failed to start: {exc}")
        if self._unsub is None:
            self._unsub = self.driver.subscribe("temperature", self._on_reading)
        await self._command(False, "start", force=True)
        await self._step()
        self._tasks.keep_running(self._loop, name=f"thermostat-{self.name}-control")

    async def stop(self) -> None:
        """Stop the loop, command the heater off and stop the driver. Never raises."""
        await self._tasks.close()
        try:
            await self._command(False, "stop", force=True)
        except Exception:
            log.exception("thermostat %s: heater off at stop failed", self.name)
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        await stop_driver(self.driver, f"thermostat {self.name}")

    def safe_state_problem(self) -> str | None:
        return self._problems.get("heater") or ("heater on" if self._heating else None)

    # -- interactions
    async def read_property(self, name: str) -> Any:
        self._prop(name)
        if name == "temperature":
            stale = time.monotonic() - self._temp_at > self.safety.sensor_stale_s
            if self._temp is None or stale:
                why = self._problems.get("sensor", "no fresh reading")
                raise ThingError(
                    f"{self.name}: temperature not available: {why}", code="sensor_fault"
                )
            return rounded(self._temp, self._resolution)
        return {
            "targetTemperature": self._target,
            "mode": self._mode,
            "heating": self._heating,
            "fault": self._fault,
        }[name]

    async def write_property(self, name: str, value: Any, actor: str) -> None:
        spec = self._prop(name)
        if spec.read_only:
            raise ThingError(f"property {name!r} is read-only", code="read_only")
        value = check_value(spec.schema, value, name)
        if name == "targetTemperature":
            self._target = value
        else:
            self._mode = value
        log.info("thermostat %s: %s = %r by %s", self.name, name, value, actor)
        self.changed(name, value)
        self._wake.set()

    # -- control
    def _on_reading(self, channel: str, item: Reading | DriverError) -> None:
        if isinstance(item, DriverError):
            self._pushed_fault = (str(item), time.monotonic())
            self._wake.set()
        else:
            self._pushed = item

    def _loop_died(self, name: str, exc: BaseException) -> None:
        """The control loop raised (a bug; logged by the owner): a `control` problem until the
        restarted loop's next step clears it; each step turns the heater off on errors."""
        self._set_problem("control", f"control loop died: {describe(exc)}")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.safety.control_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self._step()

    async def _step(self) -> None:
        """One control decision; any unexpected error turns the heater off (rule 1)."""
        try:
            now = time.monotonic()
            temp = await self._sample(now)
            if temp is None:
                self._heat_demand = self._frost_demand = False
                await self._command(False, self._problems["sensor"], force=True)
            elif "heater" in self._problems:
                await self._command(False, "recovering from a heater fault", force=True)
            else:
                await self._command(*self._decide(temp, now))
            self._set_problem("control", None)
        except Exception as exc:
            log.exception("thermostat %s: control step failed", self.name)
            self._set_problem("control", f"control error: {exc!r}")
            with contextlib.suppress(Exception):
                await self._command(False, "control error", force=True)

    async def _sample(self, now: float) -> float | None:
        """The trusted temperature now, or None with the `sensor` problem set (rules 1, 2)."""
        problem: str | None = None
        temp: float | None = None
        try:
            reading = await self._read("temperature")
        except DriverError as exc:
            problem = f"temperature sensor fault: {exc}"
        else:
            if self._pushed is not None and self._pushed.at > reading.at:
                reading = self._pushed
            value = reading.value
            age = now - reading.at
            if self._pushed_fault is not None and self._pushed_fault[1] > reading.at:
                problem = f"temperature sensor fault: {self._pushed_fault[0]}"
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                problem = f"temperature sensor returned {value!r}, not a number"
            elif not math.isfinite(value):
                problem = f"temperature sensor returned {value!r}"
            elif age > self.safety.sensor_stale_s:
                problem = (
                    "temperature sensor stale: no fresh reading for more than "
                    f"{self.safety.sensor_stale_s} s"
                )
            elif not self.safety.sensor_min_c <= value <= self.safety.sensor_max_c:
                problem = (
                    f"temperature {value} °C outside the plausible range "
                    f"{self.safety.sensor_min_c}..{self.safety.sensor_max_c} °C"
                )
            else:
                temp = float(value)
                self._temp_at = reading.at
        self._set_problem("sensor", problem)
        self._temp = temp
        shown = None if temp is None else rounded(temp, self._resolution)
        if shown is not None and (
            self._published is None or abs(shown - self._published) >= TEMP_PUBLISH_DELTA_C
        ):
            self._published = shown
            self.changed("temperature", shown)
        return temp

    def _decide(self, temp: float, now: float) -> tuple[bool, str]:
        """Heater wanted? (rules 3, 4, 6)"""
        s = self.safety
        h = s.hysteresis_c
        if self._mode != "heat":
            self._heat_demand = False
        elif temp < self._target - h:
            self._heat_demand = True
        elif temp > self._target + h:
            self._heat_demand = False
        if temp < s.frost_protection_c:
            self._frost_demand = True
        elif temp > s.frost_protection_c + h:
            self._frost_demand = False
        if now < self._rest_until:
            return False, f"resting {s.min_off_s} s after the maximum on-time"
        if self._heating and self._on_since is not None and now - self._on_since >= s.max_on_s:
            self._rest_until = now + s.min_off_s
            return False, f"maximum on-time {s.max_on_s} s reached"
        if self._heat_demand:
            return True, f"{rounded(temp, self._resolution)} °C below target {self._target} °C"
        if self._frost_demand:
            return True, f"frost protection: {rounded(temp, self._resolution)} °C"
        return False, "target reached" if self._mode == "heat" else "mode off"

    async def _command(self, on: bool, reason: str, force: bool = False) -> None:
        """Write the heater if it must change (or FORCE); a failure is a `heater` problem."""
        if on == self._heating and not force:
            return
        try:
            await self._write("heater", on)
        except DriverError as exc:
            self._set_problem("heater", f"heater write failed: {exc}")
            return
        self._set_problem("heater", None)
        if on != self._heating:
            self._heating = on
            self._on_since = time.monotonic() if on else None
            self.changed("heating", on)
            self.emit("heatingChanged", {"heating": on, "reason": reason, "at": now_iso()})

    def _set_problem(self, key: str, reason: str | None) -> None:
        old = self._problems.get(key)
        if reason == old:
            return
        if reason is None:
            del self._problems[key]
        else:
            self._problems[key] = reason
        fault = "; ".join(self._problems.values()) or None
        if fault != self._fault:
            self._fault = fault
            self.changed("fault", fault)
        if reason is not None and old is None:  # events on transitions only, not on re-wording
            log.warning("thermostat %s fault: %s", self.name, reason)
            self.emit("fault", {"active": True, "reason": reason, "at": now_iso()})
        elif reason is None:
            self.emit("fault", {"active": False, "reason": old, "at": now_iso()})

    async def _read(self, channel: str) -> Reading:
        return await bounded_read(self.driver, channel)

    async def _write(self, channel: str, value: bool) -> None:
        await bounded_write(self.driver, channel, value)
