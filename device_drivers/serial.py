"""Serial backend (pyserial + pyserial-asyncio-fast): an Arduino-class controller board speaking
the line protocol of docs/serial-line-protocol.md, or Modbus RTU devices (backend "serial").

    protocol = "line"    every Thing type; the board owns the relays, contacts and sensors.
    protocol = "modbus"  an XY-MD02 temperature and humidity transmitter (SHT20 inside, Modbus RTU
                         over RS-485; input registers 0x0001 temperature and 0x0002 humidity,
                         signed / unsigned 16 bit in tenths, function code 0x04; default address
                         1, 9600 baud 8N1) for sensor and thermostat Things, and for the heater
                         or a switch output a coil of a Modbus RTU relay module (function codes
                         0x01 read coils, 0x05 write single coil, 0xFF00 = on).

One port may serve several Things (an RS-485 bus with several units, a controller board with a
relay and a sensor): drivers naming the same port with the same line settings share one link
(`LinkPool`), and the gateway's pre-flight refuses a port named with different settings.

A link reconnects on its own: when the port disappears (USB unplugged: pyserial reports an I/O
error), every pending command fails at once, every channel of every Thing on it gets a fault
pushed, and the link retries with capped, jittered backoff (`device_drivers.backoff`) until the
port is back. The Things fail safe on the pushed fault; the board side of the line protocol puts
its outputs in their safe state on its own after `watchdog` silence (see the protocol doc).

Settings: port (required; prefer /dev/serial/by-id/...), protocol ("line"), baudrate (line
115200, modbus 9600), parity ("N", "E", "O"; modbus), stopbits (1, 2), timeout_s (line 0.5,
modbus 0.3: the reply deadline of one command), retries (modbus 2: repeats after a timeout or a
CRC error), keepalive_s (line 1.0: PING period; the board's watchdog expects one), names (line:
{ channel = "board name" }), unit (modbus 1: the XY-MD02's address), relay_unit (modbus 2),
relay_coil (modbus 0), reconnect_initial_s (0.2), reconnect_cap_s (10).
Injected: `link_pool=` a LinkPool (tests; default: one pool per event loop).

Nothing blocks the event loop: the port is opened in a worker thread and read and written by
pyserial-asyncio-fast's transport (non-blocking file descriptor).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from device_drivers.backoff import Backoff
from device_drivers.base import Claim, Driver, Reading, Value
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.settings import SettingsReader

log = logging.getLogger(__name__)

CHANNELS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt", "bolt_sensor", "door"),
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity", "contact"),
}
WRITABLE = frozenset({"bolt", "heater", "output"})
NUMERIC = frozenset({"temperature", "humidity"})
MODBUS_CHANNELS: Mapping[str, tuple[str, ...]] = {
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity"),
}
LINE_BAUD = 115200
MODBUS_BAUD = 9600
LINE_TIMEOUT_S = 0.5  # a board answers in well under 10 ms; 0.5 s covers a busy sketch
MODBUS_TIMEOUT_S = 0.3  # the XY-MD02 answers within ~50 ms at 9600 baud
KEEPALIVE_S = 1.0
MAX_LINE = 128  # bytes; a longer line is noise or a runaway sketch: dropped
MAX_ID = 65535


# ---------------------------------------------------------------- line protocol framing
def checksum(payload: str) -> str:
    """NMEA-0183-style: XOR of the payload's bytes, two upper-case hex digits."""
    x = 0
    for b in payload.encode("ascii", "replace"):
        x ^= b
    return f"{x:02X}"


def frame(payload: str) -> bytes:
    return f"{payload}*{checksum(payload)}\n".encode("ascii", "replace")


