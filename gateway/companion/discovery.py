"""Home Assistant MQTT discovery messages for the gateway's Things.

For every Thing property the MQTT binding publishes (retained JSON at
`streembit/<gw>/things/<thing>/properties/<p>`), one retained discovery config at
`<prefix>/<component>/<node_id>/<property>/config`, so a Home Assistant on the same broker shows
the Thing as a device with one entity per property:

    number with unit degree Celsius    sensor, device_class temperature, °C
    number with unit percent           sensor, device_class humidity, %
    other numbers                      sensor
    boolean "contact"/"door"           binary_sensor, device_class door (JSON true = closed)
    other booleans                     binary_sensor (JSON true = on)
    string with an enum                sensor, device_class enum, options
    "fault" (string or null)           sensor, entity_category diagnostic ("ok" when null)

Availability is the gateway's status topic (`streembit/<gw>/status`, "online", last will
"offline"). The entities are read-only on purpose: a command from the broker cannot be tied to
a person, so writes and actions stay on the HTTP and P2P bindings, where the owner-signed ACL
decides and the audit log records who.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.companion.broker import gateway_root, things_root
from gateway.things.base import PropertySpec, Thing

ORIGIN = {"name": "streembit-gateway", "sw_version": "0.1.0"}
_NODE_OK = re.compile(r"[^A-Za-z0-9_-]")


def node_id(gateway_id: str, thing: str) -> str:
    return _NODE_OK.sub("_", f"streembit_{gateway_id[:12]}_{thing}")


def _entity(prop: str, spec: PropertySpec) -> tuple[str, dict[str, Any]] | None:
    schema: Mapping[str, Any] = spec.schema
    typ = schema.get("type")
    unit = schema.get("unit")
    if prop == "fault":
        return "sensor", {
            "entity_category": "diagnostic",
            "value_template": "{{ value_json if value_json else 'ok' }}",
            "icon": "mdi:alert-circle-outline",
        }
    if typ in ("number", "integer"):
        out: dict[str, Any] = {"value_template": "{{ value_json }}", "state_class": "measurement"}
        if unit == "degree Celsius":
            out.update(device_class="temperature", unit_of_measurement="°C")
        elif unit == "percent":
            out.update(device_class="humidity", unit_of_measurement="%")
        return "sensor", out
    if typ == "boolean":
        if prop in ("contact", "door"):  # JSON true = closed; HA "on" = open
            return "binary_sensor", {"device_class": "door", "payload_on": "false",
                                     "payload_off": "true"}  # fmt: skip
        return "binary_sensor", {"payload_on": "true", "payload_off": "false"}
    if typ == "string" and isinstance(schema.get("enum"), list):
        return "sensor", {
            "device_class": "enum",
            "options": [str(v) for v in schema["enum"]],
            "value_template": "{{ value_json }}",
        }
    return None


def discovery_messages(
    things: Iterable[Thing], *, gateway_id: str, gateway_name: str, prefix: str
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every retained discovery config for THINGS."""
    out: list[tuple[str, bytes]] = []
    status = f"{gateway_root(gateway_id)}/status"
    for thing in things:
        node = node_id(gateway_id, thing.name)
        device = {
            "identifiers": [node],
            "name": thing.title,
            "manufacturer": "Streembit",
            "model": f"{thing.type_name} ({gateway_name})",
        }
        for prop, spec in thing.properties.items():
            entity = _entity(prop, spec)
            if entity is None:
                continue
            component, fields = entity
            cfg: dict[str, Any] = {
                "name": spec.title,
                "unique_id": f"{node}_{prop}",
                "object_id": f"{thing.name}_{prop}".replace("-", "_"),
                "state_topic": f"{things_root(gateway_id)}/{thing.name}/properties/{prop}",
                "availability_topic": status,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device,
                "origin": ORIGIN,
                **fields,
            }
            topic = f"{prefix}/{component}/{node}/{_NODE_OK.sub('_', prop)}/config"
            out.append((topic, json.dumps(cfg, separators=(",", ":")).encode()))
    return out
