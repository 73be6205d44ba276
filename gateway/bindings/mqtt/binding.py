"""W3C WoT MQTT binding, publish side, and Home Assistant discovery.

Topics (TD forms: `gateway.wot.td.MqttForms`; docs/companion.md, section 7):

    streembit/<gw>/status                          "online" (retained); last will "offline"
    streembit/<gw>/things/<thing>/properties/<p>   the property's JSON value, retained, QoS 1
    streembit/<gw>/things/<thing>/events/<e>       each event's data as JSON, QoS 1
    <discovery prefix>/<component>/<node>/<p>/config   Home Assistant discovery, retained

Values are published when they change (the Things' buses) and all again after every
(re)connect, so a broker restarted without persistence is refilled at once. A property that
cannot be read (a sensor fault) is not published: its retained value is removed (an empty
retained message), and `fault` says why. Nothing is accepted from the broker (see
`gateway.companion.discovery` for why).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from device_drivers.companion.mqtt import MqttConnection
from gateway.companion.broker import gateway_root, things_root
from gateway.companion.discovery import discovery_messages
from gateway.errors import StreembitError
from gateway.tasks import TaskOwner
from gateway.things.base import Thing
from gateway.things.bus import Subscription

log = logging.getLogger(__name__)


def status_topic(gateway_id: str) -> str:
    return f"{gateway_root(gateway_id)}/status"


class MqttBinding:
    def __init__(
        self,
        connection: MqttConnection,
        things: Mapping[str, Thing],
        *,
        gateway_id: str,
        gateway_name: str,
        publish_things: bool = True,
        discovery: bool = True,
        discovery_prefix: str = "homeassistant",
    ) -> None:
        self.conn = connection
        self.things = dict(things)
        self.gateway_id = gateway_id
        self.gateway_name = gateway_name
        self.publish_things = publish_things
        self.discovery = discovery
        self.prefix = discovery_prefix
        self.root = things_root(gateway_id)
        self.values: dict[str, bytes] = {}  # topic -> last retained payload
        self._subs: list[Subscription] = []
        self._tasks = TaskOwner("mqtt binding", logger=log)
        self.published = 0

    def topic(self, thing: str, kind: str, name: str) -> str:
        return f"{self.root}/{thing}/{kind}/{name}"

    async def start(self) -> None:
        self.conn.on_state(self._on_state)
        await self.conn.start()
        if self.publish_things:
            for thing in self.things.values():
                for prop in thing.properties:
                    await self._refresh(thing, prop)
                    self._watch(thing, "property", prop)
                for event in thing.events:
                    self._watch(thing, "event", event)
        if self.conn.connected:
            self._publish_all()

    async def stop(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        await self._tasks.close()
        self.conn.publish(status_topic(self.gateway_id), b"offline", retain=True)
        await self.conn.stop()

    def _watch(self, thing: Thing, kind: str, name: str) -> None:
        sub = thing.bus.subscribe("property" if kind == "property" else "event", name)
        self._subs.append(sub)
        self._tasks.spawn(self._pump(thing, kind, name, sub), name=f"mqtt-{thing.name}-{name}")

    async def _pump(self, thing: Thing, kind: str, name: str, sub: Subscription) -> None:
        async for note in sub:
            if kind == "property":
                self._set(self.topic(thing.name, "properties", name), note.data)
            else:
                payload = json.dumps(note.data, separators=(",", ":"), default=str).encode()
                if self.conn.publish(self.topic(thing.name, "events", name), payload):
                    self.published += 1

    async def _refresh(self, thing: Thing, prop: str) -> None:
        topic = self.topic(thing.name, "properties", prop)
        try:
            value: Any = await thing.read_property(prop)
        except StreembitError:
            self.values[topic] = b""  # unreadable: no retained value (the fault says why)
            self.conn.publish(topic, b"", retain=True)
            return
        self._set(topic, value)

    def _set(self, topic: str, value: Any) -> None:
        payload = json.dumps(value, separators=(",", ":"), default=str).encode()
        self.values[topic] = payload
        if self.conn.publish(topic, payload, retain=True):
            self.published += 1

    def _publish_all(self) -> None:
        self.conn.publish(status_topic(self.gateway_id), b"online", retain=True)
        if self.discovery:
            for topic, payload in discovery_messages(
                self.things.values(),
                gateway_id=self.gateway_id,
                gateway_name=self.gateway_name,
                prefix=self.prefix,
            ):
                self.conn.publish(topic, payload, retain=True)
        for topic, payload in list(self.values.items()):
            self.conn.publish(topic, payload, retain=True)

    def _on_state(self, up: bool) -> None:
        if up:
            with contextlib.suppress(Exception):
                self._publish_all()
