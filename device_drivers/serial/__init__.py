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

Settings: `driver.SerialSettings` (reference with defaults and ranges: docs/config.md): port
(required; prefer /dev/serial/by-id/...), protocol, line settings, the reply deadline, the
reconnect delays; for line boards keepalive_s and names ({ channel = "board name" }); for Modbus
device, unit, relay_unit, relay_coil and retries (a setting of the other protocol is refused).
Injected: `link_pool=` a LinkPool (tests; default: one pool per event loop).

Nothing blocks the event loop: the port is opened in a worker thread and read and written by
pyserial-asyncio-fast's transport (non-blocking file descriptor).

Modules, bottom up (aioesphomeapi's frame helper -> connection -> client layering):

- `framing`      line protocol frames: checksum, frame, unframe, parse_value
- `modbus`       Modbus RTU frames: CRC-16/MODBUS, exception codes, register maps, t3.5
- `link`         SerialLink: one port on the event loop, supervised reconnect with backoff
- `lines`        LineLink: line protocol commands, replies, events and keepalive
- `modbus_link`  ModbusLink: the Modbus RTU master (transactions, retries, registers, coils)
- `pool`         LinkPool / loop_pool: one link per port, shared by the drivers on it
- `driver`       SerialDriver, the Driver a Thing uses (entry point `serial`)
"""

from device_drivers.serial.driver import (
    CHANNELS,
    KEEPALIVE_S,
    LINE_BAUD,
    LINE_TIMEOUT_S,
    MODBUS_CHANNELS,
    MODBUS_TIMEOUT_S,
    WRITABLE,
    SerialDriver,
)
from device_drivers.serial.framing import (
    NUMERIC,
    checksum,
    frame,
    parse_value,
    unframe,
)
from device_drivers.serial.lines import (
    MAX_ID,
    MAX_LINE,
    LineLink,
)
from device_drivers.serial.link import (
    LinkUser,
    SerialLink,
    port_key,
    port_present,
)
from device_drivers.serial.modbus import (
    MODBUS_BAUD,
    MODBUS_DEVICES,
    MODBUS_EXCEPTIONS,
    XY_MD02,
    Register,
    crc16_modbus,
    crc_ok,
    read_request,
    t35_s,
    with_crc,
)
from device_drivers.serial.modbus_link import (
    ModbusLink,
)
from device_drivers.serial.pool import (
    LinkPool,
    loop_pool,
)

__all__ = [
    "CHANNELS",
    "KEEPALIVE_S",
    "LINE_BAUD",
    "LINE_TIMEOUT_S",
    "MAX_ID",
    "MAX_LINE",
    "MODBUS_BAUD",
    "MODBUS_CHANNELS",
    "MODBUS_DEVICES",
    "MODBUS_EXCEPTIONS",
    "MODBUS_TIMEOUT_S",
    "NUMERIC",
    "WRITABLE",
    "XY_MD02",
    "LineLink",
    "LinkPool",
    "LinkUser",
    "ModbusLink",
    "Register",
    "SerialDriver",
    "SerialLink",
    "checksum",
    "crc16_modbus",
    "crc_ok",
    "frame",
    "loop_pool",
    "parse_value",
    "port_key",
    "port_present",
    "read_request",
    "t35_s",
    "unframe",
    "with_crc",
]