def unframe(line: bytes) -> str | None:
    """The payload of one received line, or None when it is malformed or its checksum is bad."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    payload, sep, given = text.rpartition("*")
    if not sep or len(given) != 2 or given.upper() != checksum(payload):
        return None
    return payload


def parse_value(channel: str, text: str) -> Value:
    """A board value: 0/1 for booleans, a finite decimal for numbers (DriverError otherwise)."""
    if channel in NUMERIC:
        try:
            val = float(text)
        except ValueError:
            val = math.nan
        if not math.isfinite(val):
            raise DriverError(f"{channel}: board sent {text!r}, not a number")
        return val
    if text not in ("0", "1"):
        raise DriverError(f"{channel}: board sent {text!r}, not 0 or 1")
    return text == "1"


# ---------------------------------------------------------------- Modbus RTU framing
def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(pdu: bytes) -> bytes:
    return pdu + crc16_modbus(pdu).to_bytes(2, "little")


def crc_ok(adu: bytes) -> bool:
    return len(adu) >= 4 and crc16_modbus(adu[:-2]) == int.from_bytes(adu[-2:], "little")


MODBUS_EXCEPTIONS: Mapping[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
}


@dataclass(frozen=True)
class Register:
    function: int  # 0x04 input register
    address: int
    signed: bool
    scale: float


# XY-MD02 register map (seller's manual "XY-MD02 temperature and humidity transmitter", Modbus
# RTU section): input registers, function code 0x04.
XY_MD02: Mapping[str, Register] = {
    "temperature": Register(0x04, 0x0001, True, 0.1),
    "humidity": Register(0x04, 0x0002, False, 0.1),
}
MODBUS_DEVICES: Mapping[str, Mapping[str, Register]] = {"xy-md02": XY_MD02}


def t35_s(baudrate: int) -> float:
    """Modbus RTU inter-frame silence: 3.5 character times (11 bits each), 1.75 ms above 19200."""
    return 1.75e-3 if baudrate > 19200 else 3.5 * 11 / baudrate


# ---------------------------------------------------------------- the link
def port_present(port: str) -> bool:
    """Whether the device node exists (a stat of /dev: never blocks on a device)."""
    return os.path.exists(port)


def port_key(port: str) -> str:
    """The port's canonical name: by-id symlinks and /dev/ttyUSB0 name one port once."""
    return os.path.realpath(port)


class _Protocol(asyncio.Protocol):
    def __init__(self, link: SerialLink) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.link._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._on_lost(self, exc)


