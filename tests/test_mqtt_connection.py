"""device_drivers/companion/mqtt.py against a real mosquitto: every socket write happens on the
connection's own thread (paho's public socket-write hook, no private attribute), also for
messages published from the event loop's thread, and none is lost."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from device_drivers.companion.mqtt import BrokerSettings, MqttConnection
from tests.test_doctor import mosquitto

MESSAGES = 200
WAIT_S = 10.0


async def test_publish_from_the_loop_is_written_by_the_connection_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: set[str] = set()
    loop_write = paho.Client.loop_write

    def recorded(self: paho.Client) -> paho.MQTTErrorCode:
        writers.add(threading.current_thread().name)
        return loop_write(self)

    monkeypatch.setattr(paho.Client, "loop_write", recorded)
    with mosquitto(tmp_path, anonymous=True) as port:
        conn = MqttConnection(BrokerSettings("127.0.0.1", port, client_id="t"), name="t")
        got: list[bytes] = []
        done = asyncio.Event()

        def on_message(topic: str, payload: bytes) -> None:
            got.append(payload)
            if len(got) == MESSAGES:
                done.set()

        conn.subscribe("t/#", on_message)
        await conn.start()
        try:
            assert await conn.wait_connected(WAIT_S)
            await asyncio.sleep(0.2)  # the SUBACK
            for i in range(MESSAGES):
                assert conn.publish("t/x", str(i).encode())
            await asyncio.wait_for(done.wait(), WAIT_S)
        finally:
            await conn.stop()
    assert got == [str(i).encode() for i in range(MESSAGES)]
    assert writers == {"mqtt-t"}, writers  # never the event loop's thread
