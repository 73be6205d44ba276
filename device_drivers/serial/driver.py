"""SerialDriver: one Thing's channels on a line-protocol board or a Modbus RTU bus.

Its settings: `SerialSettings` below (reference: docs/config.md; the package docstring,
`device_drivers.serial`, says what they are for).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from device_drivers.settings import doc, driver_reader, setting

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
BAUDRATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)
LINE_ONLY = ("keepalive_s", "names")
MODBUS_ONLY = ("device", "unit", "relay_unit", "relay_coil", "retries")


def _board_name(name: str) -> str | None:
    ok = name.isprintable() and " " not in name and "*" not in name
    return None if ok else "a board name without spaces or '*'"


@dataclass(frozen=True)
class SerialSettings:
    port: str = field(metadata=doc("the serial port; prefer a stable `/dev/serial/by-id/...`"))
    protocol: str = setting(
        "line",
        "`line`: docs/serial-line-protocol.md; `modbus`: Modbus RTU",
        choices=("line", "modbus"),
    )
    baudrate: int | None = setting(
        None,
        "line speed",
        choices=BAUDRATES,
        expect="a standard rate (9600, 19200, ..., 115200)",
        shown=f"{LINE_BAUD} (line), {MODBUS_BAUD} (modbus)",
    )
    parity: str = setting("N", "parity", choices=("N", "E", "O"))
    stopbits: int = setting(1, "stop bits", choices=(1, 2), expect="1 or 2")
    timeout_s: float | None = setting(
        None,
        "reply deadline of one command",
        min=0.01,
        max=30.0,
        unit="s",
        shown=f"{LINE_TIMEOUT_S} (line), {MODBUS_TIMEOUT_S} (modbus)",
    )
    reconnect_initial_s: float = setting(
        0.2, "first reconnect delay", min=0.001, max=60.0, unit="s"
    )
    reconnect_cap_s: float = setting(
        10.0, "longest reconnect delay, >= reconnect_initial_s", min=0.001, max=3600.0, unit="s"
    )
    keepalive_s: float = setting(
        KEEPALIVE_S,
        "line: PING period (the board's watchdog expects one)",
        min=0,
        max=3600.0,
        unit="s",
    )
    names: Mapping[str, str] = field(
        default_factory=dict,
        metadata=doc('line: `{ channel = "board name" }`', shown="the channel names", check=None),
    )
    device: str = setting("xy-md02", "modbus: the sensor model", choices=tuple(MODBUS_DEVICES))
    unit: int = setting(1, "modbus: the sensor's address", min=1, max=247)
    relay_unit: int = setting(2, "modbus: the relay module's address", min=1, max=247)
    relay_coil: int = setting(0, "modbus: the relay's coil", min=0, max=0xFFFF)
    retries: int = setting(2, "modbus: repeats after a timeout or a CRC error", min=0, max=10)


def _line(link: SerialLink) -> LineLink:
    if not isinstance(link, LineLink):
        raise DriverError("internal: not a line-protocol link")
    return link


class SerialDriver(Driver):
    """One Thing's channels on a serial board or Modbus bus (see the module docstring)."""

    backend: ClassVar[str] = "serial"
    settings_model: ClassVar[Mapping[str, type[Any]]] = {"*": SerialSettings}

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
        st = self.read_settings(SerialSettings)
        fail = driver_reader(thing, self.backend).fail
        self.port = st.port
        self.protocol = st.protocol
        modbus = self.protocol == "modbus"
        for key in LINE_ONLY if modbus else MODBUS_ONLY:
            if key in self.settings:
                other = "line" if modbus else "modbus"
                raise fail(key, f"a setting of protocol {other!r}, not {self.protocol!r}")
        baud = st.baudrate or (MODBUS_BAUD if modbus else LINE_BAUD)
        parity, stopbits = st.parity, st.stopbits
        self.options = {"baudrate": baud, "parity": parity, "stopbits": stopbits}
        self.timeout_s = st.timeout_s or (MODBUS_TIMEOUT_S if modbus else LINE_TIMEOUT_S)
        self.backoff = Backoff(initial_s=st.reconnect_initial_s, cap_s=st.reconnect_cap_s)
        if self.backoff.cap_s < self.backoff.initial_s:
            raise fail("reconnect_cap_s", "must be >= reconnect_initial_s")
        self.names: dict[str, str] = {}
        self.keepalive_s = st.keepalive_s
        self.retries = st.retries
        self.device, self.unit = st.device, st.unit
        self.relay_unit, self.relay_coil = st.relay_unit, st.relay_coil
        if modbus:
            if thing_type not in MODBUS_CHANNELS:
                raise fail("protocol", f"modbus serves {', '.join(MODBUS_CHANNELS)} Things")
            self._channels = MODBUS_CHANNELS[thing_type]
        else:
            self._channels = CHANNELS[thing_type]
            for ch, name in st.names.items():
                if ch not in self._channels:
                    raise fail(
                        f"names.{ch}",
                        f"unknown serial setting (channels: {', '.join(self._channels)})",
                    )
                if problem := _board_name(name):
                    raise fail(f"names.{ch}", problem)
                self.names[ch] = name
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
