"""The line protocol's frames (docs/serial-line-protocol.md): `payload*XX\\n`, XX the checksum."""

from __future__ import annotations

import math

from device_drivers.base import Value
from device_drivers.errors import DriverError

NUMERIC = frozenset({"temperature", "humidity"})


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
