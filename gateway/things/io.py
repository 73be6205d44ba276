"""Driver I/O as every Thing does it: each call bounded in time, timestamps in one format."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from device_drivers.base import Driver, Reading, Value
from device_drivers.errors import DriverError

log = logging.getLogger(__name__)

IO_TIMEOUT_S = 5.0  # a driver call taking longer has failed (hung bus, lost radio link)


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds and a Z, for event payloads."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def bounded_read(driver: Driver, channel: str) -> Reading:
    """driver.read bounded by IO_TIMEOUT_S; a hung call is a DriverError like any other."""
    limit = IO_TIMEOUT_S
    try:
        async with asyncio.timeout(limit):
            return await driver.read(channel)
    except TimeoutError as exc:
        raise DriverError(f"{channel} read timed out after {limit} s") from exc


async def bounded_write(driver: Driver, channel: str, value: Value) -> None:
    """driver.write bounded by IO_TIMEOUT_S; a hung call is a DriverError like any other."""
    limit = IO_TIMEOUT_S
    try:
        async with asyncio.timeout(limit):
            await driver.write(channel, value)
    except TimeoutError as exc:
        raise DriverError(f"{channel} write timed out after {limit} s") from exc


async def stop_driver(driver: Driver, thing: str) -> None:
    """Stop THING's driver from its `stop()`: a failure is logged, never raised (the Thing has
    already put its outputs in their safe state)."""
    try:
        await driver.stop()
    except Exception:
        log.exception("%s: driver stop failed", thing)
