"""GPIO backend (gpiozero): relay outputs, debounced contact inputs, PWM, and 1-wire / IIO
temperature sources (backend "gpio").

Channels per Thing type, each configured as a table in `driver_settings`:

    lock:        bolt         output  the strike or bolt relay
                 bolt_sensor  input   the bolt / latch monitor switch, or "relay" (see below)
                 door         input   the door contact (reed switch)
    thermostat:  heater       output  the heater relay
                 temperature  sysfs   { ds18b20 = "28-..." } or { dht22 = "iio:device0" }
    switch:      output       output  the relay (or a PWM output: pwm = true)
                 button       input   optional local push button that toggles the output
    sensor:      contact      input   optional
                 temperature, humidity  sysfs sources, optional (at least one channel)

Output table: pin (17, "GPIO17", "BOARD11"...), active_high (true; false for the common
active-low relay modules), pwm (false), frequency_hz (100, PWM only). The bolt also takes
`energized` = "unlocked" (default: a fail-secure strike or bolt that opens only while powered) or
"locked" (a fail-safe magnetic lock or a solenoid bolt thrown while powered; see hardware/).
Input table: pin, pull_up (true: the switch closes to GND; false: to 3V3), invert (false; true
for a normally-closed contact), bounce_s (0.05: an edge counts once the level has been stable
this long). An input reads true while its switch is closed: door closed, bolt thrown, button
pressed.

`bolt_sensor = "relay"` reports the relay's own state as the bolt position: there is then no
mechanical confirmation (an electric strike without a monitor switch). Say so explicitly.

Settings: the dataclasses of `device_drivers.gpio_settings` (per Thing type, and the pin
tables; reference with defaults and ranges: docs/config.md). Every gpio Thing takes pin_factory
(default: the GPIOZERO_PIN_FACTORY environment variable, else gpiozero's default order, lgpio
first), w1_pin (4: the 1-wire bus pin of the w1-gpio overlay, reserved when a DS18B20 is used)
and dht22_pin (the dht11 overlay's gpiopin; reserved when given); thermostats and sensors also
the sysfs source settings of `device_drivers.onewire` (sysfs_root, read_timeout_s, ds18b20,
dht22, temperature, humidity). Injected: `pin_factory=` a gpiozero
Factory (tests: MockFactory(pin_class=MockPWMPin)), `sysfs_root=` a folder.

gpiozero callbacks arrive on its threads; they are handed to the event loop with
`call_soon_threadsafe`, and debouncing runs on the loop (`call_later`). Output writes are
non-blocking register or ioctl writes (microseconds) and run inline; opening the pin factory and
the devices runs in a worker thread. At stop the outputs are written to their safe state (bolt
locked, heater and output off) and the devices closed: the pins then float (inputs), which is why
hardware/ wires relay modules so that a floating input means "off".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from device_drivers.base import Claim, Driver, Reading, Value
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.gpio_settings import (
    PWM_HZ,
    SETTINGS,
    BoltPin,
    InputPin,
    OutputPin,
)
from device_drivers.onewire import (
    DEFAULT_SYSFS_ROOT,
    SysfsSettings,
    SysfsSource,
    sources_from_settings,
)
from device_drivers.pins import board_info, normalize_pin
from device_drivers.settings import Fail, driver_reader

log = logging.getLogger(__name__)

OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt",),
    "thermostat": ("heater",),
    "switch": ("output",),
    "sensor": (),
}
INPUTS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt_sensor", "door"),
    "thermostat": (),
    "switch": ("button",),
    "sensor": ("contact",),
}
SYSFS: Mapping[str, tuple[str, ...]] = {
    "lock": (),
    "thermostat": ("temperature",),
    "switch": (),
    "sensor": ("temperature", "humidity"),
}
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt", "bolt_sensor", "door"),
    "thermostat": ("heater", "temperature"),
    "switch": ("output",),
    "sensor": (),
}
FACTORY_FIX = (
    "on a Raspberry Pi install lgpio (apt install python3-lgpio, or pip install lgpio) or set "
    'pin_factory = "rpigpio"; on a machine without GPIO use pin_factory = "mock"'
)


@dataclass
class _Output:
    channel: str
    setting: str
    pin_spec: object
    active_high: bool
    pwm: bool
    frequency_hz: float
    true_is_energized: bool  # writing True to the channel energises the relay
    pin: str = ""
    device: Any = None

    def safe_value(self) -> bool:
        """The channel value of the safe state: bolt locked, heater and outputs off."""
        return self.channel == "bolt"


@dataclass
class _Input:
    channel: str
    setting: str
    pin_spec: object
    pull_up: bool
    invert: bool
    bounce_s: float
    pin: str = ""
    device: Any = None
    last: bool | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class GpioDriver(Driver):
    """One Thing's relays, contacts and 1-wire sensors on the GPIO header."""

    backend: ClassVar[str] = "gpio"
    settings_model: ClassVar[Mapping[str, type[Any]]] = SETTINGS

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        super().__init__(thing, thing_type, settings, **inject)
        if thing_type not in OUTPUTS:
            raise DriverConfigError(f"thing {thing!r}: gpio driver has no {thing_type!r} device")
        unknown = sorted(set(inject) - {"pin_factory", "sysfs_root"})
        if unknown:
            raise DriverConfigError(f"thing {thing!r}: gpio driver cannot inject {unknown}")
        st = self.read_settings(SETTINGS[thing_type])
        fail = driver_reader(thing, self.backend).fail
        self._injected_factory = inject.get("pin_factory")
        self.factory_name: str | None = st.pin_factory
        self.w1_pin_spec: object = st.w1_pin
        self.dht_pin_spec: object = st.dht22_pin
        self.outputs: dict[str, _Output] = {}
        self.inputs: dict[str, _Input] = {}
        self.bolt_from_relay = False
        for ch in OUTPUTS[thing_type]:
            out: OutputPin | None = getattr(st, ch)
            if out is not None:
                self.outputs[ch] = self._output(ch, out, fail)
        for ch in INPUTS[thing_type]:
            inp: InputPin | str | None = getattr(st, ch)
            if isinstance(inp, str):
                self.bolt_from_relay = True
            elif inp is not None:
                self.inputs[ch] = _Input(ch, ch, inp.pin, inp.pull_up, inp.invert, inp.bounce_s)
        self.sources: dict[str, SysfsSource] = {}
        self.sysfs_root = Path(inject.get("sysfs_root") or DEFAULT_SYSFS_ROOT)
        if isinstance(st, SysfsSettings):
            self.sysfs_root = Path(inject.get("sysfs_root") or st.sysfs_root)
            self.sources = sources_from_settings(
                st, thing, self.sysfs_root, SYSFS[thing_type], fail
            )
        served = set(self.outputs) | set(self.inputs) | set(self.sources)
        if self.bolt_from_relay:
            served.add("bolt_sensor")
        for ch in REQUIRED[thing_type]:
            if ch not in served:
                hint = (
                    ' (a table { pin = N }, or "relay" to trust the relay state: no mechanical '
                    "confirmation)"
                    if ch == "bolt_sensor"
                    else ""
                )
                raise fail(ch, f"required for a gpio {thing_type}{hint}")
        if not served:
            raise fail("contact", "a gpio sensor needs contact, temperature or humidity")
        self._channels = tuple(
            ch
            for ch in (*OUTPUTS[thing_type], *INPUTS[thing_type], *SYSFS[thing_type])
            if ch in served and ch != "button"
        )
        self.factory: Any = self._injected_factory
        self._own_factory = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._normalized = False

    @staticmethod
    def _output(ch: str, t: OutputPin, fail: Fail) -> _Output:
        if t.pwm and ch == "bolt":
            raise fail(f"{ch}.pwm", "a bolt relay is on or off, never PWM")
        if not t.pwm and t.frequency_hz != PWM_HZ:
            raise fail(f"{ch}.frequency_hz", "only with pwm = true")
        locked = isinstance(t, BoltPin) and t.energized == "locked"
        return _Output(ch, ch, t.pin, t.active_high, t.pwm, t.frequency_hz, locked or ch != "bolt")

    # -- pre-flight
    def _board(self) -> Any:
        if self.factory is not None:
            return board_info(self.factory)
        if self.factory_name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory().board_info
        return board_info(None)

    def _normalize(self) -> None:
        if self._normalized:
            return
        info = self._board()
        items: list[_Output | _Input] = [*self.outputs.values(), *self.inputs.values()]
        for item in items:
            try:
                item.pin = normalize_pin(item.pin_spec, info)
            except ValueError as exc:
                raise DriverConfigError(
                    f"thing {self.thing!r}: driver setting {item.setting + '.pin'!r}: {exc}"
                ) from None
        self._w1_pin = self._dht_pin = ""
        for attr, key, spec in (
            ("_w1_pin", "w1_pin", self.w1_pin_spec),
            ("_dht_pin", "dht22_pin", self.dht_pin_spec),
        ):
            if spec is None:
                continue
            try:
                setattr(self, attr, normalize_pin(spec, info))
            except ValueError as exc:
                raise DriverConfigError(
                    f"thing {self.thing!r}: driver setting {key!r}: {exc}"
                ) from None
        self._normalized = True

    def validate(self) -> None:
        self._normalize()
        for source in self.sources.values():
            source.validate()

    def claims(self) -> Sequence[Claim]:
        self._normalize()
        out = [Claim(f"gpio:{o.pin}", f"{o.setting}.pin") for o in self.outputs.values()]
        out += [Claim(f"gpio:{i.pin}", f"{i.setting}.pin") for i in self.inputs.values()]
        kinds = {src.kind for src in self.sources.values()}
        if "ds18b20" in kinds and self._w1_pin:
            out.append(Claim(f"gpio:{self._w1_pin}", "w1_pin", share="w1-gpio bus"))
        if "dht22" in kinds and self._dht_pin:
            devs = sorted({s.device for s in self.sources.values() if s.kind == "dht22"})
            out.append(Claim(f"gpio:{self._dht_pin}", "dht22_pin", share=f"dht22 {devs}"))
        return out

    def channels(self) -> Sequence[str]:
        return self._channels

    # -- lifecycle
    async def start(self) -> None:
        if self._running:
            return
        self.validate()
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._open)
        except DriverConfigError:
            await asyncio.to_thread(self._close)
            raise
        self._running = True
        for item in self.inputs.values():
            item.last = self._input_value(item)

    def _make_factory(self) -> Any:
        from gpiozero.exc import BadPinFactory

        name = self.factory_name or os.environ.get("GPIOZERO_PIN_FACTORY")
        try:
            if name == "mock":
                from gpiozero.pins.mock import MockFactory, MockPWMPin

                return MockFactory(pin_class=MockPWMPin)
            if name is None:
                from gpiozero import Device

                return Device._default_pin_factory()
            from importlib.metadata import entry_points

            for ep in entry_points(group="gpiozero_pin_factories"):
                if ep.name == name.lower():
                    return ep.load()()
            raise BadPinFactory(f"no gpiozero pin factory {name!r}")
        except Exception as exc:  # ImportError, BadPinFactory, OSError from the chip device
            where = "driver setting 'pin_factory'" if self.factory_name else "GPIO pin factory"
            raise DriverConfigError(
                f"thing {self.thing!r}: {where}: cannot open {name or 'a default'} pin factory "
                f"({exc}); {FACTORY_FIX}"
            ) from None

    def _open(self) -> None:
        """Open the pin factory and the devices (worker thread: may touch /dev/gpiochip)."""
        from gpiozero import DigitalInputDevice, OutputDevice, PWMOutputDevice
        from gpiozero.exc import GPIOZeroError

        if self.factory is None:
            self.factory = self._make_factory()
            self._own_factory = True
        current = ""
        try:
            for out in self.outputs.values():
                current = f"{out.setting}.pin"
                safe = out.safe_value() == out.true_is_energized  # relay energised when safe?
                if out.pwm:
                    out.device = PWMOutputDevice(
                        out.pin,
                        active_high=out.active_high,
                        initial_value=1.0 if safe else 0.0,
                        frequency=out.frequency_hz,
                        pin_factory=self.factory,
                    )
                else:
                    out.device = OutputDevice(
                        out.pin,
                        active_high=out.active_high,
                        initial_value=safe,
                        pin_factory=self.factory,
                    )
            for inp in self.inputs.values():
                current = f"{inp.setting}.pin"
                inp.device = DigitalInputDevice(
                    inp.pin, pull_up=inp.pull_up, bounce_time=None, pin_factory=self.factory
                )
                inp.device.when_activated = self._edge_callback(inp.channel)
                inp.device.when_deactivated = self._edge_callback(inp.channel)
        except GPIOZeroError as exc:
            raise DriverConfigError(
                f"thing {self.thing!r}: driver setting {current!r}: {type(exc).__name__}: {exc}"
            ) from None

    def _edge_callback(self, channel: str) -> Any:
        def on_edge() -> None:  # a gpiozero thread (or the caller's, for mock pins)
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody listens
                    loop.call_soon_threadsafe(self._edge, channel)

        return on_edge

    async def stop(self) -> None:
        """Outputs to their safe state, then close the devices (and our own factory)."""
        self._running = False
        for inp in self.inputs.values():
            if inp.timer is not None:
                inp.timer.cancel()
                inp.timer = None
        for out in self.outputs.values():
            if out.device is not None:
                try:
                    self._set(out, out.safe_value())
                except Exception:
                    log.exception("gpio %s: safe state of %s failed", self.thing, out.channel)
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        items: list[_Output | _Input] = [*self.inputs.values(), *self.outputs.values()]
        for item in items:
            if item.device is not None:
                with contextlib.suppress(Exception):
                    item.device.close()
                item.device = None
        if self._own_factory and self.factory is not None:
            with contextlib.suppress(Exception):
                self.factory.close()
            self.factory = None
            self._own_factory = False

    # -- I/O
    async def read(self, channel: str) -> Reading:
        self._check(channel)
        if channel in self.sources:
            try:
                return await self.sources[channel].read()
            except DriverError as exc:
                raise DriverError(f"thing {self.thing!r}: {exc}") from None
        if channel == "bolt_sensor" and self.bolt_from_relay:
            return Reading(self._output_value(self.outputs["bolt"]) is True)
        if channel in self.outputs:
            return Reading(self._output_value(self.outputs[channel]))
        return Reading(self._input_value(self.inputs[channel]))

    async def write(self, channel: str, value: Value) -> None:
        self._check(channel)
        out = self.outputs.get(channel)
        if out is None:
            raise DriverConfigError(f"thing {self.thing!r}: gpio channel {channel!r} is read-only")
        if out.pwm and not isinstance(value, bool):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise DriverError(f"thing {self.thing!r}: {channel} takes a duty cycle 0..1")
        elif not isinstance(value, bool):
            raise DriverError(f"thing {self.thing!r}: {channel} takes true or false")
        old = self._output_value(out)
        self._set(out, value)
        if channel == "bolt" and self.bolt_from_relay and old != value:
            self._emit("bolt_sensor", Reading(bool(value)))

    # -- internals
    def _check(self, channel: str) -> None:
        if channel not in self._channels:
            raise DriverConfigError(f"thing {self.thing!r}: gpio driver has no channel {channel!r}")
        if not self._running:
            raise DriverError(f"thing {self.thing!r}: gpio driver is not running")

    @staticmethod
    def _set(out: _Output, value: Value) -> None:
        if out.pwm and not isinstance(value, bool):
            out.device.value = float(value)
            return
        energize = bool(value) == out.true_is_energized
        if out.pwm:
            out.device.value = 1.0 if energize else 0.0
        elif energize:
            out.device.on()
        else:
            out.device.off()

    @staticmethod
    def _output_value(out: _Output) -> Value:
        level = out.device.value
        if out.pwm and out.channel != "bolt" and level not in (0, 1):
            return float(level)
        return bool(level) == out.true_is_energized

    @staticmethod
    def _input_value(inp: _Input) -> bool:
        return bool(inp.device.is_active) != inp.invert

    def _edge(self, channel: str) -> None:
        """On the loop: (re)start the debounce timer of CHANNEL."""
        inp = self.inputs.get(channel)
        if inp is None or not self._running or self._loop is None:
            return
        if inp.timer is not None:
            inp.timer.cancel()
        if inp.bounce_s > 0:
            inp.timer = self._loop.call_later(inp.bounce_s, self._settle, inp)
        else:
            self._settle(inp)

    def _settle(self, inp: _Input) -> None:
        inp.timer = None
        if not self._running or inp.device is None:
            return
        value = self._input_value(inp)
        if value == inp.last:
            return  # a bounce that came back: no change
        inp.last = value
        if inp.channel == "button":
            if value and "output" in self.outputs:  # pressed: toggle the output locally
                out = self.outputs["output"]
                new = not bool(self._output_value(out))
                self._set(out, new)
                self._emit("output", Reading(new))
            return
        self._emit(inp.channel, Reading(value))
