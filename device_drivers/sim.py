"""Simulated hardware for every Thing type (backend "sim"), for tests, demos and development.

One `SimDriver` serves one Thing; `thing_type` picks the simulated device:

    lock:        a bolt actuator that takes `bolt_travel_s` to move, a bolt sensor that follows it
                 (unless jammed) and a door contact (closed unless told otherwise).
    thermostat:  a room heat model driven by the heater output, sampled every `sample_s` and pushed
                 to subscribers. dT/dt = heat_rate * heater - loss_rate * (T - outside), solved
                 exactly per step, with simulated time running `time_scale` times faster.
    switch:      one output.
    sensor:      temperature, humidity and contact values, sampled every `sample_s`.

Settings (all optional, unknown names are refused): the dataclasses SimLock, SimThermostat,
SimSwitch and SimSensor below; their reference is docs/config.md.

The public methods under "test hooks" inject faults and change the simulated world. They are for
tests and demos only and must be called on the event loop thread.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from device_drivers.base import Driver, Reading, Value
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.settings import setting
from device_drivers.tasks import TaskOwner

CHANNELS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt", "bolt_sensor", "door"),
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity", "contact"),
}
WRITABLE: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt",),
    "thermostat": ("heater",),
    "switch": ("output",),
    "sensor": (),
}
# channels sampled periodically and pushed to subscribers (the others push on change)
SAMPLED: Mapping[str, tuple[str, ...]] = {
    "thermostat": ("temperature",),
    "sensor": ("temperature", "humidity", "contact"),
}


@dataclass(frozen=True)
class SimLock:
    bolt_travel_s: float = setting(0.2, "how long the bolt takes to move", min=0, unit="s")
    bolt_thrown: bool = setting(False, "bolt position at power-up")
    door_closed: bool = setting(True, "door contact at power-up")


@dataclass(frozen=True)
class SimThermostat:
    initial_c: float = setting(18.0, "room temperature at start", unit="°C")
    outside_c: float = setting(5.0, "outside temperature", unit="°C")
    heat_rate_c_per_s: float = setting(0.02, "warming by the heater", min=0, unit="°C/s")
    loss_rate_per_s: float = setting(
        0.0005, "heat loss per degree above outside", min=0, unit="1/s"
    )
    time_scale: float = setting(1.0, "simulated time runs this many times faster", min=0)
    sample_s: float = setting(0.5, "period of the pushed temperature samples", min=0, unit="s")


@dataclass(frozen=True)
class SimSwitch:
    safe_output: bool = setting(False, "output at power-up; forced by stop() only if set")


@dataclass(frozen=True)
class SimSensor:
    temperature_c: float = setting(21.0, "temperature", unit="°C")
    humidity_pct: float = setting(45.0, "humidity", min=0, unit="%RH")
    contact_closed: bool = setting(True, "contact state")
    sample_s: float = setting(0.5, "period of the pushed samples", min=0, unit="s")


SETTINGS: Mapping[str, type[Any]] = {
    "lock": SimLock,
    "thermostat": SimThermostat,
    "switch": SimSwitch,
    "sensor": SimSensor,
}
INITIAL: Mapping[str, Mapping[str, str]] = {
    "lock": {"bolt": "bolt_thrown", "bolt_sensor": "bolt_thrown", "door": "door_closed"},
    "thermostat": {"temperature": "initial_c"},
    "switch": {"output": "safe_output"},
    "sensor": {
        "temperature": "temperature_c",
        "humidity": "humidity_pct",
        "contact": "contact_closed",
    },
}
MIN_SAMPLE_S = 0.001  # a zero sample period would spin the event loop


class SimDriver(Driver):
    """Simulated device for one Thing. No hardware; all state lives in this object."""

    backend: ClassVar[str] = "sim"
    settings_model: ClassVar[Mapping[str, type[Any]]] = SETTINGS

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        super().__init__(thing, thing_type, settings, **inject)
        if thing_type not in CHANNELS:
            raise DriverConfigError(
                f"thing {thing!r}: sim driver has no device of type {thing_type!r} "
                f"(known: {', '.join(CHANNELS)})"
            )
        if inject:
            raise DriverConfigError(
                f"thing {thing!r}: sim driver takes no injected objects ({', '.join(inject)})"
            )
        self.cfg: dict[str, Any] = asdict(self.read_settings(SETTINGS[thing_type]))
        self._values: dict[str, Value] = {ch: False for ch in CHANNELS[thing_type]}
        for ch, key in INITIAL[thing_type].items():
            self._values[ch] = self.cfg[key]
        self._failing: dict[str, str] = {}  # channel -> reason: reads raise, samples push faults
        self._frozen: dict[str, Reading] = {}  # stale channels: the last reading, never refreshed
        self._forced: dict[str, Value] = {}  # channel -> value reported instead of the real one
        self._write_fault: str | None = None
        self._jammed = False
        self._running = False
        self._tasks = TaskOwner(f"sim {thing}")
        self._travel: asyncio.Task[None] | None = None
        self._model_at = time.monotonic()
        self.writes: list[tuple[str, Value]] = []  # every successful write, for tests

    # -- Driver interface
    def channels(self) -> Sequence[str]:
        return CHANNELS[self.thing_type]

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._model_at = time.monotonic()
        if self.thing_type in SAMPLED:
            self._spawn(self._sampler(), "sampler")
        if self.thing_type == "lock" and self._values["bolt"] != self._values["bolt_sensor"]:
            self._travel = self._spawn(self._bolt_travel(), "bolt")

    async def stop(self) -> None:
        """Cancel the simulation tasks and put the outputs in their safe state."""
        self._running = False
        await self._tasks.close()
        if self.thing_type == "lock":
            self._values["bolt"] = True  # fail-secure: a de-energised bolt springs out
            if not self._jammed:
                self._values["bolt_sensor"] = True
        elif self.thing_type == "thermostat":
            self._advance()
            self._values["heater"] = False
        elif self.thing_type == "switch" and "safe_output" in self.settings:
            self._values["output"] = self.cfg["safe_output"]

    async def read(self, channel: str) -> Reading:
        self._io(channel)
        if channel in self._failing:
            raise DriverError(f"thing {self.thing!r}: sim {channel}: {self._failing[channel]}")
        if channel in self._frozen:
            return self._frozen[channel]
        if self.thing_type == "thermostat":
            self._advance()
        return Reading(self._forced.get(channel, self._values[channel]))

    async def write(self, channel: str, value: Value) -> None:
        self._io(channel)
        if channel not in WRITABLE[self.thing_type]:
            raise DriverConfigError(f"thing {self.thing!r}: sim channel {channel!r} is read-only")
        if self._write_fault is not None:
            raise DriverError(f"thing {self.thing!r}: sim write {channel}: {self._write_fault}")
        if not isinstance(value, bool):
            raise DriverError(f"thing {self.thing!r}: sim {channel} takes true or false")
        if self.thing_type == "thermostat":
            self._advance()  # integrate up to now with the old heater state
        old = self._values[channel]
        self._values[channel] = value
        self.writes.append((channel, value))
        if self.thing_type == "lock":
            if self._travel is not None:
                self._travel.cancel()
            self._travel = self._spawn(self._bolt_travel(), "bolt")
        elif old != value:
            self._push(channel)

    # -- test hooks (for tests and demos only; call on the event loop thread)
    def jam_bolt(self, jammed: bool = True) -> None:
        """Jam the bolt where it is (lock); unjamming lets it travel to the commanded position."""
        self._need("lock")
        self._jammed = jammed
        if not jammed and self._running and self._values["bolt"] != self._values["bolt_sensor"]:
            self._travel = self._spawn(self._bolt_travel(), "bolt")

    def set_door(self, closed: bool) -> None:
        """Open (False) or close (True) the door (lock); pushes the door contact."""
        self._need("lock")
        self.set_value("door", closed)

    def set_room_temperature(self, celsius: float) -> None:
        """Set the simulated room temperature (thermostat); pushes a sample."""
        self._need("thermostat")
        self._advance()
        self.set_value("temperature", float(celsius))

    def set_value(self, channel: str, value: Value) -> None:
        """Set the physical value of an input channel (sensor values, door); pushes it."""
        self._check(channel)
        self._values[channel] = value
        self._push(channel)

    def fail_sensor(self, channel: str, reason: str = "simulated sensor failure") -> None:
        """Make reads of CHANNEL raise DriverError and push the fault to subscribers."""
        self._check(channel)
        self._failing[channel] = reason
        self._push(channel)

    def make_stale(self, channel: str) -> None:
        """Freeze CHANNEL: no more samples are pushed and reads return the last reading with its
        original timestamp (a misbehaving backend; Things must check `Reading.at`)."""
        self._check(channel)
        value = self._forced.get(channel, self._values[channel])
        self._frozen[channel] = Reading(value)

    def force_value(self, channel: str, value: Value) -> None:
        """Report VALUE on CHANNEL whatever the real one (e.g. -127.0 or 85.0 for a DS18B20)."""
        self._check(channel)
        self._forced[channel] = value
        self._push(channel)

    def clear_sensor_faults(self, channel: str | None = None) -> None:
        """Undo fail_sensor, make_stale and force_value on CHANNEL (all channels if None)."""
        for table in (self._failing, self._frozen, self._forced):
            for ch in [channel] if channel is not None else list(table):
                table.pop(ch, None)
        for ch in [channel] if channel is not None else self.channels():
            self._push(ch)

    def fail_writes(self, reason: str = "simulated write failure") -> None:
        """Make every write raise DriverError until restore_writes()."""
        self._write_fault = reason

    def restore_writes(self) -> None:
        self._write_fault = None

    def value(self, channel: str) -> Value:
        """The true simulated value of CHANNEL, ignoring injected sensor faults."""
        self._check(channel)
        if self.thing_type == "thermostat":
            self._advance()
        return self._values[channel]

    @property
    def running(self) -> bool:
        return self._running

    # -- internals
    def _need(self, thing_type: str) -> None:
        if self.thing_type != thing_type:
            raise DriverConfigError(f"thing {self.thing!r}: not a simulated {thing_type}")

    def _check(self, channel: str) -> None:
        """CHANNEL must exist; hooks may use it before start() to prepare the world."""
        if channel not in CHANNELS[self.thing_type]:
            raise DriverConfigError(f"thing {self.thing!r}: sim driver has no channel {channel!r}")

    def _io(self, channel: str) -> None:
        """CHANNEL must exist and the driver be running (like hardware that is not open)."""
        self._check(channel)
        if not self._running:
            raise DriverError(f"thing {self.thing!r}: sim driver is not running")

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        return self._tasks.spawn(coro, name=f"sim-{self.thing}-{what}")

    def _push(self, channel: str) -> None:
        """Deliver the current state of CHANNEL to subscribers, as the real device would."""
        if not self._running or channel in self._frozen:
            return
        if channel in self._failing:
            self._emit(channel, DriverError(f"sim {channel}: {self._failing[channel]}"))
        else:
            self._emit(channel, Reading(self._forced.get(channel, self._values[channel])))

    async def _bolt_travel(self) -> None:
        await asyncio.sleep(self.cfg["bolt_travel_s"])
        if not self._jammed and self._values["bolt_sensor"] != self._values["bolt"]:
            self._values["bolt_sensor"] = self._values["bolt"]
            self._push("bolt_sensor")

    async def _sampler(self) -> None:
        period = max(self.cfg["sample_s"], MIN_SAMPLE_S)
        while True:
            await asyncio.sleep(period)
            if self.thing_type == "thermostat":
                self._advance()
            for channel in SAMPLED[self.thing_type]:
                self._push(channel)

    def _advance(self) -> None:
        """Integrate the room heat model up to now (exact solution of the linear ODE)."""
        if self.thing_type != "thermostat":
            return
        now = time.monotonic()
        dt = (now - self._model_at) * self.cfg["time_scale"]
        self._model_at = now
        if not self._running or dt <= 0:
            return
        temp = float(self._values["temperature"])
        heat = self.cfg["heat_rate_c_per_s"] if self._values["heater"] else 0.0
        loss = self.cfg["loss_rate_per_s"]
        if loss > 0:
            eq = self.cfg["outside_c"] + heat / loss
            temp = eq + (temp - eq) * math.exp(-loss * dt)
        else:
            temp += heat * dt
        self._values["temperature"] = temp
