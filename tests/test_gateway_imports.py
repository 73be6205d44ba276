"""What a serving gateway loads (issue 11: its RSS under 60 MB, measured by bench/bench_http.py;
here only behaviour, never sizes).

An HTTP-only gateway with no companion boards and no MQTT binding never loads the P2P side
(DHT, WebSocket binding, peer client, reachability) nor paho and the companion hub: they are
imported when P2P, MQTT or a companion Thing is switched on. The same gateway with P2P on
loads the P2P side (the guard cannot pass by loading nothing)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import provision_cli

STOP_TIMEOUT_S = 15  # a demo gateway stops in well under a second on SIGTERM

#: Loaded only when P2P is on.
P2P_SIDE = ("gateway.p2p", "gateway.bindings.p2p", "gateway.peer", "gateway.reach", "umsgpack")
#: Loaded only with the MQTT binding or a companion Thing.
MQTT_SIDE = ("paho", "gateway.bindings.mqtt", "device_drivers.companion.mqtt",
             "device_drivers.companion.hub", "micropython_client")  # fmt: skip

# The child: the console script's `main()`, and at exit one JSON line on stderr.
CHILD = """\
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["streembit-gateway", *sys.argv[1:]]
from gateway.cli.gateway_cli import main
sys.exit(main())
"""


def serve(*args: str) -> tuple[dict[str, Any], list[str]]:
    """Run `streembit-gateway ARGS` until its ready line, stop it: (ready line, its modules)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        assert line, f"the gateway did not start: {proc.stderr.read()}"
        ready = json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    assert proc.returncode == 0, err
    return ready, json.loads(err.strip().splitlines()[-1])


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The MODULES that are one of NAMES or inside one of them."""
    return sorted(m for m in modules if m in names or m.startswith(tuple(f"{n}." for n in names)))


def test_an_http_only_gateway_loads_no_p2p_and_no_mqtt_side(tmp_path: Path) -> None:
    _, st, _, _ = provision_cli(tmp_path, "readproperty")
    ready, modules = serve("demo", "--state", str(st), "--http-port", "0", "--no-p2p",
                           "--no-mdns", "--json")  # fmt: skip
    assert ready["http"].startswith("http://127.0.0.1:")
    assert not loaded(modules, P2P_SIDE + MQTT_SIDE)
    assert loaded(modules, ("aiohttp.web", "gateway.bindings.http"))


def test_with_p2p_on_the_p2p_side_is_loaded(tmp_path: Path) -> None:
    _, st, _, _ = provision_cli(tmp_path, "readproperty")
    ready, modules = serve("demo", "--state", str(st), "--http-port", "0", "--ws-port", "0",
                           "--dht-port", "0", "--no-mdns", "--json")  # fmt: skip
    assert ready["ws"].startswith("ws://127.0.0.1:")
    assert set(loaded(modules, P2P_SIDE)) >= {"gateway.p2p", "gateway.bindings.p2p"}
    assert not loaded(modules, MQTT_SIDE)
