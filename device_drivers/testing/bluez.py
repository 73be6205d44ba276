"""A fake BlueZ on a private D-Bus, so the real bleak BlueZ backend runs unmodified.

    async with private_bus(tmp_path) as address:         # dbus-daemon --session on a socket
        with system_bus(address):                         # DBUS_SYSTEM_BUS_ADDRESS, restored after
            fake = FakeBluez("lock")
            await fake.start(address)                     # owns org.bluez: hci0 + one device
            ...  BleDriver(..., {"address": fake.address}) ...
            fake.set_door(False)                          # notifies the door characteristic
            fake.go_away(); fake.come_back()              # out of range, and back
            await fake.stop()

It serves ObjectManager.GetManagedObjects, Properties Get / GetAll / Set, Adapter1
(SetDiscoveryFilter, StartDiscovery, StopDiscovery, RemoveDevice), Device1 (Connect, Disconnect),
GattCharacteristic1 (ReadValue, WriteValue, StartNotify, StopNotify) with PropertiesChanged on
`Value` for notifications. While discovering it re-announces the device every 50 ms (bleak
subscribes after StartDiscovery and would miss a single InterfacesAdded). Object paths follow
BlueZ (`/org/bluez/hci0/dev_XX_XX.../service000a/char000b`): bleak takes the handle from them.
The peripheral behaves like the firmware hardware/ describes: on a lost link it puts its
actuator in the safe state (bolt thrown; heater, output off).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from device_drivers.ble import (
    ACTUATOR_SERVICE,
    ACTUATOR_UUID,
    BOLT_SENSOR_UUID,
    CONTACT_UUID,
    DOOR_UUID,
    ESS_SERVICE,
    HUMIDITY_UUID,
    TEMPERATURE_UUID,
)
from device_drivers.tasks import TaskOwner

BLUEZ = "org.bluez"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
HCI = "/org/bluez/hci0"


@contextlib.asynccontextmanager
async def private_bus(folder: Path) -> AsyncIterator[str]:
    """A private dbus-daemon (session config: anyone may own any name); yields its address."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        raise RuntimeError("dbus-daemon is missing: apt install dbus-daemon (or dbus)")
    sock = Path(folder) / "bus.sock"
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--session",
        "--nofork",
        "--nopidfile",
        "--print-address",
        f"--address=unix:path={sock}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None  # noqa: S101 (PIPE was asked for)
        async with asyncio.timeout(5.0):
            line = await proc.stdout.readline()
        yield line.decode().strip()
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@contextlib.contextmanager
def system_bus(address: str) -> Iterator[None]:
    """DBUS_SYSTEM_BUS_ADDRESS set to ADDRESS inside the block only (bleak reads it)."""
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


