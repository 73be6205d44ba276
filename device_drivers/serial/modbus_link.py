"""ModbusLink: a Modbus RTU master over a `SerialLink` (frames and registers: `modbus`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from device_drivers.backoff import Backoff
from device_drivers.errors import DriverError
from device_drivers.serial.link import SerialLink
from device_drivers.serial.modbus import (
    MODBUS_BAUD,
    MODBUS_EXCEPTIONS,
    Register,
    crc_ok,
    read_request,
    t35_s,
    with_crc,
)


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
        self._want = 0
        self._waiter: asyncio.Future[bytes] | None = None
        self._lock = asyncio.Lock()
        self._last_io = 0.0
        self._gap = t35_s(int(options.get("baudrate", MODBUS_BAUD)))
        self.crc_errors = 0

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
                f"modbus unit {request[0]} on {self.port}: {problem} ({self.retries + 1} attempts)"
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
        pdu = read_request(unit, reg.function, reg.address)
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
        reply = await self.transaction(read_request(unit, 0x01, coil), 4)  # unit, fc, count 1, bits
        return bool(reply[3] & 1)


class _Retry(Exception):
    """A transaction failure worth one more attempt (timeout, CRC error, stray reply)."""
