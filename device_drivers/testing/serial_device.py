"""Fake serial devices behind a real pseudo-terminal, for the serial backend's tests.

    board = FakeController(tmp_path / "ttyBOARD", "lock")   # a board speaking the line protocol
    board.start()              # the driver opens str(board.path) like any /dev/ttyUSB0
    board.set_input("door", True)                 # an input changes: "! door 1" is sent
    board.fail_channel("temperature", "sensor lost")
    board.unplug(); board.replug()               # the port disappears and comes back
    board.unplug_on("SET")                       # unplugged in the middle of the next SET
    board.stop()

    bus = FakeModbusBus(tmp_path / "ttyRS485")    # an XY-MD02 at unit 1, a relay module at unit 2

Each device serves its end of the pty from a thread (select + os.read/os.write), like a board
on the other end of a USB cable. `path` is a symlink to the pty's slave end that is removed on
unplug and recreated (to a new pty) on replug, as udev does for /dev/serial/by-id links.
The line-protocol board keeps the physical state the way the real sketch must: outputs in their
safe state at power-up, after `watchdog_s` without a valid frame, and when unplugged (bus power
lost); a bolt that follows its relay after `bolt_travel_s`.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from device_drivers.serial import checksum, crc16_modbus, crc_ok, frame, unframe

SAFE = {"bolt": True, "heater": False, "output": False}
CHANNELS: dict[str, dict[str, bool | float]] = {
    "lock": {"bolt": True, "bolt_sensor": True, "door": True},
    "thermostat": {"temperature": 20.0, "heater": False},
    "switch": {"output": False},
    "sensor": {"temperature": 21.0, "humidity": 45.0, "contact": True},
}


class PtyDevice:
    """The device end of a pty pair, served by a thread; `path` links to the other end."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._master = -1
        self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop_r = self._stop_w = -1
        self.lock = threading.RLock()
        self.plugged = False
        self.received: list[bytes] = []

    # -- plug
    def start(self) -> PtyDevice:
        self.replug()
        return self

    def replug(self) -> None:
        with self.lock:
            if self.plugged:
                return
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            self._master, self._slave = master, slave
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.symlink(os.ttyname(slave), self.path)
            self._stop_r, self._stop_w = os.pipe()
            self.plugged = True
            self.on_power_up()
            self._thread = threading.Thread(
                target=self._serve, name=f"fake-serial-{self.path.name}", daemon=True
            )
            self._thread.start()

    def unplug(self) -> None:
        """The cable is pulled: the port vanishes, the device loses bus power."""
        with self.lock:
            if not self.plugged:
                return
            self.plugged = False
            os.write(self._stop_w, b"x")
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        with self.lock:
            for fd in (self._master, self._slave, self._stop_r, self._stop_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = self._stop_r = self._stop_w = -1
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.on_power_down()

    def stop(self) -> None:
        self.unplug()

    # -- I/O
    def send(self, data: bytes) -> None:
        with self.lock:
            if self.plugged:
                with contextlib.suppress(OSError):
                    os.write(self._master, data)

    def _serve(self) -> None:
        master, stop = self._master, self._stop_r
        while True:
            try:
                ready, _, _ = select.select([master, stop], [], [], 0.05)
            except (OSError, ValueError):
                return
            if stop in ready:
                return
            if master in ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.received.append(data)
                    self.on_data(data)
            with self.lock:
                self.on_tick()

    # -- device hooks (run on the device thread, under self.lock)
    def on_data(self, data: bytes) -> None: ...

    def on_tick(self) -> None: ...

    def on_power_up(self) -> None: ...

    def on_power_down(self) -> None: ...


class FakeController(PtyDevice):
    """An Arduino-class board speaking the line protocol (docs/serial-line-protocol.md)."""

    def __init__(
        self,
        path: Path,
        thing_type: str,
        *,
        watchdog_s: float = 3.0,
        bolt_travel_s: float = 0.0,
        firmware: str = "fake-controller 1.0",
        values: dict[str, bool | float] | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        """VALUES: the board's channels and initial values (default: those of THING_TYPE);
        NAMES: board name -> channel, as the driver setting `names` maps them."""
        super().__init__(path)
        self.thing_type = thing_type
        self.values: dict[str, bool | float] = dict(
            CHANNELS[thing_type] if values is None else values
        )
        self.names = dict(names or {})
        self._board_names = {ch: name for name, ch in self.names.items()}
        self.watchdog_s = watchdog_s
        self.bolt_travel_s = bolt_travel_s
        self.firmware = firmware
        self.faults: dict[str, str] = {}
        self.muted = False
        self.corrupt_replies = 0
        self._buf = bytearray()
        self._last_frame = time.monotonic()
        self._bolt_at: float | None = None
        self._unplug_on: str | None = None
        self.commands: list[str] = []
        self.watchdog_trips = 0

    # -- test hooks (any thread)
    def set_input(self, channel: str, value: bool | float) -> None:
        """A physical input changes (door, contact, temperature): the board reports it."""
        with self.lock:
            self.values[channel] = value
            self.faults.pop(channel, None)
            self._event(channel, value)

    def fail_channel(self, channel: str, reason: str = "sensor lost") -> None:
        with self.lock:
            self.faults[channel] = reason
            self.send(frame(f"! {self._board_names.get(channel, channel)} FAULT {reason}"))

    def clear_fault(self, channel: str) -> None:
        with self.lock:
            self.faults.pop(channel, None)

    def unplug_on(self, command: str) -> None:
        """Pull the cable when the next COMMAND (e.g. "SET") arrives, before answering it."""
        with self.lock:
            self._unplug_on = command

    def value(self, channel: str) -> bool | float:
        with self.lock:
            return self.values[channel]

    def reboot(self) -> None:
        with self.lock:
            self.on_power_up()

    # -- device side
    def on_power_up(self) -> None:
        for ch, safe in SAFE.items():
            if ch in self.values:
                self.values[ch] = safe
        if "bolt_sensor" in self.values:
            self.values["bolt_sensor"] = True
        self._last_frame = time.monotonic()
        self._buf.clear()
        self.send(frame(f"! HELLO {self.firmware}"))

    def on_power_down(self) -> None:
        # bus power gone: relays drop out; a fail-secure bolt springs out
        for ch, safe in SAFE.items():
            if ch in self.values:
                self.values[ch] = safe
        if "bolt_sensor" in self.values:
            self.values["bolt_sensor"] = True

    def on_tick(self) -> None:
        now = time.monotonic()
        if self._bolt_at is not None and now >= self._bolt_at:
            self._bolt_at = None
            self._settle_bolt()
        if self.watchdog_s > 0 and now - self._last_frame > self.watchdog_s:
            self._last_frame = now
            if any(self.values.get(ch) != safe for ch, safe in SAFE.items() if ch in self.values):
                self.watchdog_trips += 1
                for ch, safe in SAFE.items():
                    if ch in self.values and self.values[ch] != safe:
                        self.values[ch] = safe
                        self._event(ch, safe)
                if self.thing_type == "lock":
                    self._settle_bolt()

    def on_data(self, data: bytes) -> None:
        self._buf += data
        while b"\n" in self._buf:
            line, _, rest = bytes(self._buf).partition(b"\n")
            self._buf = bytearray(rest)
            payload = unframe(line)
            if payload is None:
                continue
            self._last_frame = time.monotonic()
            words = payload.split()
            if len(words) < 2:
                continue
            rid, cmd, args = words[0], words[1], words[2:]
            self.commands.append(" ".join(words[1:]))
            if self._unplug_on == cmd:
                self._unplug_on = None
                threading.Thread(target=self.unplug, daemon=True).start()
                self.plugged_out_mid_command = True
                return
            if self.muted:
                continue
            self._reply(rid, self._handle(cmd, args))

    def _handle(self, cmd: str, args: list[str]) -> str:
        if cmd == "PING":
            return f"OK PONG {self.firmware.split()[0]}"
        ch = self.names.get(args[0], args[0]) if args else ""
        if ch not in self.values:
            return "ERR unknown_channel " + (args[0] if args else "-")
        if ch in self.faults:
            return f"ERR fault {self.faults[ch]}"
        if cmd == "GET":
            return f"OK {args[0]} {_fmt(self.values[ch])}"
        if cmd == "SET":
            if ch not in SAFE:
                return f"ERR read_only {ch}"
            if len(args) < 2 or args[1] not in ("0", "1"):
                return "ERR bad_value expected 0 or 1"
            self.values[ch] = args[1] == "1"
            if ch == "bolt":
                if self.bolt_travel_s > 0:
                    self._bolt_at = time.monotonic() + self.bolt_travel_s
                else:
                    self._settle_bolt(push=False)
            return f"OK {args[0]} {args[1]}"
        return f"ERR unknown_command {cmd}"

    def _settle_bolt(self, push: bool = True) -> None:
        if self.values.get("bolt_sensor") != self.values["bolt"]:
            self.values["bolt_sensor"] = self.values["bolt"]
            if push:
                self._event("bolt_sensor", self.values["bolt_sensor"])

    def _reply(self, rid: str, body: str) -> None:
        data = frame(f"{rid} {body}")
        if self.corrupt_replies > 0:
            self.corrupt_replies -= 1
            payload = f"{rid} {body}"
            bad = "00" if checksum(payload) != "00" else "01"
            data = f"{payload}*{bad}\n".encode()
        self.send(data)

    def _event(self, channel: str, value: bool | float) -> None:
        self.send(frame(f"! {self._board_names.get(channel, channel)} {_fmt(value)}"))


def _fmt(value: bool | float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:.2f}"


class FakeModbusBus(PtyDevice):
    """An RS-485 bus with an XY-MD02 (unit 1: input registers 1 and 2, tenths of °C and %RH)
    and a relay module (unit 2: coils 0..7, function codes 0x01 and 0x05)."""

    def __init__(
        self, path: Path, *, sensor_unit: int = 1, relay_unit: int = 2, reply_delay_s: float = 0
    ) -> None:
        super().__init__(path)
        self.sensor_unit = sensor_unit
        self.relay_unit = relay_unit
        self.temperature = 21.0
        self.humidity = 45.0
        self.coils = [False] * 8
        self.reply_delay_s = reply_delay_s
        self.bad_crc_replies = 0  # the next N replies carry a wrong CRC
        self.silent_units: set[int] = set()
        self.sensor_failed = False  # the SHT20 inside is dead: exception 4 (device failure)
        self._buf = bytearray()
        self.requests = 0
        self.on_request: Callable[[bytes], None] | None = None

    def on_power_down(self) -> None:
        self.coils = [False] * 8  # relay module loses its supply with the bus

    def on_data(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= 8:  # every request this bus serves is 8 bytes long
            adu, self._buf = bytes(self._buf[:8]), self._buf[8:]
            if not crc_ok(adu):
                self._buf.clear()  # a slave ignores a damaged frame
                return
            self.requests += 1
            if self.on_request is not None:
                self.on_request(adu)
            reply = self._answer(adu[:-2])
            if reply is None or not self.plugged:
                continue
            if self.reply_delay_s:
                time.sleep(self.reply_delay_s)
            out = reply + crc16_modbus(reply).to_bytes(2, "little")
            if self.bad_crc_replies > 0:
                self.bad_crc_replies -= 1
                out = out[:-1] + bytes([out[-1] ^ 0xFF])
            self.send(out)

    def _answer(self, pdu: bytes) -> bytes | None:
        unit, fc = pdu[0], pdu[1]
        addr = int.from_bytes(pdu[2:4], "big")
        arg = int.from_bytes(pdu[4:6], "big")
        if unit in self.silent_units:
            return None
        if unit == self.sensor_unit:
            if fc != 0x04:
                return bytes([unit, fc | 0x80, 1])
            if self.sensor_failed:
                return bytes([unit, fc | 0x80, 4])
            regs = {1: round(self.temperature * 10), 2: round(self.humidity * 10)}
            if arg != 1 or addr not in regs:
                return bytes([unit, fc | 0x80, 2])
            return bytes([unit, fc, 2]) + regs[addr].to_bytes(2, "big", signed=True)
        if unit == self.relay_unit:
            if addr >= len(self.coils):
                return bytes([unit, fc | 0x80, 2])
            if fc == 0x05:
                if arg not in (0xFF00, 0x0000):
                    return bytes([unit, fc | 0x80, 3])
                self.coils[addr] = arg == 0xFF00
                return pdu
            if fc == 0x01:
                return bytes([unit, fc, 1, int(self.coils[addr])])
            return bytes([unit, fc | 0x80, 1])
        return None  # nobody at that address: no reply
