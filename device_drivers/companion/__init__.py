"""Backend "companion": Things on ESP32 boards running the MicroPython companion.

- `driver`  CompanionDriver, the Driver a Thing uses (entry point `companion`)
- `hub`     CompanionHub / DeviceLink: sessions, commands, link state, serial transport
- `mqtt`    MqttConnection: one paho-mqtt client per broker, capped jittered reconnect
- `broker`  BrokerSettings, parse_broker, topic_root: names only (no paho)

The names below load their module on first use (PEP 562): a gateway without companion
boards or MQTT never loads paho.

The frame codec and session are `micropython_client.frames`, the very module the boards run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device_drivers.companion.broker import BrokerSettings, parse_broker, topic_root
    from device_drivers.companion.driver import CompanionDriver
    from device_drivers.companion.hub import CompanionHub, DeviceLink, Timing
    from device_drivers.companion.mqtt import MqttConnection

_HOME = {
    "BrokerSettings": "broker",
    "parse_broker": "broker",
    "topic_root": "broker",
    "CompanionDriver": "driver",
    "CompanionHub": "hub",
    "DeviceLink": "hub",
    "Timing": "hub",
    "MqttConnection": "mqtt",
}

__all__ = [
    "BrokerSettings",
    "CompanionDriver",
    "CompanionHub",
    "DeviceLink",
    "MqttConnection",
    "Timing",
    "parse_broker",
    "topic_root",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
