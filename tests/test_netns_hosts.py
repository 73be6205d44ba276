"""A peer on another host uses the network: seed, gateway and peers on three "hosts".

Each host is a network namespace this test makes (tests/netns/lan.py): 10.77.0.1 runs the DHT
seed (`streembit-peer node`), 10.77.0.2 the demo gateway (`demo --host --advertise`), 10.77.0.3
the peers' commands, all as the real CLI. The addresses exist only inside the namespaces, so
nothing leaves them. Where namespaces cannot be made (no root, no iproute2) this test fails and
says what is needed; it never skips.

Also here: the demo's --host / --advertise refusals, and how a peer picks its DHT address.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.peer.find import source_address
from tests.helpers import GW, PEER, provision_cli, run_cli
from tests.netns.lan import Lan, NetnsUnavailable
from tests.netns.procs import first_line, stop

READY_TIMEOUT_S = 30.0  # a seed or gateway prints its ready line
STOP_TIMEOUT_S = 15.0  # SIGTERM to exit: the gateway locks the lock and saves its settings


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, ok=ok)


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start a long-running command; its first stdout line is its JSON ready line."""
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = first_line(proc, READY_TIMEOUT_S)
    if not line:
        _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
        raise AssertionError(f"{args} did not start within {READY_TIMEOUT_S} s: {err}")
    return proc, json.loads(line)


def private_lan(roles: list[str]) -> Lan:
    """The namespaces, made; where they cannot be, the test fails (never skips) saying why."""
    try:
        return Lan(roles).create()
    except NetnsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def test_seed_gateway_and_peer_on_three_hosts(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with private_lan(["seed", "gw", "peer"]) as lan:
        gw_id, st, k, _ = provision_cli(tmp_path, "readproperty,invokeaction", "front-door")
        _three_hosts(lan, st, k, gw_id)

    audit = json.loads(run(GW, "audit", "--state", str(st), "--json").stdout)
    ids = {who: run(PEER, "id", "--key", str(k / f"{who}.pub")).stdout.strip()
           for who in ("alice", "mallory")}  # fmt: skip
    denied = [r for r in audit if r["subject"] == ids["mallory"] and not r["allowed"]]
    assert [(r["binding"], r["op"], r["thing"], r["affordance"]) for r in denied] == [
        ("p2p", "invokeaction", "front-door", "unlock")
    ]
    granted = [
        r["affordance"]
        for r in audit
        if r["subject"] == ids["alice"] and r["allowed"] and r["op"] == "invokeaction"
    ]
    assert sorted(granted) == ["lock", "unlock"]
    print(f"three-host run: {time.monotonic() - t0:.1f} s")


def _three_hosts(lan: Lan, st: Path, k: Path, gw_id: str) -> None:
    """Seed on host 1, the gateway on host 2; find, grant, refusal and relock from host 3."""
    seed_addr, gw_addr = lan.addr("seed"), lan.addr("gw")
    seed, seed_info = start(*lan.run_in("seed"), PEER, "node", "--host", seed_addr,
                            "--dht-port", "0", "--json")  # fmt: skip
    procs = [seed]
    try:
        boot = seed_info["dht"]
        assert boot.startswith(f"{seed_addr}:")
        # every interface of its host, and the address the others reach it at
        gw, info = start(*lan.run_in("gw"), GW, "demo", "--state", str(st), "--host", "0.0.0.0",
                         "--advertise", gw_addr, "--http-port", "0", "--ws-port", "0",
                         "--dht-port", "0", "--bootstrap", boot, "--no-mdns", "--json")  # fmt: skip
        procs.insert(0, gw)
        assert info["ws"].startswith(f"ws://{gw_addr}:") and info["dht"].startswith(f"{gw_addr}:")
        assert info["http"].startswith(f"http://{gw_addr}:")

        peer = [*lan.run_in("peer"), PEER, "--bootstrap", boot]
        rec = json.loads(run(*peer, "find", "--json", "--", gw_id).stdout)
        assert rec["id"] == gw_id and rec["addrs"] == [info["ws"]]

        alice = [*peer, "--key", str(k / "alice")]
        td = json.loads(run(*alice, "td", "--json", "--", gw_id, "front-door").stdout)
        assert td["base"] == f"{info['http']}/things/front-door/"  # the advertised address
        # --no-cache: this one looks the gateway up in the DHT across hosts; td, read and lock
        # take the contact record cached by find (both paths are exercised across hosts)
        unlocked = run(*alice, "--no-cache", "invoke", "--", gw_id, "front-door", "unlock").stdout
        assert json.loads(unlocked) == "unlocked"
        state = run(*alice, "read", "--", gw_id, "front-door", "state").stdout
        assert json.loads(state) == "unlocked"

        mallory = run(*peer, "--key", str(k / "mallory"), "--no-cache", "invoke",
                      "--host", lan.addr("peer"), "--", gw_id, "front-door", "unlock",
                      ok=False)  # fmt: skip
        assert mallory.returncode == 1, mallory.stderr
        assert mallory.stdout.strip() == "refused (403 forbidden): no grant for this subject"

        assert json.loads(run(*alice, "invoke", "--", gw_id, "front-door", "lock").stdout) == (
            "locked"
        )
        state = run(*alice, "read", "--", gw_id, "front-door", "state").stdout
        assert json.loads(state) == "locked"

        # routes that leave from different addresses, or no route: the wildcard
        check = (
            "from gateway.peer.find import source_address as s; "
            f"print(s([('{seed_addr}', 1)]), s([('{seed_addr}', 1), ('127.0.0.1', 1)]), "
            "s([('198.51.100.1', 1)]))"
        )
        picked = run(*lan.run_in("peer"), sys.executable, "-c", check).stdout.split()
        assert picked == [lan.addr("peer"), "0.0.0.0", "0.0.0.0"]
        # the old behaviour, on purpose: a DHT node on loopback gets no answer from another host
        lo = run(*peer, "find", "--host", "127.0.0.1", "--", gw_id, ok=False)
        assert lo.returncode == 1 and "no DHT node answered" in lo.stderr, lo.stderr
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0, 0]  # the gateway locked the lock, saved its settings and exited


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "0.0.0.0"], "add --advertise ADDR"),
        (["--host", "::"], "add --advertise ADDR"),
        (["--advertise", "10.77.0.2"], "add --host 10.77.0.2 or --host 0.0.0.0"),
        (["--host", "0.0.0.0", "--advertise", "10.77.0.2:80"], "a host without a port"),
        (["--host", "0.0.0.0", "--advertise", "ftp://gw"], "http://, https://, ws:// or wss://"),
        (["--host", "0.0.0.0", "--advertise", "http://a", "--advertise", "https://b"], "one"),
        (["--host", "198.51.100.254"], "an address of this machine"),  # TEST-NET-2: not ours
    ],
)
def test_demo_refuses_addresses_others_cannot_use(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    proc = run(GW, "demo", "--state", str(tmp_path / "st"), *flags, "--http-port", "0", ok=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "st").exists()  # refused before anything was created


def test_a_peer_binds_to_the_source_address_of_its_route() -> None:
    assert source_address([("127.0.0.1", 4242)]) == "127.0.0.1"
    assert source_address([("127.0.0.1", 4242), ("127.0.0.2", 4242)]) == "127.0.0.1"
    assert source_address([("::1", 4242)]) == "::1"
