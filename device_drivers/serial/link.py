"""One serial port on the event loop: open, supervise, reconnect; protocols subclass `SerialLink`.

When the port disappears (USB unplugged: pyserial reports an I/O error) every pending command
fails at once, every user of the link is told, and the link retries with capped, jittered backoff
(`device_drivers.backoff`) until the port is back. The port is opened in a worker thread and read
and written by pyserial-asyncio-fast's transport (non-blocking file descriptor).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

from device_drivers.backoff import Backoff
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.tasks import TaskOwner, describe

log = logging.getLogger(__name__)


def port_present(port: str) -> bool:
    """Whether the device node exists (a stat of /dev: never blocks on a device)."""
    return os.path.exists(port)


def port_key(port: str) -> str:
    """The port's canonical name: by-id symlinks and /dev/ttyUSB0 name one port once."""
    return os.path.realpath(port)


class LinkUser(Protocol):
    """What a link needs of the drivers on it (SerialDriver): names and the link callbacks."""

    thing: str
    port: str
    share_key: str

    def _link_down(self, reason: str) -> None: ...

    def _link_up(self) -> None: ...

    def _board_reset(self, firmware: str) -> None: ...

    def _board_event(self, board_name: str, words: list[str]) -> None: ...


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
        self.drivers: set[LinkUser] = set()
        self.up = False
        self.down_reason = "not opened yet"
        self._buf = bytearray()  # received bytes not yet framed; emptied on every (re)open
        self._proto: _Protocol | None = None
        self._serial: Any = None
        self._lost = asyncio.Event()
        self._tasks = TaskOwner(f"serial link {port}", self._task_died)
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
        await self._tasks.close()
        self._disconnect()

    async def _connect(self) -> None:
        # absolute imports (Python 3): pyserial's top-level `serial`, not this package
        import serial
        import serial_asyncio_fast

        if not port_present(self.port):
            raise DriverError(f"serial port absent (unplugged?): {self.port}")
        loop = asyncio.get_running_loop()
        try:
            ser = await asyncio.to_thread(serial.Serial, self.port, exclusive=True, **self.options)
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
        self._tasks.spawn(coro, name=f"serial-{self.port}-{what}")

    def _task_died(self, name: str, exc: BaseException) -> None:
        """A task of the link raised (logged by the owner): a bug; the link counts as down."""
        self._mark_down(f"serial link {self.port}: internal error: {describe(exc)}")

    def write(self, data: bytes) -> None:
        proto = self._proto
        if not self.up or proto is None or proto.transport is None:
            raise DriverError(f"serial link down: {self.down_reason}")
        proto.transport.write(data)

    # -- protocol hooks
    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_up(self) -> None:
        """The port is (re)opened: bytes of the old connection are dropped."""
        self._buf.clear()

    def _fail_pending(self, reason: str) -> None:
        """Subclass hook: fail every command waiting for a reply."""
