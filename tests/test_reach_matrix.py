"""Reach a gateway from anywhere: the NAT lab matrix (issue 12), with the real command lines.

Three public seed nodes relay (`streembit-peer node`); a demo gateway runs behind each router
kind (cone, port-restricted, symmetric, double NAT, UPnP/NAT-PMP); a peer host sits behind each
kind too. In every one of the 25 cells: alice finds the gateway by id alone and unlocks, mallory
is refused (and audited), an observation delivers the lock's changes, and the lock ends locked.
Where namespaces or nftables cannot be made these tests fail, naming what is missing; they
never skip (tests/netns/natlab.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers import GW, run_cli
from tests.netns.natlab import Host, lab_for_test
from tests.netns.reachnet import CMD_TIMEOUT_S, Gateway, ReachNet

KINDS = ("cone", "port-restricted", "symmetric", "double", "upnp")
OBSERVE_TIMEOUT_S = 30.0
REFUSED = "refused (403 forbidden): no grant for this subject"


#: (peer, gateway) router kinds with no direct path: random ports on both sides. A symmetric NAT
#: against a port-restricted or double one meets by a spray (gateway/reach/spray.py), which
#: misses about once in 10 000: the test allows those cells one miss in all.
UNPUNCHABLE = {("symmetric", "symmetric")}
SPRAYED = {("symmetric", k) for k in ("port-restricted", "double")} | {
    (k, "symmetric") for k in ("port-restricted", "double")
}

lab = lab_for_test  # fails (never skips) where the lab cannot be built


def invoke(net: ReachNet, host: Host, gw: Gateway, who: str, action: str) -> Any:
    proc = net.peer(host, gw, who, "invoke", "--json", "--", gw.id, "front-door", action)
    assert proc.returncode == 0, f"{who} {action} from {host.name}: {proc.stderr}"
    return json.loads(proc.stdout)


def cell(net: ReachNet, host: Host, gw: Gateway) -> dict[str, Any]:
    """The required behaviour of one cell; returns what was seen (for the failure message)."""
    seen: dict[str, Any] = {"peer": host.name, "gateway": gw.kind}
    assert invoke(net, host, gw, "alice", "unlock") == "unlocked"
    refused = net.peer(host, gw, "mallory", "--no-cache", "invoke", "--", gw.id, "front-door",
                       "unlock")  # fmt: skip
    assert refused.returncode == 1 and refused.stdout.strip() == REFUSED, refused.stderr

    watcher = net.popen_peer(host, gw, "alice", "observe", "--json", "--count", "2",
                             "--", gw.id, "front-door", "state")  # fmt: skip
    try:
        assert watcher.stderr is not None
        path = watcher.stderr.readline()  # "connected to … (relayed via …)": subscribed next
        seen["path"] = path.strip()
        assert path.startswith("connected"), path
        if " relayed via " in path:  # then a direct upgrade is tried: wait for its outcome
            seen["upgrade"] = watcher.stderr.readline().strip()
            assert seen["upgrade"].startswith(("moved to a direct link", "staying on the relay"))
        time.sleep(0.3)  # the subscription is answered before the first event is pushed
        assert invoke(net, host, gw, "alice", "lock") == "locked"
        assert invoke(net, host, gw, "alice", "unlock") == "unlocked"
        out, err = watcher.communicate(timeout=OBSERVE_TIMEOUT_S)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    events = [json.loads(line)["data"] for line in out.splitlines() if line.strip()]
    assert events == ["locked", "unlocked"], (out, err)
    seen["observe"] = err.strip().splitlines()
    assert invoke(net, host, gw, "alice", "lock") == "locked"
    state = net.peer(host, gw, "alice", "read", "--", gw.id, "front-door", "state")
    assert json.loads(state.stdout) == "locked", state.stderr
    return seen


def test_every_router_pair_reaches_the_gateway(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with lab() as built:
        net = ReachNet(built, tmp_path)
        try:
            net.start_seeds(3)
            gws = {kind: net.start_gateway(kind) for kind in KINDS}
            modes = {kind: gw.reach["mode"] for kind, gw in gws.items()}
            assert modes == {
                "cone": "relayed",
                "port-restricted": "relayed",
                "symmetric": "relayed",
                "double": "relayed",
                "upnp": "mapped",
            }, modes
            for kind, gw in gws.items():
                relays = [a for a in gw.reach["addrs"] if "/relay/v1/connect/" in a]
                assert len(relays) == (0 if kind == "upnp" else 2), gw.reach
            seen = []
            for pkind in KINDS:
                host = net.peer_host(pkind)
                for gw in gws.values():
                    seen.append({**cell(net, host, gw), "peer_kind": pkind})
        finally:
            codes = net.close()
    assert set(codes.values()) == {0}, codes
    for gw in gws.values():
        audit = json.loads(run_cli(GW, "audit", "--state", str(gw.state), "--json",
                                   ok=True).stdout)  # fmt: skip
        denied = [r for r in audit if not r["allowed"] and r["op"] == "invokeaction"]
        assert len(denied) == len(KINDS), (gw.kind, denied)
    print(f"matrix: {len(seen)} cells in {time.monotonic() - t0:.0f} s")
    for row in seen:
        print(row)
    # a direct path (mapped, hole punched or sprayed) wherever one can be made: only two
    # symmetric NATs stay on the relay (docs/reach.md)
    relayed = {(r["peer_kind"], r["gateway"]) for r in seen if "direct" not in r["path"]
               and not r.get("upgrade", "").startswith("moved to a direct link")}  # fmt: skip
    assert relayed <= UNPUNCHABLE | SPRAYED, sorted(relayed - UNPUNCHABLE - SPRAYED)
    assert len(relayed & SPRAYED) <= 1, sorted(relayed)  # a spray misses ~1e-4 of the time


def test_a_lost_relay_is_replaced_and_the_next_command_works(tmp_path: Path) -> None:
    with lab() as built:
        net = ReachNet(built, tmp_path)
        try:
            seeds = net.start_seeds(3)
            gw = net.start_gateway("port-restricted")
            host = net.peer_host("port-restricted")
            assert invoke(net, host, gw, "alice", "unlock") == "unlocked"
            relayed = [a for a in gw.reach["addrs"] if "/relay/v1/connect/" in a]
            victim = next(s for s in seeds if s.host.addr in relayed[0])
            victim.proc.kill()
            victim.proc.wait()
            killed = time.monotonic()
            proc: subprocess.CompletedProcess[str] | None = None
            while time.monotonic() - killed < 10.0:
                proc = net.peer(host, gw, "alice", "invoke", "--json", "--", gw.id,
                                "front-door", "lock", timeout=CMD_TIMEOUT_S)  # fmt: skip
                if proc.returncode == 0:
                    break
            took = time.monotonic() - killed
            assert proc is not None and proc.returncode == 0, proc.stderr if proc else None
            assert json.loads(proc.stdout) == "locked" and took < 10.0, took
            # the gateway reserved at the third relay and published it in its contact record
            deadline = time.monotonic() + 10.0
            while True:
                found = net.peer(host, gw, "alice", "find", "--json", "--", gw.id)
                addrs = json.loads(found.stdout)["addrs"] if found.returncode == 0 else []
                relays = [a for a in addrs if "/relay/v1/connect/" in a]
                if len(relays) == 2 and all(victim.host.addr not in a for a in relays):
                    break
                assert time.monotonic() < deadline, f"no second relay after the loss: {addrs}"
                time.sleep(0.5)
        finally:
            net.close()