class FakeBluez:
    """hci0 with one peripheral serving the characteristics a Thing of THING_TYPE uses."""

    def __init__(
        self,
        thing_type: str,
        address: str = "C0:FF:EE:00:00:01",
        *,
        adapter: bool = True,
        notify: bool = True,
        name: str = "streembit-fake",
    ) -> None:
        from dbus_fast import Variant

        self.V = Variant
        self.thing_type = thing_type
        self.address = address
        self.adapter = adapter
        self.name = name
        self.dev = f"{HCI}/dev_{address.replace(':', '_')}"
        self.reachable = True
        self.connected = False
        self.connects = 0
        self.writes: list[tuple[str, bytes]] = []
        self.bus: Any = None
        self._announce: asyncio.Task[None] | None = None
        self._tasks = TaskOwner("fake BlueZ")
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.paths: dict[str, str] = {}  # uuid -> characteristic path
        self.values: dict[str, bytes] = {}
        self.notifying: set[str] = set()
        self.safe_actuator = b"\x01" if thing_type == "lock" else b"\x00"
        self._build(notify)

    # -- object tree
    def _build(self, notify: bool) -> None:
        v = self.V
        if self.adapter:
            self.objects[HCI] = {
                ADAPTER: {
                    "Address": v("s", "00:1A:7D:DA:71:13"),
                    "Name": v("s", "fake-hci0"),
                    "Alias": v("s", "fake-hci0"),
                    "Powered": v("b", True),
                    "Discovering": v("b", False),
                    "Roles": v("as", ["central", "peripheral"]),
                    "UUIDs": v("as", []),
                }
            }
        chars: list[tuple[str, str, bytes, list[str]]] = []  # service uuid, uuid, value, flags
        flags_in = ["read", "notify"] if notify else ["read"]
        if self.thing_type in ("thermostat", "sensor"):
            chars.append((ESS_SERVICE, TEMPERATURE_UUID, self._temp(20.0), flags_in))
        if self.thing_type == "sensor":
            chars.append((ESS_SERVICE, HUMIDITY_UUID, (4500).to_bytes(2, "little"), flags_in))
            chars.append((ACTUATOR_SERVICE, CONTACT_UUID, b"\x01", flags_in))
        if self.thing_type in ("lock", "thermostat", "switch"):
            chars.append(
                (ACTUATOR_SERVICE, ACTUATOR_UUID, self.safe_actuator, ["read", "write", "notify"])
            )
        if self.thing_type == "lock":
            chars.append((ACTUATOR_SERVICE, BOLT_SENSOR_UUID, b"\x01", flags_in))
            chars.append((ACTUATOR_SERVICE, DOOR_UUID, b"\x01", flags_in))
        self.objects[self.dev] = {
            DEVICE: {
                "Address": v("s", self.address),
                "AddressType": v("s", "public"),
                "Name": v("s", self.name),
                "Alias": v("s", self.name),
                "Adapter": v("o", HCI),
                "Connected": v("b", False),
                "ServicesResolved": v("b", False),
                "Paired": v("b", False),
                "Bonded": v("b", False),
                "Trusted": v("b", False),
                "Blocked": v("b", False),
                "LegacyPairing": v("b", False),
                "RSSI": v("n", -60),
                "UUIDs": v("as", sorted({c[0] for c in chars})),
                "ManufacturerData": v("a{qv}", {}),
                "ServiceData": v("a{sv}", {}),
            }
        }
        handle = 0x0A
        services: dict[str, str] = {}
        for svc_uuid, uuid, value, flags in chars:
            if svc_uuid not in services:
                spath = f"{self.dev}/service{handle:04x}"
                services[svc_uuid] = spath
                self.objects[spath] = {
                    SERVICE: {
                        "UUID": v("s", svc_uuid),
                        "Primary": v("b", True),
                        "Device": v("o", self.dev),
                        "Handle": v("q", handle),
                    }
                }
                handle += 1
            cpath = f"{services[svc_uuid]}/char{handle:04x}"
            self.objects[cpath] = {
                CHAR: {
                    "UUID": v("s", uuid),
                    "Service": v("o", services[svc_uuid]),
                    "Value": v("ay", value),
                    "Notifying": v("b", False),
                    "Flags": v("as", flags),
                    "Handle": v("q", handle),
                    "MTU": v("q", 247),
                }
            }
            self.paths[uuid] = cpath
            self.values[cpath] = value
            handle += 2

    @staticmethod
    def _temp(celsius: float) -> bytes:
        return round(celsius * 100).to_bytes(2, "little", signed=True)

    # -- lifecycle
    async def start(self, bus_address: str) -> FakeBluez:
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        self.bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
        self.bus.add_message_handler(self._handle)
        await self.bus.request_name(BLUEZ)
        return self

    async def stop(self) -> None:
        await self._tasks.close()
        if self.bus is not None:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await self.bus.wait_for_disconnect()
            self.bus = None

    # -- test hooks (event loop thread)
    def set_temperature(self, celsius: float) -> None:
        self._set_value(TEMPERATURE_UUID, self._temp(celsius))

    def set_temperature_raw(self, data: bytes) -> None:
        self._set_value(TEMPERATURE_UUID, data)

    def set_humidity(self, pct: float) -> None:
        self._set_value(HUMIDITY_UUID, round(pct * 100).to_bytes(2, "little"))

    def set_door(self, closed: bool) -> None:
        self._set_value(DOOR_UUID, b"\x01" if closed else b"\x00")

    def set_contact(self, closed: bool) -> None:
        self._set_value(CONTACT_UUID, b"\x01" if closed else b"\x00")

    def actuator(self) -> bool:
        return self.values[self.paths[ACTUATOR_UUID]] == b"\x01"

    def go_away(self) -> None:
        """Out of range / powered off: the link drops, connecting fails until come_back()."""
        self.reachable = False
        if self.connected:
            self._drop()

    def come_back(self) -> None:
        self.reachable = True

    # -- device behaviour
    def _drop(self) -> None:
        self.connected = False
        self.notifying.clear()
        if ACTUATOR_UUID in self.paths:  # the firmware's link-loss rule: safe state
            self._set_value(ACTUATOR_UUID, self.safe_actuator)
            if BOLT_SENSOR_UUID in self.paths:
                self._set_value(BOLT_SENSOR_UUID, self.safe_actuator)
        self._props(
            self.dev,
            DEVICE,
            {"ServicesResolved": self.V("b", False), "Connected": self.V("b", False)},
        )

    def _set_value(self, uuid: str, value: bytes) -> None:
        path = self.paths[uuid]
        self.values[path] = value
        self.objects[path][CHAR]["Value"] = self.V("ay", value)
        if path in self.notifying and self.connected:
            self._signal(
                path,
                PROPS,
                "PropertiesChanged",
                "sa{sv}as",
                [CHAR, {"Value": self.V("ay", value)}, []],
            )

    def _props(self, path: str, iface: str, changed: dict[str, Any]) -> None:
        self.objects[path][iface].update(changed)
        self._signal(path, PROPS, "PropertiesChanged", "sa{sv}as", [iface, changed, []])

    def _signal(self, path: str, iface: str, member: str, sig: str, body: list[Any]) -> None:
        from dbus_fast import Message

        if self.bus is not None and self.bus.connected:
            self.bus.send(Message.new_signal(path, iface, member, sig, body))

    async def _announce_loop(self) -> None:
        while True:
            self._signal(
                "/",
                OM,
                "InterfacesAdded",
                "oa{sa{sv}}",
                [self.dev, {DEVICE: self.objects[self.dev][DEVICE]}],
            )
            await asyncio.sleep(0.05)

    # -- D-Bus
    def _handle(self, msg: Any) -> Any:
        from dbus_fast import Message, MessageType

        if msg.message_type != MessageType.METHOD_CALL or msg.path is None:
            return None
        if msg.path != "/" and msg.path not in self.objects:
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownObject", msg.path)
        try:
            result = self._call(msg)
        except _Err as err:
            return Message.new_error(msg, err.name, err.text)
        if result is None:
            return Message.new_method_return(msg)
        sig, body = result
        return Message.new_method_return(msg, sig, body)

    def _call(self, msg: Any) -> tuple[str, list[Any]] | None:
        iface, member, body, path = msg.interface, msg.member, msg.body, msg.path
        if iface == OM and member == "GetManagedObjects":
            return "a{oa{sa{sv}}}", [self.objects]
        if iface == "org.freedesktop.DBus.Introspectable":
            return "s", ["<node></node>"]
        if iface == PROPS:
            props = self.objects.get(path, {}).get(body[0], {})
            if member == "GetAll":
                return "a{sv}", [props]
            if member == "Get" and body[1] in props:
                return "v", [props[body[1]]]
            if member == "Set":
                return None
            raise _Err("org.freedesktop.DBus.Error.InvalidArgs", "no such property")
        if iface == ADAPTER:
            if member == "StartDiscovery":
                self._props(HCI, ADAPTER, {"Discovering": self.V("b", True)})
                if self._announce is None or self._announce.done():
                    self._announce = self._tasks.spawn(
                        self._announce_loop(), name="fake-bluez-announce"
                    )
                return None
            if member == "StopDiscovery":
                if self._announce is not None:
                    self._announce.cancel()
                self._props(HCI, ADAPTER, {"Discovering": self.V("b", False)})
                return None
            if member in ("SetDiscoveryFilter", "RemoveDevice"):
                return None
            if member == "GetDiscoveryFilters":
                return "as", [["UUIDs", "RSSI", "Transport", "DuplicateData"]]
        if iface == DEVICE:
            if member == "Connect":
                if not self.reachable:
                    raise _Err("org.bluez.Error.Failed", "le-connection-abort-by-remote")
                self.connected = True
                self.connects += 1
                self._props(self.dev, DEVICE, {"Connected": self.V("b", True)})
                self._props(self.dev, DEVICE, {"ServicesResolved": self.V("b", True)})
                return None
            if member == "Disconnect":
                if self.connected:
                    self._drop()
                return None
            raise _Err("org.bluez.Error.NotSupported", member)
        if iface == CHAR:
            if not self.connected:
                raise _Err("org.bluez.Error.Failed", "Not connected")
            if member == "ReadValue":
                return "ay", [self.values[path]]
            if member == "WriteValue":
                value = bytes(body[0])
                self.writes.append((path, value))
                if path != self.paths.get(ACTUATOR_UUID):
                    raise _Err("org.bluez.Error.NotPermitted", "Write not permitted")
                if value not in (b"\x00", b"\x01"):
                    raise _Err("org.bluez.Error.InvalidValueLength", "one byte 0 or 1")
                self._set_value(ACTUATOR_UUID, value)
                if BOLT_SENSOR_UUID in self.paths:
                    self._set_value(BOLT_SENSOR_UUID, value)  # the bolt follows its motor
                return None
            if member == "StartNotify":
                self.notifying.add(path)
                self.objects[path][CHAR]["Notifying"] = self.V("b", True)
                return None
            if member == "StopNotify":
                self.notifying.discard(path)
                return None
        raise _Err("org.freedesktop.DBus.Error.UnknownMethod", f"{iface}.{member}")


class _Err(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text
