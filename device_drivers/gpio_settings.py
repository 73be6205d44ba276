"""The settings of the gpio backend (`device_drivers.gpio`), per Thing type, as the dataclasses
the one settings reader reads `[things.driver_settings]` into (reference: docs/config.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from device_drivers.onewire import SysfsSettings
from device_drivers.settings import doc, setting

FACTORIES = ("mock", "lgpio", "rpigpio", "pigpio", "native")
BOUNCE_S = 0.05  # reed switches and push buttons settle within a few ms; 50 ms is generous
PWM_HZ = 100.0
W1_PIN = 4  # the w1-gpio overlay's default pin
PIN = 'a GPIO number or name (17, "GPIO17", "BOARD11")'


@dataclass(frozen=True)
class OutputPin:
    """An output table: `{ pin = 17, active_high = false }`."""

    pin: int | str = field(metadata=doc("the relay's pin", expect=PIN))
    active_high: bool = setting(True, "false for the common active-low relay modules")
    pwm: bool = setting(False, "a PWM output (not for a bolt)")
    frequency_hz: float = setting(PWM_HZ, "PWM frequency (with pwm = true)", min=0.1, max=100_000.0)


@dataclass(frozen=True)
class BoltPin(OutputPin):
    """The bolt's output table: an output table with `energized`."""

    energized: str = setting(
        "unlocked",
        "`unlocked`: a fail-secure strike or bolt that opens only while powered; `locked`: "
        "a fail-safe magnetic lock or a solenoid bolt thrown while powered",
        choices=("unlocked", "locked"),
    )


@dataclass(frozen=True)
class InputPin:
    """An input table: `{ pin = 27, invert = true }`; reads true while the switch is closed."""

    pin: int | str = field(metadata=doc("the contact's pin", expect=PIN))
    pull_up: bool = setting(True, "true: the switch closes to GND; false: to 3V3")
    invert: bool = setting(False, "true for a normally-closed contact")
    bounce_s: float = setting(
        BOUNCE_S, "an edge counts once the level is stable this long", min=0, max=5, unit="s"
    )


@dataclass(frozen=True)
class GpioPins:
    """The settings of every gpio Thing."""

    pin_factory: str | None = setting(
        None,
        "the gpiozero pin factory",
        choices=FACTORIES,
        shown="`GPIOZERO_PIN_FACTORY`, else gpiozero's order (lgpio first)",
    )
    w1_pin: int | str = setting(
        W1_PIN, "the w1-gpio overlay's pin, reserved when a DS18B20 is used", expect=PIN
    )
    dht22_pin: int | str | None = setting(
        None, "the dht11 overlay's gpiopin, reserved when given", expect=PIN
    )


@dataclass(frozen=True)
class GpioLock(GpioPins):
    bolt: BoltPin | None = field(default=None, metadata=doc("output: the strike or bolt relay"))
    bolt_sensor: InputPin | str | None = field(
        default=None,
        metadata=doc(
            'input: the bolt monitor switch, or `"relay"`: the relay state (no mechanical '
            "confirmation)",
            choices=("relay",),
            expect='a table { pin = N } or "relay"',
        ),
    )
    door: InputPin | None = field(default=None, metadata=doc("input: the door contact"))


@dataclass(frozen=True)
class GpioThermostat(SysfsSettings, GpioPins):
    heater: OutputPin | None = field(default=None, metadata=doc("output: the heater relay"))


@dataclass(frozen=True)
class GpioSwitch(GpioPins):
    output: OutputPin | None = field(default=None, metadata=doc("output: the relay, or PWM"))
    button: InputPin | None = field(
        default=None, metadata=doc("input: a local push button that toggles the output")
    )


@dataclass(frozen=True)
class GpioSensor(SysfsSettings, GpioPins):
    contact: InputPin | None = field(default=None, metadata=doc("input: a contact"))


SETTINGS: Mapping[str, type[GpioPins]] = {
    "lock": GpioLock,
    "thermostat": GpioThermostat,
    "switch": GpioSwitch,
    "sensor": GpioSensor,
}
