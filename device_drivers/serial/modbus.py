"""Modbus RTU framing: CRC-16/MODBUS, exception codes, the register maps, inter-frame silence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MODBUS_BAUD = 9600


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


def read_request(unit: int, function: int, address: int) -> bytes:
    """A read of one register or coil (function 0x01 or 0x04): unit, fc, address, count 1."""
    return bytes([unit, function]) + address.to_bytes(2, "big") + (1).to_bytes(2, "big")


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
