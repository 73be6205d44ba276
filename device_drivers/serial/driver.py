"""SerialDriver: one Thing's channels on a line-protocol board or a Modbus RTU bus.

Its settings, their defaults and their meaning: the package docstring (`device_drivers.serial`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from device_drivers.backoff import Backoff
from device_drivers.base import Claim, Driver, Reading, Value
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.serial.framing import parse_value
from device_drivers.serial.lines import LineLink
from device_drivers.serial.link import SerialLink, port_key, port_present
from device_drivers.serial.modbus import MODBUS_BAUD, MODBUS_DEVICES
from device_drivers.serial.modbus_link import ModbusLink
from device_drivers.serial.pool import LinkPool, loop_pool
from device_drivers.settings import SettingsReader

CHANNELS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt", "bolt_sensor", "door"),
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity", "contact"),
}
WRITABLE = frozenset({"bolt", "heater", "output"})
MODBUS_CHANNELS: Mapping[str, tuple[str, ...]] = {
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity"),
}
LINE_BAUD = 115200
LINE_TIMEOUT_S = 0.5  # a board answers in well under 10 ms; 0.5 s covers a busy sketch
MODBUS_TIMEOUT_S = 0.3  # the XY-MD02 answers within ~50 ms at 9600 baud
KEEPALIVE_S = 1.0


def _line(link: SerialLink) -> LineLink:
    if not isinstance(link, LineLink):
        raise DriverError("internal: not a line-protocol link")
    return link


class SerialDriver(Driver):
    """One Thing's channels on a serial board or Modbus bus (see the module docstring)."""

    backend: ClassVar[str] = "serial"

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        super().__init__(thing, thing_type, settings, **inject)
        if thing_type not in CHANNELS:
            raise DriverConfigError(f"thing {thing!r}: serial driver has no {thing_type!r}")
        unknown = sorted(set(inject) - {"link_pool"})
        if unknown:
            raise DriverConfigError(f"thing {thing!r}: serial driver cannot inject {unknown}")
        self._pool: LinkPool | None = inject.get("link_pool")
        s = SettingsReader(thing, "serial", self.settings)
        self.port: str = s.get("port", str)
        self.protocol = s.choice("protocol", ("line", "modbus"), "line")
        modbus = self.protocol == "modbus"
        baud = s.get("baudrate", int, MODBUS_BAUD if modbus else LINE_BAUD)
        if baud not in (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400):
            raise s.fail("baudrate", "a standard rate (9600, 19200, ..., 115200)")
        parity = s.choice("parity", ("N", "E", "O"), "N")
        stopbits = s.get("stopbits", int, 1)
        if stopbits not in (1, 2):
            raise s.fail("stopbits", "1 or 2")
        self.options = {"baudrate": baud, "parity": parity, "stopbits": stopbits}
        self.timeout_s = s.number(
            "timeout_s", MODBUS_TIMEOUT_S if modbus else LINE_TIMEOUT_S, 0.01, 30.0
        )
        self.backoff = Backoff(
            initial_s=s.number("reconnect_initial_s", 0.2, 0.001, 60.0),
            cap_s=s.number("reconnect_cap_s", 10.0, 0.001, 3600.0),
        )
        if self.backoff.cap_s < self.backoff.initial_s:
            raise s.fail("reconnect_cap_s", "must be >= reconnect_initial_s")
        self.names: dict[str, str] = {}
        self.keepalive_s = KEEPALIVE_S
        self.retries = 2
        if modbus:
            if thing_type not in MODBUS_CHANNELS:
                raise s.fail("protocol", f"modbus serves {', '.join(MODBUS_CHANNELS)} Things")
            self._channels = MODBUS_CHANNELS[thing_type]
            self.device = s.choice("device", tuple(MODBUS_DEVICES), "xy-md02")
            self.unit = s.get("unit", int, 1)
            self.relay_unit = s.get("relay_unit", int, 2)
            self.relay_coil = s.get("relay_coil", int, 0)
            for key, val, hi in (("unit", self.unit, 247), ("relay_unit", self.relay_unit, 247),
                                 ("relay_coil", self.relay_coil, 0xFFFF)):
                if not (1 if hi == 247 else 0) <= val <= hi:
                    raise s.fail(key, f"must be from {1 if hi == 247 else 0} to {hi}")
            self.retries = s.get("retries", int, 2)
            if not 0 <= self.retries <= 10:
                raise s.fail("retries", "must be from 0 to 10")
        else:
            self._channels = CHANNELS[thing_type]
            self.keepalive_s = s.number("keepalive_s", KEEPALIVE_S, 0.0, 3600.0)
            names = s.table("names")
            if names is not None:
                for ch in self._channels:
                    if names.has(ch):
                        name = names.get(ch, str)
                        if not name.isprintable() or " " in name or "*" in name or not name:
                            raise names.fail(ch, "a board name without spaces or '*'")
                        self.names[ch] = name
                names.done()
        s.done()
        self.share_key = f"{self.protocol}:{baud}:{parity}:{stopbits}"
        self.link: SerialLink | None = None
        self._by_board = {self.names.get(ch, ch): ch for ch in self._channels}
        self._running = False

    def channels(self) -> Sequence[str]:
        return self._channels

    def validate(self) -> None:
        if not port_present(self.port):
            raise DriverConfigError(
                f"thing {self.thing!r}: driver setting 'port': {self.port} does not exist "
                "(is the board plugged in? prefer a stable /dev/serial/by-id/... path)"
            )

    def claims(self) -> Sequence[Claim]:
        return [Claim(f"serial:{port_key(self.port)}", "port", share=self.share_key)]

    async def start(self) -> None:
        if self._running:
            return
        self.validate()
        pool = self._pool or loop_pool()
        try:
            self.link = await pool.acquire(self, self._make_link)
        except DriverConfigError as exc:
            msg = str(exc)
            raise DriverConfigError(
                msg if msg.startswith("thing ") else f"thing {self.thing!r}: {msg}"
            ) from None
        self._running = True

    def _make_link(self) -> SerialLink:
        if self.protocol == "modbus":
            return ModbusLink(self.port, self.options, self.backoff, self.timeout_s, self.retries)
        return LineLink(self.port, self.options, self.backoff, self.timeout_s, self.keepalive_s)

    async def stop(self) -> None:
        """Outputs to their safe state (best effort: the board's watchdog does it too)."""
        if not self._running:
            return
        for ch in self._channels:
            if ch in WRITABLE:
                with contextlib.suppress(DriverError):
                    await self.write(ch, ch == "bolt")
        self._running = False
        link, self.link = self.link, None
        if link is not None:
            pool = self._pool or loop_pool()
            await pool.release(self, link)

    async def read(self, channel: str) -> Reading:
        link = self._need(channel)
        try:
            if isinstance(link, ModbusLink):
                if channel in ("heater", "output"):
                    return Reading(await link.read_coil(self.relay_unit, self.relay_coil))
                reg = MODBUS_DEVICES[self.device][channel]
                return Reading(await link.read_register(self.unit, reg))
            words = await _line(link).command("GET", self.names.get(channel, channel))
            if len(words) < 2:
                raise DriverError(f"board reply to GET {channel} has no value")
            return Reading(parse_value(channel, words[1]))
        except DriverError as exc:
            raise DriverError(f"thing {self.thing!r}: {channel}: {exc}") from None

    async def write(self, channel: str, value: Value) -> None:
        link = self._need(channel)
        if channel not in WRITABLE:
            raise DriverConfigError(
                f"thing {self.thing!r}: serial channel {channel!r} is read-only"
            )
        if not isinstance(value, bool):
            raise DriverError(f"thing {self.thing!r}: {channel} takes true or false")
        try:
            if isinstance(link, ModbusLink):
                await link.write_coil(self.relay_unit, self.relay_coil, value)
                return
            words = await _line(link).command(
                "SET", self.names.get(channel, channel), "1" if value else "0"
            )
            if len(words) >= 2 and parse_value(channel, words[1]) != value:
                raise DriverError(f"board did not take {channel} = {int(value)}")
        except DriverError as exc:
            raise DriverError(f"thing {self.thing!r}: {channel}: {exc}") from None

    def _need(self, channel: str) -> SerialLink:
        if channel not in self._channels:
            raise DriverConfigError(
                f"thing {self.thing!r}: serial driver has no channel {channel!r}"
            )
        if not self._running or self.link is None:
            raise DriverError(f"thing {self.thing!r}: serial driver is not running")
        return self.link

    # -- link callbacks (on the loop)
    def _link_down(self, reason: str) -> None:
        for ch in self._channels:
            self._emit(ch, DriverError(f"thing {self.thing!r}: {reason}"))

    def _link_up(self) -> None:
        """Nothing to push: the Things re-read (and fail-safe Things re-command) on their own."""

    def _board_reset(self, firmware: str) -> None:
        """The board (re)booted: its outputs are in their safe state, which the Things must learn
        as a fault (a lock unlocked a moment ago is now locked by the board)."""
        for ch in self._channels:
            if ch in WRITABLE:
                self._emit(ch, DriverError(f"thing {self.thing!r}: board reset ({firmware})"))

    def _board_event(self, board_name: str, words: list[str]) -> None:
        channel = self._by_board.get(board_name)
        if channel is None:
            return
        if words[0] == "FAULT":
            reason = " ".join(words[1:]) or "fault"
            self._emit(channel, DriverError(f"thing {self.thing!r}: {channel}: {reason}"))
            return
        try:
            self._emit(channel, Reading(parse_value(channel, words[0])))
        except DriverError as exc:
            self._emit(channel, DriverError(f"thing {self.thing!r}: {exc}"))
