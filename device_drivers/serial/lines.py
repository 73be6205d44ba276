"""LineLink: the line protocol (docs/serial-line-protocol.md) over a `SerialLink`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from device_drivers.backoff import Backoff
from device_drivers.errors import DriverError
from device_drivers.serial.framing import frame, unframe
from device_drivers.serial.link import SerialLink

log = logging.getLogger(__name__)

MAX_LINE = 128  # bytes; a longer line is noise or a runaway sketch: dropped
MAX_ID = 65535


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
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[list[str]]] = {}
        self.bad_frames = 0
        self.firmware = ""

    def _started(self) -> None:
        if self.keepalive_s > 0:
            self._spawn(self._keepalive(), "keepalive")

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
