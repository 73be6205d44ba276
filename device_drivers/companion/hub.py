"""The gateway's end of the companion links: one `DeviceLink` per paired ESP32 board.

A board talks over MQTT (topics `streembit/<gateway id>/companion/<device>/{up,down,status}`,
one shared broker connection for every board) or over USB serial (one line per frame), with the
same authenticated frames (`micropython_client/frames.py`, docs/companion.md). Per device:

- frames are checked (length, direction, device, HMAC-SHA256 under the device's key, counter
  above the floor) before anything is acted on; refusals are counted and logged at most every
  LOG_EVERY_S per device, and a board that floods (beyond `max_frames_per_s`) has the excess
  dropped unchecked;
- the session learns the board's counter floor by challenge (H with a nonce, answered by W); the
  gateway's own counter is persistent (`counter_dir/<device>`) so a board never sees it go back;
- commands (C) carry an id and are retransmitted every `retransmit_s` (also at once after a
  reconnect) until the board acknowledges (A) or `command_timeout_s` passes; the board executes
  an id once, so a retransmission is never a second action;
- the link is *online* while valid frames keep arriving within `link_timeout_s` (the board
  reports every few seconds, the gateway sends K keepalives); going offline pushes a DriverError
  on every channel, so Things go to their safe state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import termios
import time
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_drivers.base import Reading, Value
from device_drivers.companion.broker import topic_root
from device_drivers.companion.mqtt import MqttConnection
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.tasks import TaskOwner, describe
from micropython_client import frames
from micropython_client.counter import Counter
from micropython_client.link import LineSplitter, encode_line

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
TICK_S = 0.1  # the hub's timer resolution (keepalives, retries, link timeouts)
MIN_LINK_TIMEOUT_S = 1.0  # bounds on the link timeout a board announces
MAX_LINK_TIMEOUT_S = 600.0
SERIAL_READ = 4096

Listener = Callable[[str, "Reading | DriverError"], None]


@dataclass(frozen=True)
class Timing:
    heartbeat_s: float = 5.0  # K to each board when nothing else was sent (at most)
    link_timeout_s: float = 15.0  # no valid frame for this long: offline (until the board's
    # hello announces its own link timeout, which both ends then use)
    hello_retry_s: float = 2.0  # resend H while the board has not answered
    command_timeout_s: float = 4.5  # below the Things' 5 s I/O timeout
    retransmit_s: float = 1.0
    max_frames_per_s: float = 20.0  # per device, token bucket...
    burst: int = 40  # ...with this burst


class DeviceLink:
    """The session with one board, its last known channel values and its pending commands."""

    def __init__(
        self,
        hub: CompanionHub,
        device: str,
        key: bytes,
        counter: Counter,
    ) -> None:
        self.hub = hub
        self.device = device
        self.session = frames.Session(key, device, frames.DOWN, counter, secrets.token_bytes)
        self.values: dict[str, Reading] = {}
        self.errors: dict[str, str] = {}
        self.board_channels: dict[str, str] = {}
        self.firmware = ""
        self.listeners: list[Listener] = []
        self.send: Callable[[bytes], bool] = lambda _frame: False
        self.transport_up = False
        self.last_rx = 0.0
        self.last_tx = 0.0
        self.last_hello = 0.0
        self.online = False
        # command id -> (its payload, the caller's future, when last sent)
        self.pending: dict[int, tuple[dict[str, Any], asyncio.Future[dict[str, Any]], float]] = {}
        self.refused: dict[str, int] = {}
        self.refused_total = 0
        self.dropped = 0
        self.last_log = 0.0
        self.tokens = float(hub.timing.burst)
        self.token_at = time.monotonic()
        self.status = "unknown"
        # the board's link timeout (from its hello): both ends use it; keepalives at a third
        self.link_timeout_s = hub.timing.link_timeout_s
        self.heartbeat_s = hub.timing.heartbeat_s

    # -- for drivers
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self.listeners.append(listener)

        def remove() -> None:
            if listener in self.listeners:
                self.listeners.remove(listener)

        return remove

    def reading(self, channel: str) -> Reading:
        if not self.online:
            raise DriverError(f"companion {self.device}: link down ({self.status})")
        if channel in self.errors:
            raise DriverError(f"companion {self.device}: {channel}: {self.errors[channel]}")
        reading = self.values.get(channel)
        if reading is None:
            raise DriverError(f"companion {self.device}: no value of {channel!r} yet")
        return reading

    async def command(self, sets: Mapping[str, Value]) -> dict[str, Any]:
        """Send a command and wait for its acknowledgement (DriverError if none comes)."""
        if not self.session.ready:
            raise DriverError(f"companion {self.device}: no session with the board")
        cid = next(self.hub.ids)
        payload: dict[str, Any] = {"id": cid, "set": dict(sets)}
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[cid] = (payload, fut, 0.0)
        self._resend(cid)
        try:
            async with asyncio.timeout(self.hub.timing.command_timeout_s):
                ack = await fut
        except TimeoutError:
            raise DriverError(
                f"companion {self.device}: no acknowledgement within "
                f"{self.hub.timing.command_timeout_s} s"
            ) from None
        finally:
            self.pending.pop(cid, None)
        if ack.get("ok") is not True:
            raise DriverError(f"companion {self.device}: refused: {str(ack.get('e'))[:80]}")
        return ack

    # -- transport side
    def _resend(self, cid: int) -> None:
        """(Re)send a pending command, sealed afresh: a retransmission carries a new counter
        (frames sent meanwhile moved the board's floor on) and the same id (the board acts on
        an id once and acknowledges it again)."""
        entry = self.pending.get(cid)
        if entry is None or entry[1].done():
            return
        self.pending[cid] = (entry[0], entry[1], time.monotonic())
        self._send(self.session.seal("C", entry[0]))

    def _send(self, frame: bytes) -> None:
        self.last_tx = time.monotonic()
        self.send(frame)

    def transport_changed(self, up: bool) -> None:
        self.transport_up = up
        if up:
            self.status = "transport up"
            # a reconnect: re-prove freshness if we have no floor, resend unacknowledged commands
            if not self.session.ready:
                self._hello()
            for cid in list(self.pending):
                self._resend(cid)

    def status_message(self, payload: bytes) -> None:
        """The board's retained status topic: "online", or its last will "offline". Only noted:
        the board keeps its outputs for its link timeout, so the gateway waits as long."""
        text = payload[:16].decode("ascii", "replace")
        if text == "offline":
            self.status = "board connection lost (last will)"
            log.info("companion %s: %s", self.device, self.status)

    def _hello(self) -> None:
        self.last_hello = time.monotonic()
        self._send(self.session.hello())

    def _flooded(self, now: float) -> bool:
        t = self.hub.timing
        self.tokens = min(float(t.burst), self.tokens + (now - self.token_at) * t.max_frames_per_s)
        self.token_at = now
        if self.tokens < 1.0:
            return True
        self.tokens -= 1.0
        return False

    def receive(self, frame: bytes) -> None:
        """Handle one frame from the board. Nothing a frame holds escapes from here: a refusal
        is counted (and logged, rate-limited), and the hub keeps serving every board."""
        try:
            self._receive(frame)
        except Exception as exc:  # a bug reachable from a board's bytes: count it, keep going
            self._refuse("internal")
            log.error("companion %s: frame handling failed: %s", self.device, describe(exc))

    def _receive(self, frame: bytes) -> None:
        now = time.monotonic()
        if self._flooded(now):
            self.dropped += 1
            self._refuse("flood")
            return
        try:
            kind, obj = self.session.open(frame)
        except frames.FrameError as exc:
            self._refuse(exc.code)
            if exc.code == frames.NO_SESSION and now - self.last_hello > 0.5:
                self._hello()
            return
        self.last_rx = now
        if kind == "H":
            self._send(self.session.welcome(obj["n"]))
            ch = obj.get("ch")
            if isinstance(ch, dict):
                self.board_channels = {str(k): str(v) for k, v in list(ch.items())[:32]}
            self.firmware = str(obj.get("fw", ""))[:16]
            lt = obj.get("lt")
            if isinstance(lt, int) and not isinstance(lt, bool):
                self.link_timeout_s = min(max(lt / 1000, MIN_LINK_TIMEOUT_S), MAX_LINK_TIMEOUT_S)
                self.heartbeat_s = min(self.hub.timing.heartbeat_s, self.link_timeout_s / 3)
            if not self.session.ready and now - self.last_hello > 0.5:
                self._hello()
            if self.online:  # the board restarted: its outputs are in their safe state now
                log.info("companion %s: board restarted", self.device)
            return
        if kind == "W":
            log.info("companion %s: session established", self.device)
            self.status = "online"
            for cid in list(self.pending):
                self._resend(cid)
            return
        if kind in ("R", "A"):
            self._values(obj, now)
            self._set_online(True)
        if kind == "A":
            ack_id = obj.get("id")
            entry = self.pending.get(ack_id) if isinstance(ack_id, int) else None
            if entry is not None and not entry[1].done():
                entry[1].set_result(obj)

    def _values(self, obj: dict[str, Any], now: float) -> None:
        raw_values = obj.get("v")
        raw_errors = obj.get("e") if "e" in obj and isinstance(obj.get("e"), dict) else None
        if raw_errors is None and isinstance(obj.get("err"), dict):
            raw_errors = obj["err"]
        values = raw_values if isinstance(raw_values, dict) else {}
        errors = raw_errors if isinstance(raw_errors, dict) else {}
        changed: list[str] = []
        for name, value in list(values.items())[:32]:
            if value is None or not isinstance(value, (bool, int, float, str)):
                errors.setdefault(name, f"unusable value {value!r}"[:80])
                continue
            old = self.values.get(name)
            self.values[name] = Reading(value, now)
            self.errors.pop(name, None)
            if old is None or old.value != value:
                changed.append(name)
        for name, why in list(errors.items())[:32]:
            self.values.pop(name, None)
            self.errors[str(name)] = str(why)[:80]
            changed.append(str(name))
        for name in changed:
            self._emit(name)

    def _emit(self, channel: str) -> None:
        item: Reading | DriverError
        if not self.online:
            item = DriverError(f"companion {self.device}: link down ({self.status})")
        elif channel in self.errors:
            item = DriverError(f"companion {self.device}: {channel}: {self.errors[channel]}")
        elif channel in self.values:
            item = self.values[channel]
        else:
            return
        for listener in list(self.listeners):
            try:
                listener(channel, item)
            except Exception:
                log.exception("companion %s: listener failed", self.device)

    def _set_online(self, online: bool) -> None:
        if online == self.online:
            return
        self.online = online
        if online:
            self.status = "online"
            log.info("companion %s: online", self.device)
        else:
            log.warning("companion %s: offline: %s", self.device, self.status)
        for channel in set(self.values) | set(self.errors) | set(self.board_channels):
            self._emit(channel)

    def _refuse(self, code: str) -> None:
        self.refused_total += 1
        self.refused[code] = self.refused.get(code, 0) + 1
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY_S:
            log.warning("companion %s: refused frames %s", self.device, self.refused)
            self.refused = {}
            self.last_log = now

    def tick(self, now: float) -> None:
        t = self.hub.timing
        if self.online and now - self.last_rx > self.link_timeout_s:
            self.status = f"no valid frame for {self.link_timeout_s} s"
            self._set_online(False)
        if not self.transport_up:
            if self.online:
                self.status = "transport down"
            return
        if not self.session.ready:
            if now - self.last_hello > t.hello_retry_s:
                self._hello()
            return
        for cid, (_payload, fut, at) in list(self.pending.items()):
            if not fut.done() and now - at > t.retransmit_s:
                self._resend(cid)
        if now - self.last_tx > self.heartbeat_s:
            self._send(self.session.seal("K", {}))


class SerialTransport:
    """A board on a USB serial port (or a pty in tests): frames as lines, 115200 8N1 raw."""

    def __init__(self, link: DeviceLink, path: str, baud: int = 115200) -> None:
        self.link = link
        self.path = path
        self.baud = baud
        self.fd: int | None = None
        self.split = LineSplitter()

    def open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            speed = getattr(termios, f"B{self.baud}", termios.B115200)
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # not a tty (a pipe in tests): raw bytes anyway
        self.fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)
        self.link.send = self.write
        self.link.transport_changed(True)

    def write(self, frame: bytes) -> bool:
        if self.fd is None:
            return False
        try:
            os.write(self.fd, encode_line(frame))
        except OSError as exc:
            log.warning("companion %s: serial write failed: %s", self.link.device, exc)
            return False
        return True

    def _readable(self) -> None:
        fd = self.fd
        if fd is None:
            return
        try:
            data = os.read(fd, SERIAL_READ)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("companion %s: serial read failed: %s", self.link.device, exc)
            self.close()
            return
        for frame in self.split.feed(data):
            self.link.receive(frame)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            self.link.transport_changed(False)


class CompanionHub:
    """Every companion board of one gateway; started by the first driver, stopped by the last."""

    def __init__(
        self,
        *,
        gateway_id: str,
        keys: Mapping[str, bytes],
        counter_dir: Path,
        connection: MqttConnection | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.root = topic_root(gateway_id)
        self.keys = dict(keys)
        self.counter_dir = Path(counter_dir)
        self.connection = connection
        self.timing = timing or Timing()
        self.links: dict[str, DeviceLink] = {}
        self.serial: dict[str, SerialTransport] = {}
        self.ids = itertools.count(int.from_bytes(secrets.token_bytes(3), "big") + 1)
        self._users = 0
        self._lock = asyncio.Lock()
        self._tasks = TaskOwner("companion hub")  # the ticker: restarted if it dies
        self.unknown_devices = 0

    def device(self, name: str) -> DeviceLink:
        link = self.links.get(name)
        if link is not None:
            return link
        key = self.keys.get(name)
        if key is None:
            raise DriverConfigError(
                f"companion {name!r} is not paired (run: streembit-gateway companion pair)"
            )
        self.counter_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        link = DeviceLink(self, name, key, Counter(str(self.counter_dir / name), 1024))
        self.links[name] = link
        if self.connection is not None:
            down = f"{self.root}/{name}/down"
            conn = self.connection
            link.send = lambda frame: conn.publish(down, frame, qos=1)
            link.transport_up = conn.connected
        return link

    def add_serial(self, device: str, path: str) -> None:
        link = self.device(device)
        self.serial[device] = SerialTransport(link, path)

    async def start(self) -> None:
        async with self._lock:
            self._users += 1
            if self._users > 1:
                return
            if self.connection is not None:
                self.connection.subscribe(f"{self.root}/+/up", self._on_up)
                self.connection.subscribe(f"{self.root}/+/status", self._on_status)
                self.connection.on_state(self._on_connection)
                await self.connection.start()
            for transport in self.serial.values():
                try:
                    transport.open()
                except OSError as exc:
                    log.warning("companion %s: %s: %s", transport.link.device, transport.path, exc)
            self._tasks.keep_running(self._tick, name="companion-hub")

    async def stop(self) -> None:
        async with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            await self._tasks.close()
            for transport in self.serial.values():
                transport.close()
            if self.connection is not None:
                await self.connection.stop()

    def _device_of(self, topic: str, leaf: str) -> DeviceLink | None:
        prefix = self.root + "/"
        if not topic.startswith(prefix) or not topic.endswith("/" + leaf):
            return None
        name = topic[len(prefix) : -len(leaf) - 1]
        link = self.links.get(name)
        if link is None:
            self.unknown_devices += 1
        return link

    def _on_up(self, topic: str, payload: bytes) -> None:
        link = self._device_of(topic, "up")
        if link is not None:
            link.receive(payload)

    def _on_status(self, topic: str, payload: bytes) -> None:
        link = self._device_of(topic, "status")
        if link is not None:
            link.status_message(payload)

    def _on_connection(self, up: bool) -> None:
        if not up:
            log.warning("companion hub: broker connection lost")
        for link in self.links.values():
            if link.device not in self.serial:
                link.transport_changed(up)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for link in list(self.links.values()):
                try:
                    link.tick(now)
                except Exception:
                    log.exception("companion %s: timer failed", link.device)
