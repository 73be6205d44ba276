"""1-wire and IIO sensors through sysfs (backend "onewire"): DS18B20 and DHT22.

Sources (one per channel):

    DS18B20 on the kernel's w1 bus (w1-gpio overlay, GPIO4 by default on a Pi):
        <sysfs_root>/bus/w1/devices/28-xxxxxxxxxxxx/w1_slave, two lines:
            72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
            72 01 4b 46 7f ff 0e 10 57 t=23125
        the first ends in YES when the scratchpad CRC is good; t= is milli-degrees C. Kernels
        without w1_slave but with `temperature` (milli-degrees; a CRC failure is a read error)
        work too.
    DHT22 (AM2302) through the kernel IIO driver (dht11 overlay, which also drives the DHT22):
        <sysfs_root>/bus/iio/devices/iio:deviceN/in_temp_input              milli-degrees C
        <sysfs_root>/bus/iio/devices/iio:deviceN/in_humidityrelative_input  milli-%RH
        a checksum or timing failure is a read error (EIO / ETIMEDOUT).

Every fault is a DriverError, never a value: a CRC failure, an all-zero scratchpad (a shorted data
line), the DS18B20 power-on value 85.000 °C (the conversion never ran), a value outside the
sensor's range, an absent device (unplugged: the kernel removes its folder), and a read that does
not return within `read_timeout_s` (a hung bus: the reading would be stale). A hung read is never
started twice: until its thread returns, reads fail at once.

Settings (sensor Things; `temperature` and `humidity` channels): `SysfsSettings` below
(reference: docs/config.md): a source per channel (`temperature = { ds18b20 = "28-..." }`,
`humidity = { dht22 = "iio:device0" }`) or the shorthands `ds18b20 = "28-..."` / `"auto"` and
`dht22 = "iio:device0"`, `sysfs_root` and `read_timeout_s`.

File reads run in worker threads (`loop.run_in_executor`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from device_drivers.base import Driver, Reading, Value
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.settings import Fail, doc, driver_reader, setting

DEFAULT_SYSFS_ROOT = "/sys"
W1_DEVICES = "bus/w1/devices"
IIO_DEVICES = "bus/iio/devices"
READ_TIMEOUT_S = 2.0  # DS18B20 12-bit conversion: 750 ms; DHT22: ~5 ms plus the kernel's retries
DS18B20_FAMILY = "28-"
DS18B20_RANGE = (-55.0, 125.0)  # datasheet measuring range
DHT22_RANGES: Mapping[str, tuple[float, float]] = {
    "temperature": (-40.0, 80.0),  # AM2302 datasheet
    "humidity": (0.0, 100.0),
}
POWER_ON_RESET_MILLI_C = 85000  # scratchpad value before the first conversion
IIO_FILES: Mapping[str, str] = {
    "temperature": "in_temp_input",
    "humidity": "in_humidityrelative_input",
}
SourceKind = Literal["ds18b20", "dht22"]
W1_HINT = "enable the 1-wire bus: dtoverlay=w1-gpio,gpiopin=4 in /boot/firmware/config.txt"
IIO_HINT = "enable the DHT driver: dtoverlay=dht11,gpiopin=N in /boot/firmware/config.txt"


def parse_w1_slave(text: str) -> float:
    """Degrees C from the two lines of a DS18B20 `w1_slave` file; DriverError on any fault."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 2 or ":" not in lines[0]:
        raise DriverError("truncated w1_slave (sensor answered partly or not at all)")
    if not lines[0].endswith("YES"):
        raise DriverError("CRC check failed (noise on the 1-wire bus, or a long cable)")
    scratch = lines[0].split(":", 1)[0].split()
    if len(scratch) == 9 and all(b == "00" for b in scratch):
        raise DriverError("all-zero scratchpad (data line shorted to ground, or no supply)")
    _, sep, milli_text = lines[1].rpartition("t=")
    try:
        milli = int(milli_text)
    except ValueError:
        milli = None
    if not sep or milli is None:
        raise DriverError("no temperature (t=) in w1_slave")
    return _ds18b20_value(milli)


def _ds18b20_value(milli: int) -> float:
    if milli == POWER_ON_RESET_MILLI_C:
        raise DriverError(
            "power-on reset value 85.000 °C (the conversion did not run: supply or parasite power)"
        )
    value = milli / 1000.0
    lo, hi = DS18B20_RANGE
    if not lo <= value <= hi:
        raise DriverError(f"{value} °C is outside the DS18B20 range {lo}..{hi} °C")
    return value


