"""What a one-shot `streembit-peer` command loads (issue 11: `read` with a cached contact record
under 300 ms, timed by bench/bench_peer_cli.py; here only behaviour, never timings).

Each command is run as the console script runs it (`main()` without arguments, in a child Python)
and reports at exit the modules it loaded and the state of the garbage collector: importing the
command line loads none of the commands; a warm `read` (the contact cached, the DHT unreachable)
loads the network side it needs and nothing else: no hardware, image, mDNS, schema or HTTP-server
code, no ACL or token code, nothing of the gateway itself; and the collector, paused for the
start-up (gateway/cli/common.py), runs again when the command does."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import peer_cli
from tests.helpers import GW, provision_cli
from tests.test_peer_cli import start

TIMEOUT_S = 60
STOP_TIMEOUT_S = 15  # a demo gateway stops in well under a second on SIGTERM

#: Never loaded by a one-shot peer command that does not use them (a module or a package).
HEAVY = ("zeroconf", "paho", "jsonschema", "gpiozero", "segno", "PIL", "zxingcpp", "bleak",
         "serial", "sqlite3", "tomllib", "kademlia",
         "gateway.app", "gateway.bindings", "gateway.wot", "gateway.things", "gateway.requests",
         "gateway.audit", "gateway.provisioning", "gateway.config.load",
         "device_drivers.registry")  # fmt: skip
#: Used by other peer commands only (keys, ACLs, tokens, QR codes, LAN discovery).
OTHER_COMMANDS = ("gateway.acl", "gateway.auth")
#: The network side: loaded by the commands that talk to a gateway, never to parse a command.
NETWORK = ("aiohttp", "gateway.peer", "gateway.p2p", "gateway.reach")

# The child: the console script's `main()`, and at exit one JSON line on stderr.
CHILD = """\
import atexit, gc, json, sys
def report():
    print(json.dumps({"modules": sorted(sys.modules), "gc_enabled": gc.isenabled(),
                      "frozen": gc.get_freeze_count()}), file=sys.stderr)
atexit.register(report)
sys.argv = ["streembit-peer", *sys.argv[1:]]
from gateway.cli.peer_cli import main
sys.exit(main())
"""


def run_peer(*args: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """`streembit-peer ARGS` as the console script runs it: (stdout, the child's report)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stderr.strip().splitlines()[-1])
    return proc.stdout, report


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The MODULES that are one of NAMES or inside one of them."""
    return sorted(m for m in modules if m in names or m.startswith(tuple(f"{n}." for n in names)))


def test_importing_the_command_line_loads_no_command() -> None:
    """`main` pauses the collector before the commands' modules load: importing the module it
    is in loads none of them (not even the key library)."""
    code = "import sys, gateway.cli.peer_cli; print('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=True)  # fmt: skip
    modules = proc.stdout.split()
    assert not loaded(modules, HEAVY + OTHER_COMMANDS + NETWORK)
    commands = ("asyncio", "joserfc", "cryptography", "gateway.identity", "gateway.cli.peer_net",
                "gateway.cli.provisioning_peer")  # fmt: skip
    assert not loaded(modules, commands)


def test_a_local_command_loads_no_network_side(tmp_path: Path) -> None:
    key = tmp_path / "me"
    out, report = run_peer("keygen", "--key", str(key))
    assert out.strip()
    assert not loaded(report["modules"], HEAVY + NETWORK + ("gateway.acl",))
    out, report = run_peer("id", "--key", f"{key}.pub")
    assert out.strip()
    assert not loaded(report["modules"], HEAVY + NETWORK + OTHER_COMMANDS)
    assert report["gc_enabled"] and report["frozen"] > 0  # paused for the start-up only


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A demo gateway (its own DHT node the bootstrap node, as in the bench): (id, its DHT
    address, the key folder; alice may read)."""
    gw_id, st, keys, _acl = provision_cli(tmp_path, "readproperty")
    gw, info = start(GW, "demo", "--state", str(st), "--http-port", "0", "--ws-port", "0",
                     "--dht-port", "0", "--no-mdns", "--json")  # fmt: skip
    try:
        yield gw_id, info["dht"], keys
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=STOP_TIMEOUT_S) == 0


def test_a_warm_read_loads_the_network_side_and_nothing_else(
    gateway: tuple[str, str, Path], tmp_path: Path
) -> None:
    gw_id, dht, keys = gateway
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))

    def read(boot: str) -> tuple[str, dict[str, Any]]:
        return run_peer("--bootstrap", boot, "--key", str(keys / "alice"), "read", "--", gw_id,
                        "living-room", "temperature", env=env)  # fmt: skip

    cold_out, cold = read(dht)  # looks the gateway up in the DHT and caches its record
    assert (tmp_path / "xdg" / "streembit" / "contacts" / f"{gw_id}.json").exists()
    # No DHT node at this address: the warm read must not need one.
    warm_out, warm = read("127.0.0.1:9")
    assert float(warm_out) > 0 and float(cold_out) > 0
    modules = warm["modules"]
    assert not loaded(modules, HEAVY + OTHER_COMMANDS)
    assert loaded(modules, ("aiohttp", "gateway.peer.cache"))  # it did talk to the gateway
    assert warm["gc_enabled"] and warm["frozen"] > 0
    assert set(warm["modules"]) <= set(cold["modules"])  # the DHT path needs more, not less


def test_main_with_a_command_line_leaves_the_collector_alone(tmp_path: Path) -> None:
    """In process (tests, a program calling `main(argv)`), nothing is frozen or paused."""
    before = gc.get_freeze_count()
    assert peer_cli.main(["keygen", "--key", str(tmp_path / "k")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == before
