"""Sensor Thing: read-only temperature, humidity and/or contact values.

Safety rules:

1. A stale reading is a fault, never a value. A reading older than `stale_s` (judged by its own
   timestamp, so a frozen backend is caught too), a driver read error, a fault pushed by the
   driver, and an implausible value (temperature outside -55..125 °C, humidity outside 0..100 %RH,
   a contact that is not true/false, a non-finite number) make reading that property fail with
   ThingError `sensor_fault`.
2. Values are polled every `poll_s` and taken from driver pushes as well; a property is published
   to observers only with a trusted value. `fault` lists the faulty kinds and is observable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from device_drivers.base import Driver, Reading, Unsubscribe
from device_drivers.errors import DriverConfigError, DriverError
from gateway.config.model import SensorSafety
from gateway.errors import ConfigError, ThingError
from gateway.tasks import TaskOwner
from gateway.things.base import PropertySpec, Thing
from gateway.things.io import bounded_read, stop_driver
from gateway.things.resolution import resolution, rounded

log = logging.getLogger(__name__)

KIND_SCHEMAS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "temperature": {"type": "number", "unit": "degree Celsius"},
        "humidity": {"type": "number", "unit": "percent", "minimum": 0, "maximum": 100},
        "contact": {"type": "boolean"},
    }
)
KIND_TITLES = {"temperature": "Temperature", "humidity": "Relative humidity", "contact": "Contact"}
# plausible ranges: the DS18B20's -55..125 °C measuring range, and what %RH can physically be
PLAUSIBLE: Mapping[str, tuple[float, float]] = {"temperature": (-55.0, 125.0), "humidity": (0, 100)}
NUMBER_DELTA = 0.05  # publish numeric changes this big; smaller ones are sensor noise


class Sensor(Thing):
    """Read-only sensor values, refused when stale or implausible (module docstring)."""

    type_name: ClassVar[str] = "sensor"

    def __init__(
        self,
        name: str,
        title: str,
        driver: Driver,
        safety: SensorSafety | None = None,
        description: str = "",
    ) -> None:
        super().__init__(name, title, description)
        self.driver = driver
        self.safety = safety if safety is not None else SensorSafety()
        kinds = self.safety.kinds
        if not kinds or any(k not in KIND_SCHEMAS for k in kinds) or len(set(kinds)) != len(kinds):
            raise ConfigError(
                f"thing {name}", "safety.kinds", f"distinct kinds among {', '.join(KIND_SCHEMAS)}"
            )
        self._resolution = {k: resolution(driver, k) for k in kinds}
        props = {
            k: PropertySpec(
                k,
                KIND_TITLES[k],
                KIND_SCHEMAS[k],
                description="fails when stale",
                resolution=self._resolution[k],
            )
            for k in kinds
        }
        props["fault"] = PropertySpec(
            "fault", "Fault", {"oneOf": [{"type": "string"}, {"type": "null"}]}
        )
        self._properties = MappingProxyType(props)
        self._cache: dict[str, Reading] = {}  # trusted readings only
        self._published: dict[str, Any] = {}
        self._problems: dict[str, str] = {k: "no reading yet" for k in kinds}
        self._fault: str | None = self._fault_text()
        self._tasks = TaskOwner(f"sensor {name}")  # a poll loop that dies is logged, restarted
        self._unsubs: list[Unsubscribe] = []

    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return self._properties

    # -- lifecycle
    async def start(self) -> None:
        """Start the driver, take a first reading of every kind and start polling."""
        try:
            await self.driver.start()
        except DriverConfigError:
            raise
        except DriverError as exc:
            for kind in self.safety.kinds:
                self._reject(kind, f"driver failed to start: {exc}")
        if not self._unsubs:
            for kind in self.safety.kinds:
                self._unsubs.append(self.driver.subscribe(kind, self._on_reading))
        await self._poll_all()
        self._tasks.keep_running(self._poll, name=f"sensor-{self.name}-poll")

    async def stop(self) -> None:
        """Stop polling and the driver. Never raises."""
        await self._tasks.close()
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        await stop_driver(self.driver, f"sensor {self.name}")

    # -- interactions
    async def read_property(self, name: str) -> Any:
        self._prop(name)
        if name == "fault":
            return self._fault
        reading = self._cache.get(name)
        if reading is None or time.monotonic() - reading.at > self.safety.stale_s:
            await self._refresh(name)
            reading = self._cache.get(name)
        if reading is None:
            why = self._problems.get(name, "no reading")
            raise ThingError(f"{self.name}: {name} not available: {why}", code="sensor_fault")
        return self._shown(name, reading.value)

    def _shown(self, kind: str, value: Any) -> Any:
        """VALUE as reported: a measured number rounded to the sensor's resolution."""
        if kind == "contact" or isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        return rounded(float(value), self._resolution.get(kind))

    # -- internals
    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.safety.poll_s)
            await self._poll_all()

    async def _poll_all(self) -> None:
        for kind in self.safety.kinds:
            await self._refresh(kind)

    async def _refresh(self, kind: str) -> None:
        try:
            reading = await self._read(kind)
        except DriverError as exc:
            self._reject(kind, f"read failed: {exc}")
            return
        self._accept(kind, reading)

    def _on_reading(self, kind: str, item: Reading | DriverError) -> None:
        if isinstance(item, DriverError):
            self._reject(kind, f"driver fault: {item}")
        else:
            self._accept(kind, item)

    def _accept(self, kind: str, reading: Reading) -> None:
        """Cache and publish READING if it is trusted; otherwise it is a fault (rule 1)."""
        value = reading.value
        if kind == "contact":
            if not isinstance(value, bool):
                return self._reject(kind, f"contact reads {value!r}, not true/false")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._reject(kind, f"{kind} reads {value!r}, not a number")
        elif not math.isfinite(value) or not PLAUSIBLE[kind][0] <= value <= PLAUSIBLE[kind][1]:
            return self._reject(kind, f"{kind} reads {value}, outside {PLAUSIBLE[kind]}")
        if time.monotonic() - reading.at > self.safety.stale_s:
            return self._reject(kind, f"stale: no fresh reading for over {self.safety.stale_s} s")
        self._cache[kind] = reading
        self._set_problem(kind, None)
        last = self._published.get(kind)
        shown = self._shown(kind, value)
        if last is None or (
            abs(shown - last) >= NUMBER_DELTA if kind != "contact" else shown != last
        ):
            self._published[kind] = shown
            self.changed(kind, shown)
        return None

    def _reject(self, kind: str, reason: str) -> None:
        self._cache.pop(kind, None)
        self._published.pop(kind, None)
        self._set_problem(kind, reason)

    def _set_problem(self, kind: str, reason: str | None) -> None:
        if reason is None:
            self._problems.pop(kind, None)
        else:
            if kind not in self._problems:
                log.warning("sensor %s: %s: %s", self.name, kind, reason)
            self._problems[kind] = reason
        fault = self._fault_text()
        if fault != self._fault:
            self._fault = fault
            self.changed("fault", fault)

    def _fault_text(self) -> str | None:
        return "; ".join(f"{k}: {why}" for k, why in self._problems.items()) or None

    async def _read(self, channel: str) -> Reading:
        return await bounded_read(self.driver, channel)