class SysfsSource:
    """One quantity of one sensor in sysfs. `read()` runs the file read in a worker thread."""

    def __init__(
        self,
        thing: str,
        setting: str,
        root: Path,
        kind: SourceKind,
        device: str,
        quantity: str,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.thing = thing
        self.setting = setting
        self.root = root
        self.kind = kind
        self.device = device
        self.quantity = quantity
        self.read_timeout_s = read_timeout_s
        self._pending: asyncio.Future[float] | None = None
        self._pending_since = 0.0

    def __repr__(self) -> str:
        return f"{self.kind} {self.device} {self.quantity}"

    def _bus(self) -> Path:
        return self.root / (W1_DEVICES if self.kind == "ds18b20" else IIO_DEVICES)

    def folder(self) -> Path:
        if self.kind == "ds18b20" and self.device == "auto":
            self.device = self._auto()
        return self._bus() / self.device

    def _auto(self) -> str:
        try:
            found = sorted(p.name for p in self._bus().iterdir() if p.name.startswith("28-"))
        except OSError:
            found = []
        if len(found) != 1:
            what = "none" if not found else ", ".join(found)
            raise DriverConfigError(
                f'thing {self.thing!r}: driver setting {self.setting!r}: "auto" needs exactly '
                f'one DS18B20 in {self._bus()} (found {what}); name it, e.g. "28-0316a2794eff"'
            )
        return found[0]

    def validate(self) -> None:
        """The device folder exists (pre-flight; a missing one is a config error at start)."""
        folder = self.folder()
        try:
            present = folder.is_dir()
        except OSError:  # e.g. a device name too long for a file name
            present = False
        if not present:
            hint = W1_HINT if self.kind == "ds18b20" else IIO_HINT
            raise DriverConfigError(
                f"thing {self.thing!r}: driver setting {self.setting!r}: no {self.kind} device "
                f"{folder} (is it wired and powered? {hint})"
            )

    def read_blocking(self) -> float:
        """One reading from the files (blocking: run in a thread). DriverError on any fault."""
        folder = self.folder()
        if not folder.is_dir():
            raise DriverError(f"{self.kind} {self.device} is absent (unplugged or no supply)")
        try:
            if self.kind == "ds18b20":
                slave = folder / "w1_slave"
                if slave.exists():
                    return parse_w1_slave(slave.read_text(errors="replace"))
                text = (folder / "temperature").read_text().strip()
                return _ds18b20_value(int(text))
            text = (folder / IIO_FILES[self.quantity]).read_text().strip()
            value = int(text) / 1000.0
        except FileNotFoundError as exc:
            raise DriverError(f"{self.kind} {self.device} is absent ({exc.filename})") from exc
        except OSError as exc:
            raise DriverError(
                f"{self.kind} {self.device}: read failed ({exc.strerror or exc}): "
                "checksum or timing error"
            ) from exc
        except ValueError as exc:
            raise DriverError(f"{self.kind} {self.device}: unreadable value") from exc
        lo, hi = DHT22_RANGES[self.quantity]
        if not math.isfinite(value) or not lo <= value <= hi:
            raise DriverError(f"{self} reads {value}, outside the DHT22 range {lo}..{hi}")
        return value

    async def read(self) -> Reading:
        """A fresh reading, or DriverError; a read hung past `read_timeout_s` is a stale fault."""
        pending = self._pending
        if pending is not None and not pending.done():
            hung = time.monotonic() - self._pending_since
            raise DriverError(
                f"{self}: stale: the previous read has not returned for {hung:.1f} s (bus hung?)"
            )
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, self.read_blocking)
        self._pending, self._pending_since = fut, time.monotonic()
        fut.add_done_callback(_consume)
        try:
            async with asyncio.timeout(self.read_timeout_s):
                value = await asyncio.shield(fut)
        except TimeoutError as exc:
            raise DriverError(
                f"{self}: stale: no reading within {self.read_timeout_s} s (bus hung?)"
            ) from exc
        return Reading(value)


def _consume(fut: asyncio.Future[float]) -> None:
    """Retrieve the result of an abandoned read so asyncio never logs it as unretrieved."""
    if not fut.cancelled():
        fut.exception()


@dataclass(frozen=True)
class SourceTable:
    """`{ ds18b20 = "28-..." }` or `{ dht22 = "iio:deviceN" }`: one source of a channel."""

    ds18b20: str | None = setting(None, 'a DS18B20 w1 id, or "auto": the only one on the bus')
    dht22: str | None = setting(None, "a DHT22's IIO device")


SOURCE = doc('`{ ds18b20 = "28-..." }` or `{ dht22 = "iio:deviceN" }`', shown="none")


