"""Bluetooth Low Energy backend (bleak, BlueZ on Linux): backend "ble".

Channels and their GATT characteristics (each overridable: `<channel> = { uuid = "..." }`):

    temperature   Environmental Sensing Service (0x181A) Temperature 0x2A6E: sint16, 0.01 °C,
                  0x8000 = unknown (Bluetooth SIG GATT Specification Supplement, 3.204)
    humidity      ESS Humidity 0x2A6F: uint16, 0.01 %RH (GSS 3.114)
    bolt, heater, output
                  the Streembit actuator characteristic (service ACTUATOR_SERVICE): one byte,
                  0 or 1 (bolt: 1 = thrown / locked; heater, output: 1 = on), read / notify, and
                  always written *with response*, so a write that did not reach the device fails
    bolt_sensor, door, contact
                  Streembit input characteristics: one byte 0 / 1, read / notify

Readings arrive by notification (`mode = "notify"`, the default: GATT Notify on every
characteristic that offers it, pushed to subscribers) or only when read (`mode = "poll"`).

Link: connect at start; on a disconnection every channel gets a fault pushed at once and the
driver reconnects with capped, jittered backoff (`reconnect_initial_s` 0.5, `reconnect_cap_s` 30).
A missing adapter, bluetoothd not running or no system bus is a DriverConfigError at start that
names the fix; a device out of reach at start is not: the Thing starts in its fault state and the
link keeps trying.

Settings: `BleSettings` and its per-type subclasses below (reference: docs/config.md): address
(required), adapter, mode, timeouts, reconnect delays, and per-channel `{ uuid = "..." }`
tables. bleak delivers notifications and disconnection callbacks on the event
loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from device_drivers.backoff import Backoff
from device_drivers.base import Driver, Reading, Value
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.settings import doc, setting
from device_drivers.tasks import TaskOwner

log = logging.getLogger(__name__)


def sig_uuid(short: int) -> str:
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


ESS_SERVICE = sig_uuid(0x181A)
TEMPERATURE_UUID = sig_uuid(0x2A6E)
HUMIDITY_UUID = sig_uuid(0x2A6F)
ACTUATOR_SERVICE = "5b3e0001-9a3c-4f6e-8c2d-53747265656d"  # "Streem" in the node bytes
ACTUATOR_UUID = "5b3e0002-9a3c-4f6e-8c2d-53747265656d"
BOLT_SENSOR_UUID = "5b3e0003-9a3c-4f6e-8c2d-53747265656d"
DOOR_UUID = "5b3e0004-9a3c-4f6e-8c2d-53747265656d"
CONTACT_UUID = "5b3e0005-9a3c-4f6e-8c2d-53747265656d"

CHANNELS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt", "bolt_sensor", "door"),
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity", "contact"),
}
DEFAULT_UUID: Mapping[str, str] = {
    "temperature": TEMPERATURE_UUID,
    "humidity": HUMIDITY_UUID,
    "bolt": ACTUATOR_UUID,
    "heater": ACTUATOR_UUID,
    "output": ACTUATOR_UUID,
    "bolt_sensor": BOLT_SENSOR_UUID,
    "door": DOOR_UUID,
    "contact": CONTACT_UUID,
}
WRITABLE = frozenset({"bolt", "heater", "output"})
ADDRESS_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
MODES = ("notify", "poll")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ADAPTER_FIX = (
    "start bluetoothd (systemctl enable --now bluetooth), check that the adapter exists and is "
    "powered (bluetoothctl list; bluetoothctl power on) and not blocked (rfkill unblock "
    "bluetooth), or fix the driver setting 'adapter'"
)


def _uuid(text: str) -> str | None:
    low = text.lower()
    if re.fullmatch(r"[0-9a-f]{4}", low) or UUID_RE.match(low):
        return None
    return 'a 128-bit UUID or a 16-bit SIG number like "2a6e"'


@dataclass(frozen=True)
class Characteristic:
    uuid: str = field(
        metadata=doc("the GATT characteristic, 128-bit or a 16-bit SIG number", check=_uuid)
    )


def _address(text: str) -> str | None:
    return (
        None if ADDRESS_RE.match(text.upper()) else 'a Bluetooth address like "C0:FF:EE:12:34:56"'
    )


def _adapter(text: str) -> str | None:
    return None if re.fullmatch(r"hci\d{1,2}", text) else 'an adapter name like "hci0"'


CHARACTERISTIC = doc(
    '`{ uuid = "..." }` overrides the channel\'s characteristic',
    shown="the channel's standard one",
)


@dataclass(frozen=True)
class BleSettings:
    address: str = field(metadata=doc("the peripheral's Bluetooth address", check=_address))
    adapter: str = setting("hci0", "the BlueZ adapter", check=_adapter)
    mode: str = setting(
        "notify", "`notify`: pushed by GATT Notify; `poll`: read when asked", choices=MODES
    )
    connect_timeout_s: float = setting(10.0, "connection deadline", min=0.1, max=120.0, unit="s")
    io_timeout_s: float = setting(5.0, "one GATT read or write", min=0.05, max=60.0, unit="s")
    reconnect_initial_s: float = setting(
        0.5, "first reconnect delay", min=0.001, max=60.0, unit="s"
    )
    reconnect_cap_s: float = setting(
        30.0, "longest reconnect delay", min=0.001, max=3600.0, unit="s"
    )


@dataclass(frozen=True)
class BleLock(BleSettings):
    bolt: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)
    bolt_sensor: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)
    door: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)


@dataclass(frozen=True)
class BleThermostat(BleSettings):
    temperature: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)
    heater: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)


@dataclass(frozen=True)
class BleSwitch(BleSettings):
    output: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)


@dataclass(frozen=True)
class BleSensor(BleSettings):
    temperature: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)
    humidity: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)
    contact: Characteristic | None = field(default=None, metadata=CHARACTERISTIC)


SETTINGS: Mapping[str, type[BleSettings]] = {
    "lock": BleLock,
    "thermostat": BleThermostat,
    "switch": BleSwitch,
    "sensor": BleSensor,
}


def decode(channel: str, data: bytes | bytearray) -> Value:
    """A characteristic value as the channel's value; DriverError for malformed data."""
    if channel == "temperature":
        if len(data) < 2:
            raise DriverError(f"temperature: {len(data)} bytes, expected 2")
        raw = int.from_bytes(data[:2], "little", signed=True)
        if raw == -0x8000:
            raise DriverError("temperature: the sensor reports 'value unknown'")
        return raw / 100.0
    if channel == "humidity":
        if len(data) < 2:
            raise DriverError(f"humidity: {len(data)} bytes, expected 2")
        raw = int.from_bytes(data[:2], "little")
        if raw > 10000:
            raise DriverError(f"humidity: {raw / 100} %RH is not a humidity")
        return raw / 100.0
    if len(data) != 1 or data[0] not in (0, 1):
        raise DriverError(f"{channel}: {bytes(data).hex() or 'nothing'}, expected 00 or 01")
    return data[0] == 1


