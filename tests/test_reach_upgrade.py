"""Direct upgrade in the NAT lab: a peer that reached the gateway through a relay punches a
direct TCP path and moves its connection there (by a spray where one side is a symmetric NAT);
where the NATs make that impossible (symmetric against symmetric) the relayed path goes on
working. Real seeds, gateway and peer
(tests/netns/reach_probe.py runs the peer's Python API in its namespace). Fails, never skips,
where the lab cannot be built.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.netns.natlab import lab_for_test
from tests.netns.reachnet import Gateway, ReachNet

PROBE = str(Path(__file__).parent / "netns" / "reach_probe.py")


lab = lab_for_test  # fails (never skips) where the lab cannot be built


def probe(net: ReachNet, peer_kind: str, gw: Gateway) -> dict[str, Any]:
    host = net.peer_host(peer_kind)
    # "--gateway=ID": an id may begin with "-", which argparse takes for an option otherwise
    argv = [sys.executable, PROBE, "--key", str(gw.keys / "alice"), f"--gateway={gw.id}",
            "--finds", "1", "--rtts", "8"]  # fmt: skip
    argv += [a for s in net.seeds[:2] for a in ("--bootstrap", s.dht)]
    proc = host.run(argv, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_relayed_peers_punch_a_direct_path_where_the_nats_allow(tmp_path: Path) -> None:
    with lab() as built:
        net = ReachNet(built, tmp_path)
        try:
            net.start_seeds(3)
            gw = net.start_gateway("port-restricted")
            assert gw.reach["mode"] == "relayed", gw.reach
            cone = probe(net, "cone", gw)
            assert cone["path"] == "relayed" and "/relay/v1/connect/" in cone["url"], cone
            assert cone["upgraded"] is True and cone["punched_url"].startswith("tcp://"), cone
            assert len(cone["rtt_punched"]) == 8
            symmetric = probe(net, "symmetric", gw)  # no plain punch: a spray (spray.py)
            assert symmetric["path"] == "relayed" and symmetric["upgraded"] is True, symmetric
            assert symmetric["punched_url"].startswith("tcp://"), symmetric
            both = probe(net, "symmetric", net.start_gateway("symmetric"))
            assert both["path"] == "relayed" and both["upgraded"] is False, both
            assert len(both["rtt"]) == 8  # the relayed path kept working
        finally:
            codes = net.close()
    assert set(codes.values()) == {0}, codes