@dataclass(frozen=True)
class SysfsSettings:
    """The settings of sysfs sources (backend onewire, and gpio thermostats and sensors)."""

    sysfs_root: str = setting(DEFAULT_SYSFS_ROOT, "the sysfs mount; tests point it elsewhere")
    read_timeout_s: float = setting(
        READ_TIMEOUT_S,
        "deadline of one read (a DS18B20 12-bit conversion takes 750 ms)",
        min=0.01,
        max=60.0,
        unit="s",
    )
    ds18b20: str | None = setting(
        None, 'shorthand for `temperature = { ds18b20 = "..." }`; "auto" picks the only DS18B20'
    )
    dht22: str | None = setting(
        None, "shorthand: temperature (and humidity) from that IIO device, `iio:device0`"
    )
    temperature: SourceTable | None = field(default=None, metadata=SOURCE)
    humidity: SourceTable | None = field(
        default=None, metadata=doc('sensor Things: `{ dht22 = "iio:deviceN" }`', shown="none")
    )


def sources_from_settings(
    st: SysfsSettings, thing: str, root: Path, channels: Sequence[str], fail: Fail
) -> dict[str, SysfsSource]:
    """The sysfs sources of CHANNELS (a subset of temperature, humidity) named in ST."""
    out: dict[str, SysfsSource] = {}
    for channel in ("temperature", "humidity"):
        t: SourceTable | None = getattr(st, channel)
        if t is None:
            continue
        if channel not in channels:
            raise fail(channel, f"no {channel} channel here (channels: {', '.join(channels)})")
        if (t.ds18b20 is None) == (t.dht22 is None):
            raise fail(
                f"{channel}.ds18b20",
                'name one source: { ds18b20 = "28-..." } or { dht22 = "iio:device0" }',
            )
        if t.ds18b20 is not None and channel != "temperature":
            raise fail(f"{channel}.ds18b20", "a DS18B20 measures temperature only")
        kind: SourceKind = "ds18b20" if t.ds18b20 is not None else "dht22"
        device = t.ds18b20 or t.dht22 or ""
        out[channel] = SysfsSource(
            thing, f"{channel}.{kind}", root, kind, device, channel, st.read_timeout_s
        )
    if "temperature" in channels and st.ds18b20 is not None:
        if "temperature" in out:
            raise fail("ds18b20", "give the temperature source once")
        out["temperature"] = SysfsSource(
            thing, "ds18b20", root, "ds18b20", st.ds18b20, "temperature", st.read_timeout_s
        )
    if st.dht22 is not None:
        for channel in ("temperature", "humidity"):
            if channel in channels and channel not in out:
                out[channel] = SysfsSource(
                    thing, "dht22", root, "dht22", st.dht22, channel, st.read_timeout_s
                )
    return out


class OneWireDriver(Driver):
    """Temperature and humidity of a sensor Thing from DS18B20 / DHT22 sysfs files."""

    backend: ClassVar[str] = "onewire"
    settings_model: ClassVar[Mapping[str, type[Any]]] = {"sensor": SysfsSettings}

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        super().__init__(thing, thing_type, settings, **inject)
        if thing_type != "sensor":
            raise DriverConfigError(
                f"thing {thing!r}: the onewire driver serves sensor Things (temperature, "
                f'humidity), not {thing_type!r}; a thermostat uses driver "gpio" with its '
                "heater relay and a ds18b20 temperature source"
            )
        unknown = sorted(set(inject) - {"sysfs_root"})
        if unknown:
            raise DriverConfigError(f"thing {thing!r}: onewire driver cannot inject {unknown}")
        st = self.read_settings(SysfsSettings)
        self.sysfs_root = Path(inject.get("sysfs_root") or st.sysfs_root)
        fail = driver_reader(thing, self.backend).fail
        self.sources = sources_from_settings(
            st, thing, self.sysfs_root, ("temperature", "humidity"), fail
        )
        if not self.sources:
            raise fail("ds18b20", 'name a source: ds18b20 = "28-..." or dht22 = "iio:device0"')
        self._running = False

    def channels(self) -> Sequence[str]:
        return tuple(self.sources)

    def validate(self) -> None:
        for source in self.sources.values():
            source.validate()

    async def start(self) -> None:
        self.validate()
        self._running = True

    async def stop(self) -> None:
        self._running = False

    async def read(self, channel: str) -> Reading:
        source = self.sources.get(channel)
        if source is None:
            raise DriverConfigError(f"thing {self.thing!r}: onewire has no channel {channel!r}")
        if not self._running:
            raise DriverError(f"thing {self.thing!r}: onewire driver is not running")
        try:
            return await source.read()
        except DriverError as exc:
            raise DriverError(f"thing {self.thing!r}: {exc}") from None

    async def write(self, channel: str, value: Value) -> None:
        raise DriverConfigError(f"thing {self.thing!r}: onewire channel {channel!r} is read-only")
