"""The one async driver interface every backend implements.

Backends: sim, gpio, onewire, serial, ble, companion.

A driver serves one Thing. The Thing asks for *channels* by role name:

    lock:        bolt (write bool, True = throw bolt / locked), bolt_sensor (read bool, True = bolt
                 thrown), door (read bool, True = door closed)
    thermostat:  temperature (read float, degrees C), heater (write bool, True = on)
    switch:      output (write/read bool)
    sensor:      temperature (float C), humidity (float %RH), contact (bool, True = closed)

Rules every backend keeps:
- hardware handles are created in `start()` (or injected), never at import time;
- `read` returns a `Reading` or raises `DriverError` (a stale or corrupt value is an error, never a
  value);
- `subscribe` callbacks run on the event loop (thread callbacks are handed over with
  `loop.call_soon_threadsafe`); a callback receives a `Reading` or a `DriverError` (fault);
- `stop()` leaves outputs in their safe state when the backend knows one;
- `driver_settings` are read into the backend's settings dataclass (`settings_model`,
  `read_settings`): one typed reader for the whole configuration, docs/config.md generated from it;
- `validate()` is the pre-flight check (settings against the machine: pins that exist, device
  files and ports that are present) and `claims()` names the exclusive resources (pins, ports) the
  driver will use; the gateway calls both for every driver before it starts any Thing
  (`registry.check_drivers`), so a bad config starts nothing half-way.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.settings import driver_reader

T = TypeVar("T")

Value = bool | int | float | str


@dataclass(frozen=True)
class Reading:
    value: Value
    at: float = field(default_factory=time.monotonic)  # time.monotonic() of the measurement


Callback = Callable[[str, "Reading | DriverError"], None]
Unsubscribe = Callable[[], None]


@dataclass(frozen=True)
class Claim:
    """An exclusive resource a driver will use, checked across all Things before start.

    `resource` is canonical ("gpio:GPIO17", "serial:/dev/ttyUSB0"), `setting` the driver setting
    that claims it (for the error message). Claims with the same non-None `share` key may name the
    same resource (e.g. two Things on one RS-485 bus with the same line settings)."""

    resource: str
    setting: str
    share: str | None = None


class Driver(abc.ABC):
    """Base class of every backend. Subclasses set `backend` and implement the abstract methods."""

    backend: ClassVar[str] = "abstract"
    # the dataclass of its `driver_settings` per Thing type ("*": every type), for the docs
    settings_model: ClassVar[Mapping[str, type[Any]]] = {}

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        self.thing = thing
        self.thing_type = thing_type
        self.settings = dict(settings)
        self._subs: dict[str, list[Callback]] = {}

    # -- lifecycle
    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    # -- I/O
    @abc.abstractmethod
    async def read(self, channel: str) -> Reading: ...

    @abc.abstractmethod
    async def write(self, channel: str, value: Value) -> None: ...

    def channels(self) -> Sequence[str]:
        """The channel names this driver serves for its Thing."""
        return ()

    # -- pre-flight (called for every driver before any Thing starts)
    def validate(self) -> None:
        """Check the settings against the machine without opening any hardware; raise
        DriverConfigError naming the Thing and the setting. The default checks nothing."""
        return None

    def claims(self) -> Sequence[Claim]:
        """The exclusive resources this driver will use (see `Claim`). Default: none."""
        return ()

    def subscribe(self, channel: str, callback: Callback) -> Unsubscribe:
        """Call `callback(channel, reading_or_fault)` on every change of CHANNEL."""
        if self.channels() and channel not in self.channels():
            raise DriverConfigError(
                f"thing {self.thing!r}: driver {self.backend!r} has no channel {channel!r}"
            )
        self._subs.setdefault(channel, []).append(callback)

        def unsubscribe() -> None:
            cbs = self._subs.get(channel, [])
            if callback in cbs:
                cbs.remove(callback)

        return unsubscribe

    def _emit(self, channel: str, item: Reading | DriverError) -> None:
        """Deliver to subscribers; must be called on the event loop thread."""
        for cb in list(self._subs.get(channel, ())):
            cb(channel, item)

    def _emit_threadsafe(
        self, loop: asyncio.AbstractEventLoop, channel: str, item: Reading | DriverError
    ) -> None:
        """`_emit` from any thread (gpiozero, pyserial and D-Bus callbacks): handed to LOOP."""
        try:
            loop.call_soon_threadsafe(self._emit, channel, item)
        except RuntimeError:  # the loop is closed: the gateway is gone, nobody is listening
            pass

    def read_settings(self, model: type[T]) -> T:
        """The driver settings as the dataclass MODEL (docs/config.md is generated from these):
        a wrong, missing or unknown one is a DriverConfigError naming the Thing and the setting."""
        return driver_reader(self.thing, self.backend).read(model, self.settings)
