"""End to end with a real mosquitto: the gateway writes the broker's configuration (TLS, per-device
accounts, topic ACL), a companion board (the micropython_client modules on CPython, with machine,
socket and ssl shims) reports its temperature and switches its relay when a peer asks the
gateway over HTTP; forged, replayed and other-device frames are refused on both ends; the broker
restarts and both ends reconnect without losing an acknowledged command; a long outage puts the
relay in its safe state. One broker, gateway and board are shared by the tests of this module
(paho and umqtt connections cost time to set up and tear down)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from device_drivers.companion import BrokerSettings, CompanionHub, MqttConnection
from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant
from gateway.app import Gateway
from gateway.auth import issue_token
from gateway.companion.broker import load_credentials, write_broker_config
from gateway.companion.flash import board_config
from gateway.config import (
    GatewayConfig,
    HttpConfig,
    MqttConfig,
    SensorSafety,
    SwitchSafety,
    ThingConfig,
)
from gateway.identity import KeyPair, generate_keypair
from gateway.provisioning.pairing import companion_pairing
from gateway.state import StateDir
from micropython_client import frames
from tests.companion_support.harness import Board, FakeDS18X20, Mosquitto, free_port
from tests.helpers import ALL_OPS

pytestmark = pytest.mark.asyncio(loop_scope="module")

RELAY_PIN = 5
WAIT_S = 10.0


@dataclass
class Env:
    root: Path
    state: StateDir
    broker: Mosquitto
    port: int
    gw: Gateway
    board: Board
    http: aiohttp.ClientSession
    user: KeyPair
    pairing: dict[str, Any]
    other: dict[str, Any]
    ca_file: str

    @property
    def url(self) -> str:
        return self.gw.http_url

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.user, audience=self.gw.id)}"}

    def hub(self) -> CompanionHub:
        assert self.gw.companion is not None
        return next(iter(self.gw.companion.hubs.values()))

    async def read(self, thing: str, prop: str) -> tuple[int, Any]:
        async with self.http.get(
            f"{self.url}/things/{thing}/properties/{prop}", headers=self.auth()
        ) as r:
            return r.status, await r.json()

    async def write(self, thing: str, prop: str, value: Any) -> int:
        async with self.http.put(
            f"{self.url}/things/{thing}/properties/{prop}", headers=self.auth(), json=value
        ) as r:
            await r.read()
            return r.status

    async def client(self, user: str, password: str) -> MqttConnection:
        conn = MqttConnection(
            BrokerSettings("127.0.0.1", self.port, user, password, True, self.ca_file),
            name=f"test-{user}",
        )
        await conn.start()
        assert await conn.wait_connected(WAIT_S), f"{user} could not connect"
        return conn


async def until(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        res = cond()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("companion")
    state = StateDir(root / "state")
    gw_key, _ = state.init_identity()
    owner, user = generate_keypair(), generate_keypair()
    store = AclStore(state.path, gw_key.id)
    store.pin_owner(owner.public)
    acl = with_grant(new_acl(gw_key.id), Grant.for_key(user.public, things=["*"], ops=ALL_OPS))
    store.install(sign_acl(acl, owner))

    port = free_port()
    rec = companion_pairing(state, "kitchen", "127.0.0.1", port)
    other = companion_pairing(state, "garage", "127.0.0.1", port)
    files = write_broker_config(
        state, root / "broker", hosts=("127.0.0.1", "localhost"), port=port, bind="127.0.0.1",
        readers=("wot",), extra=("user root", "persistence false"),
    )  # fmt: skip
    broker = Mosquitto(files.conf, port, root / "mosquitto.log")
    broker.start()
    creds = load_credentials(state)
    assert creds is not None

    channels = {"relay": {"kind": "relay", "pin": RELAY_PIN, "safe": False},
                "temp": {"kind": "ds18b20", "pin": 4}}  # fmt: skip
    cfg = board_config(
        rec, channels=channels, ca_pem=Path(creds.ca_file).read_text(),
        extra={"report_ms": 300, "link_timeout_ms": 2500, "backoff_min_ms": 100,
               "backoff_max_ms": 800, "watchdog": True},
    )  # fmt: skip
    board = Board(cfg, root)
    board.start()

    settings = {"device": "kitchen", "broker": f"mqtts://127.0.0.1:{port}"}
    config = GatewayConfig(
        name="companion-test",
        state_dir=state.path,
        http=HttpConfig(host="127.0.0.1", port=0),
        mqtt=MqttConfig(broker=f"mqtts://127.0.0.1:{port}"),
        things=(
            ThingConfig(
                name="kitchen-relay", type="switch", title="Kitchen relay", driver="companion",
                driver_settings=MappingProxyType({**settings, "channels": {"output": "relay"}}),
                safety=SwitchSafety(),
            ),
            ThingConfig(
                name="kitchen-temp", type="sensor", title="Kitchen temperature",
                driver="companion",
                driver_settings=MappingProxyType({**settings, "channels": {"temperature": "temp"}}),
                safety=SensorSafety(kinds=("temperature",), stale_s=5.0, poll_s=0.5),
            ),
        ),
    )  # fmt: skip
    gw = await Gateway.create(config)
    await gw.start()
    async with aiohttp.ClientSession() as http:
        e = Env(root, state, broker, port, gw, board, http, user, rec, other, creds.ca_file)
        try:
            yield e
        finally:
            await gw.stop()
            board.stop()
            broker.stop()
    assert board.error is None, board.error


async def test_board_reports_temperature_and_switches_relay_on_command(env: Env) -> None:
    await until(lambda: env.hub().device("kitchen").online, "the board online")
    FakeDS18X20.temperature = 22.25

    async def temp_is() -> bool:
        status, value = await env.read("kitchen-temp", "temperature")
        return status == 200 and value == 22.25

    await until(temp_is, "the board's temperature through the gateway")
    assert env.board.pin(RELAY_PIN) == 0  # safe at boot
    assert await env.write("kitchen-relay", "on", True) == 204
    assert env.board.pin(RELAY_PIN) == 1  # the write returned after the board's acknowledgement
    assert await env.read("kitchen-relay", "on") == (200, True)
    assert await env.write("kitchen-relay", "on", False) == 204
    assert env.board.pin(RELAY_PIN) == 0
    # the per-device counter file survives: the gateway's and the board's counters moved on
    assert (env.state.path / "companion-counters").is_dir()


async def test_forged_replayed_and_other_device_frames_are_refused_both_ways(env: Env) -> None:
    assert await env.write("kitchen-relay", "on", True) == 204
    link = env.hub().device("kitchen")
    creds = load_credentials(env.state)
    assert creds is not None
    root = f"streembit/{env.gw.id}/companion"
    captured_up: list[bytes] = []
    captured_down: list[bytes] = []
    spy = await env.client(creds.username, creds.password)  # the gateway's own account
    try:
        spy.subscribe(f"{root}/kitchen/up", lambda _t, p: captured_up.append(p))
        spy.subscribe(f"{root}/kitchen/down", lambda _t, p: captured_down.append(p))
        await until(lambda: captured_up, "a board frame to replay")
        assert await env.write("kitchen-relay", "on", True) == 204  # a command to replay
        await until(lambda: captured_down, "a gateway frame to replay")

        other_key = bytes.fromhex(env.other["hmac_key"])
        forged_report = frames.encode(bytes(32), "R", "U", "kitchen", 10**12, b'{"v":{"temp":99}}')
        other_report = frames.encode(other_key, "R", "U", "garage", 10**12, b'{"v":{"temp":99}}')
        before = link.refused_total
        for frame in (forged_report, other_report, captured_up[0]):
            assert spy.publish(f"{root}/kitchen/up", frame)
        await until(lambda: link.refused_total >= before + 3, "the gateway refusing 3 frames")
        assert (await env.read("kitchen-temp", "temperature"))[1] != 99

        # to the board: a forged "relay off", an old command replayed, another board's command
        board_refused = env.board.comp.stats["refused"]
        forged_cmd = frames.encode(bytes(32), "C", "D", "kitchen", 10**12,
                                   b'{"id":1,"set":{"relay":false}}')  # fmt: skip
        other_cmd = frames.encode(other_key, "C", "D", "garage", 10**12,
                                  b'{"id":2,"set":{"relay":false}}')  # fmt: skip
        # a replay of the first "relay on" command must not be executed as a new one either
        for frame in (forged_cmd, other_cmd, captured_down[0]):
            assert spy.publish(f"{root}/kitchen/down", frame)
        await until(lambda: env.board.comp.stats["refused"] >= board_refused + 3,
                    "the board refusing 3 frames")  # fmt: skip
        assert env.board.pin(RELAY_PIN) == 1
    finally:
        await spy.stop()

    # the broker's ACL: another board's account cannot even publish on this board's topics
    garage = await env.client(env.other["username"], env.other["password"])
    try:
        before = link.refused_total
        garage.publish(f"{root}/kitchen/up", forged_report)
        garage.publish(f"{root}/kitchen/down", forged_cmd)
        await asyncio.sleep(0.3)
        assert link.refused_total == before  # never delivered
    finally:
        await garage.stop()


async def test_broker_restart_keeps_acknowledged_command_and_delivers_pending_one(env: Env) -> None:
    assert await env.write("kitchen-relay", "on", True) == 204
    assert env.board.pin(RELAY_PIN) == 1
    safe_before = env.board.comp.stats["safe"]
    connects = env.board.comp.stats["connects"]
    env.broker.stop()
    await asyncio.sleep(0.3)
    assert env.board.pin(RELAY_PIN) == 1  # a short outage keeps the acknowledged state
    pending = asyncio.create_task(env.write("kitchen-relay", "on", False))
    await asyncio.sleep(0.5)
    assert not pending.done()
    env.broker.start()
    assert await pending == 204  # retransmitted after the reconnect, acknowledged once
    assert env.board.pin(RELAY_PIN) == 0
    assert env.board.comp.stats["connects"] > connects
    assert env.board.comp.stats["safe"] == safe_before
    FakeDS18X20.temperature = 23.5

    async def fresh() -> bool:
        return (await env.read("kitchen-temp", "temperature")) == (200, 23.5)

    await until(fresh, "reports after the restart")


async def test_long_outage_puts_outputs_in_safe_state(env: Env) -> None:
    assert await env.write("kitchen-relay", "on", True) == 204
    env.broker.stop()
    await until(lambda: env.board.pin(RELAY_PIN) == 0, "the relay in its safe state", 6.0)
    assert any("safe state" in line for line in env.board.logs)
    env.broker.start()

    async def gateway_agrees() -> bool:
        return (await env.read("kitchen-relay", "on")) == (200, False)

    await until(gateway_agrees, "the gateway learning the board's safe state")


async def test_mqtt_binding_and_home_assistant_discovery(env: Env) -> None:
    creds = load_credentials(env.state)
    assert creds is not None
    got: dict[str, bytes] = {}
    reader = await env.client("reader-wot", creds.readers["wot"])
    try:
        reader.subscribe(f"streembit/{env.gw.id}/things/#", lambda t, p: got.__setitem__(t, p))
        reader.subscribe("homeassistant/#", lambda t, p: got.__setitem__(t, p))
        topic = f"streembit/{env.gw.id}/things/kitchen-temp/properties/temperature"
        await until(lambda: topic in got, "the retained temperature")
        assert isinstance(json.loads(got[topic]), float)
        disc = [t for t in got if t.startswith("homeassistant/sensor/") and "kitchen-temp" in t]
        assert disc, sorted(got)
        cfg = json.loads(got[disc[0]])
        assert cfg["state_topic"] == topic and cfg["device_class"] == "temperature"
        # a reader cannot write the gateway's topics (ACL): its publish is dropped
        reader.publish(topic, b"99", retain=True)
        await asyncio.sleep(0.2)
        assert got[topic] != b"99"
    finally:
        await reader.stop()
    td = env.gw.tds()["kitchen-temp"]
    forms = td["properties"]["temperature"]["forms"]
    mqtt = [f for f in forms if f["href"].startswith("mqtts://")]
    assert mqtt and mqtt[0]["mqv:filter"] == topic
    assert dataclasses.is_dataclass(env.gw.config.mqtt)


@pytest.mark.interop
async def test_nodewot_consumes_a_thing_through_the_mqtt_binding(env: Env) -> None:
    """node-wot (MqttsClientFactory, TLS with the broker's certificate, a reader account) reads a
    retained property and observes the relay of a companion Thing through its TD's MQTT forms."""
    import shutil

    node = shutil.which("node")
    interop = Path(__file__).resolve().parent / "interop"
    if node is None or not (interop / "node_modules/@node-wot/binding-mqtt").is_dir():
        pytest.fail(f"node-wot's MQTT binding is missing: run `npm ci` in {interop}")
    creds = load_credentials(env.state)
    assert creds is not None
    await until(lambda: env.hub().device("kitchen").online, "the board online")
    assert await env.write("kitchen-relay", "on", False) == 204
    plan = {
        "td": env.gw.tds()["kitchen-relay"],
        "broker": {"username": "reader-wot", "password": creds.readers["wot"],
                   "ca": creds.ca_file},
        "steps": [{"do": "read", "name": "on"}, {"do": "observe", "name": "on", "count": 3}],
        "timeout": 20000,
    }  # fmt: skip
    temp_plan = {**plan, "td": env.gw.tds()["kitchen-temp"],
                 "steps": [{"do": "read", "name": "temperature"}]}  # fmt: skip
    plan_file = env.root / "mqtt-plan.json"
    plan_file.write_text(json.dumps(plan))
    proc = await asyncio.create_subprocess_exec(
        node, str(interop / "mqtt_consumer.js"), f"@{plan_file}", cwd=interop,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(30):
            while len(lines) < 2:
                lines.append(json.loads(await proc.stdout.readline()))
            assert lines[0] == {"step": 0, "do": "read", "name": "on", "ok": True, "value": False}
            assert lines[1]["value"] == "ready", lines
            assert await env.write("kitchen-relay", "on", True) == 204
            await asyncio.sleep(0.2)
            assert await env.write("kitchen-relay", "on", False) == 204
            lines.append(json.loads(await proc.stdout.readline()))
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # the retained value first (observation starts with the current state), then the changes
    assert lines[2]["ok"] and lines[2]["value"] == [False, True, False], lines
    out = subprocess_json(node, interop, temp_plan)
    assert out[0]["ok"] and isinstance(out[0]["value"], float), out


def subprocess_json(node: str, cwd: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    import subprocess

    res = subprocess.run([node, "mqtt_consumer.js", json.dumps(plan)], cwd=cwd,
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return [json.loads(line) for line in res.stdout.splitlines()]