class BleDriver(Driver):
    """One Thing's channels on one BLE peripheral (see the module docstring)."""

    backend: ClassVar[str] = "ble"
    settings_model: ClassVar[Mapping[str, type[Any]]] = SETTINGS

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        super().__init__(thing, thing_type, settings, **inject)
        if thing_type not in CHANNELS:
            raise DriverConfigError(f"thing {thing!r}: ble driver has no {thing_type!r} device")
        unknown = sorted(set(inject) - {"client_factory"})
        if unknown:
            raise DriverConfigError(f"thing {thing!r}: ble driver cannot inject {unknown}")
        self._client_factory = inject.get("client_factory")
        st = self.read_settings(SETTINGS[thing_type])
        self.address = st.address.upper()
        self.adapter = st.adapter
        self.mode = st.mode
        self.connect_timeout_s = st.connect_timeout_s
        self.io_timeout_s = st.io_timeout_s
        self.backoff = Backoff(initial_s=st.reconnect_initial_s, cap_s=st.reconnect_cap_s)
        self.uuids: dict[str, str] = {}
        for ch in CHANNELS[thing_type]:
            table: Characteristic | None = getattr(st, ch)
            uuid = DEFAULT_UUID[ch] if table is None else table.uuid.lower()
            self.uuids[ch] = sig_uuid(int(uuid, 16)) if len(uuid) == 4 else uuid
        self.client: Any = None
        self.connected = asyncio.Event()
        self.down_reason = "not connected yet"
        self.connects = 0
        self._running = False
        self._tasks = TaskOwner(f"ble {thing}")  # the link supervisor: restarted if it dies
        self._lost = asyncio.Event()

    def channels(self) -> Sequence[str]:
        return CHANNELS[self.thing_type]

    # -- lifecycle
    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            await self._connect()
        except DriverConfigError:
            self._running = False
            raise
        except DriverError as exc:
            self._set_down(str(exc))
        self._tasks.keep_running(self._supervise, name=f"ble-{self.thing}-link")

    async def stop(self) -> None:
        """Safe state (best effort; the peripheral must also go safe on link loss), disconnect."""
        await self._tasks.close()  # a cancellation of stop() itself propagates
        if self.connected.is_set():
            for ch in self.channels():
                if ch in WRITABLE:
                    with contextlib.suppress(DriverError):
                        await self.write(ch, ch == "bolt")
        self._running = False
        await self._drop_client()

    async def _connect(self) -> None:
        client = self._make_client()
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1.0):
                await client.connect()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise self._classify(exc) from None
        self.client = client
        try:
            if self.mode == "notify":
                for ch in self.channels():
                    if ch != "bolt":  # the lock watches bolt_sensor, not its own command
                        await self._notify(client, ch)
        except Exception as exc:
            await self._drop_client()
            raise self._classify(exc) from None
        self.connects += 1
        self._lost.clear()
        self.down_reason = ""
        self.connected.set()

    def _make_client(self) -> Any:
        if self._client_factory is not None:
            return self._client_factory(self)
        from bleak import BleakClient

        return BleakClient(
            self.address,
            disconnected_callback=self._on_disconnect,
            timeout=self.connect_timeout_s,
            bluez={"adapter": self.adapter},
        )

    async def _notify(self, client: Any, channel: str) -> None:
        char = client.services.get_characteristic(self.uuids[channel])
        if char is None:
            raise DriverConfigError(
                f"thing {self.thing!r}: driver setting '{channel}.uuid': the device "
                f"{self.address} has no characteristic {self.uuids[channel]}"
            )
        if "notify" not in char.properties and "indicate" not in char.properties:
            return  # read only: polled by the Thing

        def on_value(_char: Any, data: bytearray, ch: str = channel) -> None:
            try:
                self._emit(ch, Reading(decode(ch, data)))
            except DriverError as exc:
                self._emit(ch, DriverError(f"thing {self.thing!r}: {exc}"))

        await client.start_notify(char, on_value)

    def _classify(self, exc: BaseException) -> DriverError:
        """A bleak failure as a DriverError; a missing adapter / BlueZ is a config error."""
        name = type(exc).__name__
        text = str(exc) or name
        config_like = any(
            s in text
            for s in (
                "No Bluetooth adapters",
                "org.freedesktop.DBus.Error.ServiceUnknown",
                "No such file or directory",
                "powered",
                "not available",
                "not found",
            )
        )
        out_of_range = "Device with address" in text or "was not found" in text
        if name == "BleakBluetoothNotAvailableError" or (config_like and not out_of_range):
            return DriverConfigError(
                f"thing {self.thing!r}: Bluetooth adapter {self.adapter} not available "
                f"({text}); {ADAPTER_FIX}"
            )
        if isinstance(exc, DriverError):
            return exc
        if isinstance(exc, TimeoutError):
            text = f"no answer within {self.connect_timeout_s} s (out of range or powered off)"
        return DriverError(f"ble {self.address}: {text}")

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        self.connected.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.disconnect()

    def _on_disconnect(self, _client: Any) -> None:
        """bleak's disconnected callback (on the event loop)."""
        if _client is not self.client or not self._running:
            return
        self._set_down(f"ble {self.address}: disconnected")

    def _set_down(self, reason: str) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self.down_reason = reason
        self._lost.set()
        if was_up or self._running:
            log.warning("thing %s: %s", self.thing, reason)
            for ch in self.channels():
                self._emit(ch, DriverError(f"thing {self.thing!r}: {reason}"))

    async def _supervise(self) -> None:
        """Reconnect with capped, jittered backoff after every disconnection."""
        while True:
            await self._lost.wait()
            await self._drop_client()
            while self._running:
                await asyncio.sleep(self.backoff.next())
                try:
                    await self._connect()
                except DriverError as exc:  # incl. DriverConfigError: the adapter went away
                    self.down_reason = str(exc)
                    continue
                self.backoff.reset()
                log.info("thing %s: ble %s reconnected", self.thing, self.address)
                break

    # -- I/O
    async def read(self, channel: str) -> Reading:
        client = self._need(channel)
        try:
            async with asyncio.timeout(self.io_timeout_s):
                data = await client.read_gatt_char(self.uuids[channel])
        except DriverError:
            raise
        except TimeoutError:
            raise DriverError(
                f"thing {self.thing!r}: {channel}: no GATT answer within {self.io_timeout_s} s"
            ) from None
        except Exception as exc:
            raise DriverError(f"thing {self.thing!r}: {channel}: read failed: {exc}") from None
        try:
            return Reading(decode(channel, data))
        except DriverError as exc:
            raise DriverError(f"thing {self.thing!r}: {exc}") from None

    async def write(self, channel: str, value: Value) -> None:
        client = self._need(channel)
        if channel not in WRITABLE:
            raise DriverConfigError(f"thing {self.thing!r}: ble channel {channel!r} is read-only")
        if not isinstance(value, bool):
            raise DriverError(f"thing {self.thing!r}: {channel} takes true or false")
        try:
            async with asyncio.timeout(self.io_timeout_s):
                await client.write_gatt_char(
                    self.uuids[channel], bytes([1 if value else 0]), response=True
                )
        except TimeoutError:
            raise DriverError(
                f"thing {self.thing!r}: {channel}: write not confirmed within {self.io_timeout_s} s"
            ) from None
        except Exception as exc:
            raise DriverError(f"thing {self.thing!r}: {channel}: write failed: {exc}") from None

    def _need(self, channel: str) -> Any:
        if channel not in self.channels():
            raise DriverConfigError(f"thing {self.thing!r}: ble driver has no channel {channel!r}")
        if not self._running:
            raise DriverError(f"thing {self.thing!r}: ble driver is not running")
        if not self.connected.is_set() or self.client is None:
            raise DriverError(f"thing {self.thing!r}: ble link down: {self.down_reason}")
        return self.client