class SerialLink:
    """One serial port shared by the drivers of the Things on it. Subclasses speak a protocol."""

    def __init__(
        self, port: str, options: Mapping[str, Any], backoff: Backoff, timeout_s: float
    ) -> None:
        self.port = port
        self.options = dict(options)
        self.backoff = backoff
        self.timeout_s = timeout_s
        self.drivers: set[SerialDriver] = set()
        self.up = False
        self.down_reason = "not opened yet"
        self._proto: _Protocol | None = None
        self._serial: Any = None
        self._lost = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.reconnects = 0

    # -- lifecycle
    async def open(self) -> None:
        """First open (DriverConfigError for a missing port or no permission), then supervise."""
        try:
            await self._connect()
        except PermissionError as exc:
            raise DriverConfigError(
                f"serial port {self.port}: permission denied ({exc.strerror}); add the "
                "gateway's user to the dialout group (usermod -aG dialout USER)"
            ) from None
        except DriverError as exc:
            self._mark_down(str(exc))
        self._spawn(self._supervise(), "supervisor")
        self._started()

    def _started(self) -> None:
        """Subclass hook: start protocol tasks (keepalive)."""

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._disconnect()

    async def _connect(self) -> None:
        import serial
        import serial_asyncio_fast

        if not port_present(self.port):
            raise DriverError(f"serial port absent (unplugged?): {self.port}")
        loop = asyncio.get_running_loop()
        try:
            ser = await asyncio.to_thread(
                serial.Serial, self.port, exclusive=True, **self.options
            )
        except serial.SerialException as exc:
            err = exc.errno if isinstance(exc.errno, int) else None
            if err in (errno.EACCES, errno.EPERM):
                raise PermissionError(err, os.strerror(err)) from None
            raise DriverError(f"serial port {self.port}: {exc}") from None
        except OSError as exc:
            if isinstance(exc, PermissionError):
                raise
            raise DriverError(f"serial port {self.port}: {exc}") from None
        proto = _Protocol(self)
        self._serial = ser
        await serial_asyncio_fast.connection_for_serial(loop, lambda: proto, ser)
        await asyncio.sleep(0)  # connection_made runs on the next loop iteration
        self._proto = proto
        self._lost.clear()
        self.up = True
        self.down_reason = ""
        self._on_up()

    def _disconnect(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            with contextlib.suppress(Exception):
                proto.transport.abort()  # stops reading at once; closes on the next iteration
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()  # now: the port (and its exclusive lock) is free for the next open
        self.up = False

    def _on_lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        why = "device disconnected" if exc is not None else "closed"
        if exc is not None and "disconnected" not in str(exc):
            why = f"{type(exc).__name__}: {str(exc)[:60]}"
        self._mark_down(f"serial link lost ({why}) on {self.port}")

    def _mark_down(self, reason: str) -> None:
        was_up = self.up
        self.up = False
        self.down_reason = reason
        self._fail_pending(reason)
        self._lost.set()
        if was_up or not self._closing:
            log.warning("%s", reason)
            for driver in list(self.drivers):
                driver._link_down(reason)

    async def _supervise(self) -> None:
        """Reconnect with capped, jittered backoff whenever the port is lost."""
        while True:
            await self._lost.wait()
            self._disconnect()
            while True:
                await asyncio.sleep(self.backoff.next())
                try:
                    await self._connect()
                except (DriverError, OSError) as exc:
                    self.down_reason = str(exc)
                    continue
                self.backoff.reset()
                self.reconnects += 1
                log.info("serial port %s is back", self.port)
                for driver in list(self.drivers):
                    driver._link_up()
                break

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.create_task(coro, name=f"serial-{self.port}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("serial link %s: task %s failed", self.port, task.get_name(),
                      exc_info=task.exception())
            self._mark_down(f"serial link {self.port}: internal error: {task.exception()!r}")

    def write(self, data: bytes) -> None:
        proto = self._proto
        if not self.up or proto is None or proto.transport is None:
            raise DriverError(f"serial link down: {self.down_reason}")
        proto.transport.write(data)

    # -- protocol hooks
    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_up(self) -> None:
        """Subclass hook: the port is (re)opened."""

    def _fail_pending(self, reason: str) -> None:
        """Subclass hook: fail every command waiting for a reply."""


class LineLink(SerialLink):
    """The line protocol (docs/serial-line-protocol.md): `<id> CMD args*XX` requests, `<id> OK`
    / `<id> ERR` replies, `! channel value` events."""

    def __init__(
        self,
        port: str,
        options: Mapping[str, Any],
        backoff: Backoff,
        timeout_s: float,
        keepalive_s: float,
    ) -> None:
        super().__init__(port, options, backoff, timeout_s)
        self.keepalive_s = keepalive_s
        self._buf = bytearray()
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[list[str]]] = {}
        self.bad_frames = 0
        self.firmware = ""

    def _started(self) -> None:
        if self.keepalive_s > 0:
            self._spawn(self._keepalive(), "keepalive")

    def _on_up(self) -> None:
        self._buf.clear()

    async def command(self, *words: str) -> list[str]:
        """Send one command, return the words after OK; DriverError on ERR, timeout, link loss."""
        self._next_id = self._next_id % MAX_ID + 1
        rid = self._next_id
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self.write(frame(" ".join((str(rid), *words))))
            async with asyncio.timeout(self.timeout_s):
                return await fut
        except TimeoutError:
            raise DriverError(
                f"serial board on {self.port}: no reply to {words[0]} within {self.timeout_s} s"
            ) from None
        finally:
            self._pending.pop(rid, None)

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(DriverError(f"{reason} in the middle of a command"))
        self._pending.clear()

    def _on_data(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    self._buf.clear()
                    self.bad_frames += 1
                return
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if len(line) > MAX_LINE:
                self.bad_frames += 1
                continue
            payload = unframe(line)
            if payload is None:
                self.bad_frames += 1
                log.debug("serial %s: bad frame %r", self.port, line[:40])
                continue
            self._on_payload(payload.split())

    def _on_payload(self, words: list[str]) -> None:
        if not words:
            return
        if words[0] == "!":
            if len(words) >= 2 and words[1] == "HELLO":
                self.firmware = " ".join(words[2:])
                for driver in list(self.drivers):
                    driver._board_reset(self.firmware)
                return
            if len(words) >= 3:
                for driver in list(self.drivers):
                    driver._board_event(words[1], words[2:])
            return
        if not words[0].isdigit() or len(words) < 2:
            self.bad_frames += 1
            return
        fut = self._pending.get(int(words[0]))
        if fut is None or fut.done():
            return  # a late reply to a command that timed out
        if words[1] == "OK":
            fut.set_result(words[2:])
        elif words[1] == "ERR":
            code = words[2] if len(words) > 2 else "error"
            fut.set_exception(DriverError(f"board error {code}: {' '.join(words[3:])}".strip()))
        else:
            fut.set_exception(DriverError(f"board sent {words[1]!r}, not OK or ERR"))

    async def _keepalive(self) -> None:
        """PING every keepalive_s: feeds the board's watchdog and detects a silent board."""
        silent = False
        while True:
            await asyncio.sleep(self.keepalive_s)
            if not self.up:
                continue
            try:
                await self.command("PING")
            except DriverError as exc:
                if self.up and not silent:
                    silent = True
                    for driver in list(self.drivers):
                        driver._link_down(str(exc))
                continue
            if silent:
                silent = False
                for driver in list(self.drivers):
                    driver._link_up()


class ModbusLink(SerialLink):
    """Modbus RTU master: one transaction at a time, t3.5 silence between frames."""

    def __init__(
        self,
        port: str,
        options: Mapping[str, Any],
        backoff: Backoff,
        timeout_s: float,
        retries: int,
    ) -> None:
        super().__init__(port, options, backoff, timeout_s)
        self.retries = retries
        self._buf = bytearray()
        self._want = 0
        self._waiter: asyncio.Future[bytes] | None = None
        self._lock = asyncio.Lock()
        self._last_io = 0.0
        self._gap = t35_s(int(options.get("baudrate", MODBUS_BAUD)))
        self.crc_errors = 0

    def _on_up(self) -> None:
        self._buf.clear()

    def _fail_pending(self, reason: str) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(DriverError(f"{reason} in the middle of a transaction"))

    def _on_data(self, data: bytes) -> None:
        self._last_io = time.monotonic()
        if self._waiter is None or self._waiter.done():
            return  # a late or unsolicited frame: ignored (the next request starts clean)
        self._buf += data
        if len(self._buf) >= 2 and self._buf[1] & 0x80:
            want = 5  # exception response: unit, fc|0x80, code, crc
        else:
            want = self._want
        if len(self._buf) >= want:
            self._waiter.set_result(bytes(self._buf[:want]))

    async def transaction(self, request: bytes, reply_len: int) -> bytes:
        """Send REQUEST (PDU with unit, no CRC); return the checked reply PDU (no CRC)."""
        async with self._lock:
            problem = ""
            for _ in range(self.retries + 1):
                try:
                    return await self._once(request, reply_len)
                except _Retry as exc:
                    problem = str(exc)
            raise DriverError(
                f"modbus unit {request[0]} on {self.port}: {problem} "
                f"({self.retries + 1} attempts)"
            )

    async def _once(self, request: bytes, reply_len: int) -> bytes:
        wait = self._last_io + self._gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._buf.clear()
        self._want = reply_len + 2
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            self.write(with_crc(request))
            self._last_io = time.monotonic()
            async with asyncio.timeout(self.timeout_s):
                adu = await self._waiter
        except TimeoutError:
            raise _Retry(f"no reply within {self.timeout_s} s") from None
        finally:
            self._waiter = None
        if not crc_ok(adu):
            self.crc_errors += 1
            raise _Retry("CRC error in the reply")
        if adu[0] != request[0]:
            raise _Retry(f"reply from unit {adu[0]}, not {request[0]}")
        if adu[1] == request[1] | 0x80:
            code = adu[2]
            raise DriverError(
                f"modbus unit {request[0]}: exception {code} "
                f"({MODBUS_EXCEPTIONS.get(code, 'unknown')})"
            )
        if adu[1] != request[1]:
            raise _Retry(f"reply to function {adu[1]}, not {request[1]}")
        return adu[:-2]

    async def read_register(self, unit: int, reg: Register) -> float:
        pdu = bytes([unit, reg.function]) + reg.address.to_bytes(2, "big") + (1).to_bytes(2, "big")
        reply = await self.transaction(pdu, 5)  # unit, fc, byte count 2, value (2)
        if reply[2] != 2:
            raise DriverError(f"modbus unit {unit}: byte count {reply[2]}, not 2")
        raw = int.from_bytes(reply[3:5], "big", signed=reg.signed)
        return round(raw * reg.scale, 3)

    async def write_coil(self, unit: int, coil: int, on: bool) -> None:
        value = b"\xff\x00" if on else b"\x00\x00"
        pdu = bytes([unit, 0x05]) + coil.to_bytes(2, "big") + value
        reply = await self.transaction(pdu, 6)  # an echo of the request
        if reply != pdu:
            raise DriverError(f"modbus unit {unit}: coil {coil} write not confirmed")

    async def read_coil(self, unit: int, coil: int) -> bool:
        pdu = bytes([unit, 0x01]) + coil.to_bytes(2, "big") + (1).to_bytes(2, "big")
        reply = await self.transaction(pdu, 4)  # unit, fc, byte count 1, bits
        return bool(reply[3] & 1)


class _Retry(Exception):
    """A transaction failure worth one more attempt (timeout, CRC error, stray reply)."""


# ---------------------------------------------------------------- link pool
class LinkPool:
    """The open links by port, shared by the drivers naming the same port and settings."""

    def __init__(self) -> None:
        self._links: dict[str, SerialLink] = {}
        self._share: dict[str, str] = {}

    def get(self, port: str) -> SerialLink | None:
        return self._links.get(port_key(port))

    async def acquire(
        self, driver: SerialDriver, make: Callable[[], SerialLink]
    ) -> SerialLink:
        key = port_key(driver.port)
        link = self._links.get(key)
        if link is not None and self._share.get(key) != driver.share_key:
            raise DriverConfigError(
                f"thing {driver.thing!r}: driver setting 'port': {driver.port} is already open "
                "with other settings (protocol, baud rate, parity)"
            )
        if link is None:
            link = make()
            self._links[key] = link
            self._share[key] = driver.share_key
            link.drivers.add(driver)
            try:
                await link.open()
            except BaseException:
                self._links.pop(key, None)
                self._share.pop(key, None)
                with contextlib.suppress(Exception):
                    await link.close()
                raise
            return link
        link.drivers.add(driver)
        return link

    async def release(self, driver: SerialDriver, link: SerialLink) -> None:
        link.drivers.discard(driver)
        if link.drivers:
            return
        for key, val in list(self._links.items()):
            if val is link:
                del self._links[key]
                self._share.pop(key, None)
        await link.close()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LinkPool] = (
    weakref.WeakKeyDictionary()
)


def loop_pool() -> LinkPool:
    """The default pool: one per event loop (links are bound to the loop that opened them)."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = LinkPool()
    return pool


# ---------------------------------------------------------------- the driver
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
