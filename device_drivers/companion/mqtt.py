"""One paho-mqtt connection in its own thread, with capped, jittered reconnect.

Callbacks (messages, connection state) are handed to the asyncio loop that called `start()`.
Subscriptions are renewed on every (re)connect. Shared by the companion hub and the gateway's
MQTT binding: one client per broker, because paho's loop_stop/disconnect cost about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device_drivers.backoff import Backoff
from device_drivers.companion.broker import BrokerSettings

log = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 0.1  # paho's select timeout: how soon the thread notices stop()
CONNECT_TIMEOUT_S = 5.0  # TCP + TLS + CONNACK
STOP_TIMEOUT_S = 2.0  # joining the thread at stop()
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0

MessageCallback = Callable[[str, bytes], None]
StateCallback = Callable[[bool], None]


def _write_in_loop(client: paho.Client, userdata: object, sock: object) -> None:
    """paho's on_socket_register_write: `loop()` sends what is queued (see MqttConnection)."""


class MqttConnection:
    """A paho client run by a thread of its own; see the module docstring."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        name: str = "mqtt",
        will: tuple[str, bytes, bool] | None = None,
        backoff: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S),
    ) -> None:
        self.settings = settings
        self.name = name
        self._subs: dict[str, tuple[int, MessageCallback]] = {}
        self._state_cbs: list[StateCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._backoff = Backoff(initial_s=backoff[0], cap_s=backoff[1])
        self.connects = 0
        self._users = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=True,
            reconnect_on_failure=False,
        )
        self.client.connect_timeout = CONNECT_TIMEOUT_S
        if settings.username is not None:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            ctx = ssl.create_default_context(cafile=settings.ca_file)
            self.client.tls_set_context(ctx)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=will[2])
        # Every socket write happens on this connection's thread. With a socket-write callback
        # registered (paho's hook for an external event loop), publish() and subscribe() from
        # another thread only queue the packet and wake `loop()`, which writes it; without it
        # they write from the caller's thread, and two threads writing one TLS socket corrupt
        # the stream ("bad record mac"). The loop polls for writability itself: nothing to do.
        self.client.on_socket_register_write = _write_in_loop
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- public
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        self._subs[topic_filter] = (qos, callback)
        if self.connected:
            self.client.subscribe(topic_filter, qos)

    def on_state(self, callback: StateCallback) -> None:
        self._state_cbs.append(callback)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message; False (nothing sent) while not connected."""
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    async def start(self) -> None:
        """Start (or, when already started, count one more user of) the connection."""
        self._users += 1
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.name}", daemon=True)
        self._thread.start()

    async def wait_connected(self, within_s: float) -> bool:
        deadline = asyncio.get_running_loop().time() + within_s
        while not self.connected:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self) -> None:
        """One user less; the last one stops the thread and disconnects."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)

    # -- the thread
    def _run(self) -> None:
        c = self.client
        s = self.settings
        while not self._stop.is_set():
            try:
                c.connect(s.host, s.port, keepalive=s.keepalive_s)
            except (OSError, ssl.SSLError) as exc:
                self._wait_retry(f"connect to {s.host}:{s.port} failed: {exc}")
                continue
            while not self._stop.is_set():
                rc = c.loop(timeout=LOOP_TIMEOUT_S)
                if rc != paho.MQTT_ERR_SUCCESS:
                    break
            if self._stop.is_set():
                with contextlib.suppress(Exception):
                    c.disconnect()
                    c.loop(timeout=0.01)
                break
            self._set_connected(False)
            with contextlib.suppress(Exception):
                c.disconnect()
            self._wait_retry("connection lost")
        self._set_connected(False)
        with contextlib.suppress(Exception):
            sock = c.socket()
            if sock is not None:
                sock.close()

    def _wait_retry(self, why: str) -> None:
        delay = self._backoff.next()
        log.warning("mqtt %s: %s; retrying in %.2f s", self.name, why, delay)
        self._stop.wait(delay)

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("mqtt %s: broker refused the connection: %s", self.name, rc)
            client.disconnect()
            return
        self.connects += 1
        self._backoff.reset()
        sock = client.socket()
        if isinstance(sock, socket.socket):  # small packets: no Nagle delay (~40 ms a hop)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for topic_filter, (qos, _cb) in list(self._subs.items()):
            client.subscribe(topic_filter, qos)
        self._set_connected(True)

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        self._set_connected(False)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        loop = self._loop
        if loop is None:
            return
        topic, payload = msg.topic, bytes(msg.payload)
        for topic_filter, (_qos, cb) in list(self._subs.items()):
            if paho.topic_matches_sub(topic_filter, topic):
                with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                    loop.call_soon_threadsafe(cb, topic, payload)

    def _set_connected(self, up: bool) -> None:
        was = self._connected.is_set()
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        loop = self._loop
        if was != up and loop is not None:
            for cb in list(self._state_cbs):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(cb, up)
