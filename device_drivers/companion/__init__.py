"""Backend "companion": Things on ESP32 boards running the MicroPython companion.

- `driver`  CompanionDriver, the Driver a Thing uses (entry point `companion`)
- `hub`     CompanionHub / DeviceLink: sessions, commands, link state, serial transport
- `mqtt`    MqttConnection: one paho-mqtt client per broker, capped jittered reconnect

The frame codec and session are `micropython_client.frames`, the very module the boards run.
"""

from device_drivers.companion.driver import CompanionDriver
from device_drivers.companion.hub import CompanionHub, DeviceLink, Timing, topic_root
from device_drivers.companion.mqtt import BrokerSettings, MqttConnection, parse_broker

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
