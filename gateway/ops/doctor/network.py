"""Checks of the network services: the MQTT broker and the DHT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from gateway.config import GatewayConfig
from gateway.errors import StreembitError
from gateway.ops.doctor.base import CONNECT_TIMEOUT_S, Check, _fail, _ok, _warn
from gateway.ops.doctor.service import _metric
from gateway.state import StateDir

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

BROKER_DEFAULT: Final = ("127.0.0.1", 1883)
DHT_TIMEOUT_S: Final = 5.0  # joining through the bootstrap nodes from a temporary node


# --------------------------------------------------------------------------- broker
#: CONNACK reason codes (paho's MQTT 5 numbering, also for 3.1.1) that mean "who are you?"
LOGIN_REFUSED: Final = frozenset({134, 135})  # bad user name or password; not authorised


def mqtt_probe(
    host: str, port: int, user: str | None = None, password: str | None = None
) -> ReasonCode:
    """The broker's answer to an MQTT 3.1.1 CONNECT (paho; `.is_failure`, `.value`, str: the
    reason); OSError when nothing answers within CONNECT_TIMEOUT_S. Blocking: doctor is a
    command, and `run_checks` is never called from an event loop."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"doctor-{os.getpid()}",
        protocol=paho.MQTTv311,
        reconnect_on_failure=False,  # no retries, no MQTT 3.1 downgrade: one plain answer
    )
    client.connect_timeout = CONNECT_TIMEOUT_S
    if user is not None:
        client.username_pw_set(user, password)
    answers: list[ReasonCode] = []

    def on_connect(
        c: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        answers.append(reason)

    client.on_connect = on_connect
    client.connect(host, port, keepalive=10)  # OSError: refused, unreachable, timed out
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        while not answers:
            rc = client.loop(timeout=0.1)
            if answers:
                break
            if rc != paho.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"the broker ended the handshake: {paho.error_string(rc)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CONNACK within {CONNECT_TIMEOUT_S:g} s")
        if not answers[0].is_failure:
            client.disconnect()
            client.loop(timeout=0.1)  # sends the DISCONNECT
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()
    return answers[0]


def check_broker(cfg: GatewayConfig | None, state_dir: Path) -> list[Check]:
    targets: list[tuple[str, int, bool]] = []
    if cfg is not None:
        for t in cfg.things:
            broker = t.driver_settings.get("broker") if t.driver == "companion" else None
            if isinstance(broker, str):
                with contextlib.suppress(Exception):
                    from device_drivers.companion.broker import parse_broker

                    targets.append(parse_broker(broker))
    needed = bool(targets)
    if not targets:
        targets = [(*BROKER_DEFAULT, False)]
    creds: Any = None
    with contextlib.suppress(Exception):
        from gateway.companion.broker import load_credentials

        creds = load_credentials(StateDir(state_dir))
    checks: list[Check] = []
    for host, port, tls in dict.fromkeys(targets):
        where = f"{host}:{port}"
        try:
            if tls:
                with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                    pass
                checks.append(
                    _ok("broker", f"{where} accepts connections (TLS, login not checked here)")
                )
                continue
            user = creds.username if creds else None
            answer = mqtt_probe(host, port, user, creds.password if creds else None)
        except OSError as exc:
            status = _fail if needed else _warn
            checks.append(
                status(
                    "broker",
                    f"no MQTT broker at {where}: {exc}",
                    "sudo apt-get install mosquitto && sudo systemctl enable --now "
                    "mosquitto (deploy/install.sh does both)",
                )
            )
            continue
        if not answer.is_failure:
            login = f"as {creds.username}" if creds else "anonymously"
            if creds:
                checks.append(_ok("broker", f"{where} accepts a login {login}"))
            else:
                checks.append(
                    _warn(
                        "broker",
                        f"{where} accepts a login {login}",
                        "the broker allows anonymous clients: set allow_anonymous false",
                    )
                )
        elif creds is None and answer.value in LOGIN_REFUSED:
            checks.append(
                _ok(
                    "broker",
                    f"{where} is up and refuses anonymous clients (no companion boards paired yet)",
                )
            )
        else:
            checks.append(
                _fail(
                    "broker",
                    f"{where} refused the gateway's login: {answer}",
                    "rewrite the broker config (companion pairing) and restart mosquitto",
                )
            )
    return checks


# --------------------------------------------------------------------------- DHT
async def _dht_join(host: str, bootstrap: Iterable[tuple[str, int]]) -> int:
    from gateway.p2p import DhtNode

    # a throwaway node on the gateway's own DHT address (any free port), so it reaches what
    # the gateway would reach
    node = DhtNode(host, 0, bootstrap=list(bootstrap), rpc_timeout=1.0)
    await node.start()
    try:
        return await asyncio.wait_for(node.bootstrap(node.bootstrap_addrs), DHT_TIMEOUT_S)
    except TimeoutError:
        return node.routing_size()
    finally:
        await node.stop()


def check_dht(cfg: GatewayConfig, run: dict[str, Any]) -> list[Check]:
    p2p = cfg.p2p
    if not p2p.enabled:
        return [_ok("DHT", "P2P is off in the config (LAN and HTTP only)")]
    url = str(run.get("http", ""))
    if url:
        peers = _metric(url, "streembit_dht_peers")
        if peers is not None:
            if peers > 0:
                return [_ok("DHT", f"the running gateway knows {int(peers)} DHT peers")]
            if not p2p.bootstrap:
                return [
                    _warn(
                        "DHT",
                        "the running gateway is the only DHT node it knows",
                        'add [gateway.p2p] bootstrap = ["HOST:PORT"] of a node peers '
                        "also join through",
                    )
                ]
            return [
                _fail(
                    "DHT",
                    "the running gateway has no DHT peers although bootstrap "
                    f"nodes are set ({', '.join(f'{h}:{p}' for h, p in p2p.bootstrap)})",
                    "check that they run and that UDP reaches them",
                )
            ]
    if not p2p.bootstrap:
        return [
            _warn(
                "DHT",
                "no bootstrap nodes: this gateway starts a network of its own",
                'add [gateway.p2p] bootstrap = ["HOST:PORT"]',
            )
        ]
    try:
        size = asyncio.run(_dht_join(p2p.dht_host, p2p.bootstrap))
    except (OSError, StreembitError) as exc:
        return [_fail("DHT", f"cannot start a test DHT node: {exc}")]
    if size > 0:
        return [_ok("DHT", f"joined through the bootstrap nodes: {size} peers")]
    return [
        _fail(
            "DHT",
            f"no bootstrap node answered ({', '.join(f'{h}:{p}' for h, p in p2p.bootstrap)})",
            "check that they run and that UDP reaches them (firewall)",
        )
    ]
