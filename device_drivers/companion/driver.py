"""Backend "companion": a Thing whose channels live on an ESP32 running the MicroPython companion.

Settings (`[things.driver_settings]`): `CompanionSettings` below (reference: docs/config.md):
the paired board's `device`, a `channels` map (Thing channel -> board channel), and the link,
a `broker` (the gateway connects there with its own broker account, one connection for every
companion Thing on that broker) or a `serial` port.

Injected by the gateway (`gateway.companion.hubs`): `hub`, the CompanionHub that holds the
per-device keys and the broker connection. A test may inject its own hub.

Channels per Thing type are those of `device_drivers.base`; writable ones are the outputs (switch
output, thermostat heater, lock bolt). Reads return the board's last report with its arrival time
(the Things judge staleness); a link that is down or a sensor the board reports as failing is a
DriverError. A write completes when the board acknowledges it; the board puts its outputs in
their safe state by itself when the link is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from device_drivers.base import Claim, Driver, Reading, Value
from device_drivers.companion.hub import CompanionHub, DeviceLink
from device_drivers.errors import DriverConfigError, DriverError
from device_drivers.settings import doc, setting

CHANNELS: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt", "bolt_sensor", "door"),
    "thermostat": ("temperature", "heater"),
    "switch": ("output",),
    "sensor": ("temperature", "humidity", "contact"),
}
WRITABLE: Mapping[str, tuple[str, ...]] = {
    "lock": ("bolt",),
    "thermostat": ("heater",),
    "switch": ("output",),
    "sensor": (),
}


@dataclass(frozen=True)
class CompanionSettings:
    device: str = field(
        metadata=doc("the paired board's name (`streembit-gateway companion pair`)")
    )
    channels: Mapping[str, str] = field(
        default_factory=dict,
        metadata=doc(
            'Thing channel -> board channel, e.g. `{output = "relay"}` for a switch',
            shown="the same names",
        ),
    )
    broker: str | None = setting(
        None,
        '`"mqtts://HOST:PORT"` (or `mqtt://`, or `HOST:PORT`): the broker the board uses; '
        "one gateway connection per broker",
        shown="`[gateway.mqtt] broker`",
    )
    serial: str | None = setting(
        None, 'a serial port (e.g. `"/dev/ttyUSB0"`) instead of a broker: the USB link'
    )


class CompanionDriver(Driver):
    backend: ClassVar[str] = "companion"
    settings_model: ClassVar[Mapping[str, type[Any]]] = {"*": CompanionSettings}

    def __init__(
        self, thing: str, thing_type: str, settings: Mapping[str, Any], **inject: Any
    ) -> None:
        super().__init__(thing, thing_type, settings, **inject)
        if thing_type not in CHANNELS:
            raise DriverConfigError(f"thing {thing!r}: companion has no {thing_type!r} Things")
        st = self.read_settings(CompanionSettings)
        self.device = st.device
        self.serial = st.serial
        mapping = st.channels
        extra = sorted(set(mapping) - set(CHANNELS[thing_type]))
        if extra:
            raise DriverConfigError(
                f"thing {thing!r}: a {thing_type} has no channel(s) {', '.join(extra)} "
                f"(channels: {', '.join(CHANNELS[thing_type])})"
            )
        self.map: dict[str, str] = {ch: mapping.get(ch, ch) for ch in CHANNELS[thing_type]}
        self.reverse: dict[str, list[str]] = {}
        for ch, board_ch in self.map.items():
            self.reverse.setdefault(board_ch, []).append(ch)
        hub = inject.get("hub")
        if not isinstance(hub, CompanionHub):
            raise DriverConfigError(
                f"thing {thing!r}: the companion driver needs the gateway's companion hub"
            )
        self.hub = hub
        self.link: DeviceLink = hub.device(self.device)  # DriverConfigError when not paired
        self._remove: Any = None
        self._running = False

    def channels(self) -> Sequence[str]:
        return CHANNELS[self.thing_type]

    def claims(self) -> Sequence[Claim]:
        """A board on a serial port owns the port; Things of the same board share it."""
        if self.serial is not None:
            return (Claim(f"serial:{self.serial}", "serial", share=f"companion:{self.device}"),)
        return ()

    async def start(self) -> None:
        if self._running:
            return
        self._remove = self.link.add_listener(self._on_board)
        await self.hub.start()
        self._running = True

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._remove is not None:
            self._remove()
            self._remove = None
        await self.hub.stop()

    async def read(self, channel: str) -> Reading:
        self._check(channel)
        return self.link.reading(self.map[channel])

    async def write(self, channel: str, value: Value) -> None:
        self._check(channel)
        if channel not in WRITABLE[self.thing_type]:
            raise DriverConfigError(f"thing {self.thing!r}: channel {channel!r} is read-only")
        if not isinstance(value, bool):
            raise DriverError(f"thing {self.thing!r}: {channel} takes true or false")
        board_ch = self.map[channel]
        ack = await self.link.command({board_ch: value})
        got = ack.get("v", {}).get(board_ch) if isinstance(ack.get("v"), dict) else None
        if got is not value:
            raise DriverError(
                f"thing {self.thing!r}: the board acknowledged {board_ch}={got!r}, not {value}"
            )

    def _check(self, channel: str) -> None:
        if channel not in self.map:
            raise DriverConfigError(f"thing {self.thing!r}: companion has no channel {channel!r}")
        if not self._running:
            raise DriverError(f"thing {self.thing!r}: companion driver is not running")

    def _on_board(self, board_channel: str, item: Reading | DriverError) -> None:
        for channel in self.reverse.get(board_channel, ()):
            self._emit(channel, item)
