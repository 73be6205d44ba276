"""Devices as WoT Things, with their safety logic: lock, thermostat, switch, sensor."""

from gateway.things.base import (
    ActionSpec,
    EventSpec,
    PropertySpec,
    Thing,
    check_value,
)
from gateway.things.bus import Bus, Notification, Subscription
from gateway.things.lock import Lock
from gateway.things.registry import THING_CLASSES, build_thing, build_things
from gateway.things.sensor import Sensor
from gateway.things.switch import Switch
from gateway.things.thermostat import Thermostat

__all__ = [
    "THING_CLASSES",
    "ActionSpec",
    "Bus",
    "EventSpec",
    "Lock",
    "Notification",
    "PropertySpec",
    "Sensor",
    "Subscription",
    "Switch",
    "Thermostat",
    "Thing",
    "build_thing",
    "build_things",
    "check_value",
]
