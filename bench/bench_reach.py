"""Reaching a gateway through NAT (issue 12): every cell of the NAT lab, one table.

Builds the lab (tests/netns/natlab.py; needs root, iproute2, nftables, miniupnpd), three public
seed nodes that relay, a demo gateway behind each router kind plus a public one, and a peer
host behind each kind plus a public one. For every (gateway, peer) cell the peer's Python API
(tests/netns/reach_probe.py) measures:

- path: how the first connection went (direct, mapped, relayed) and whether a relayed one was
  then hole punched (-> punched);
- find: from a fresh DHT node's start to the first reply (join, lookup, connect, read), p50/p99;
- rtt: a read's round trip on the path taken, p50, and after the punch (if any);
- vs direct: rtt p50 minus the direct reference (public peer -> public gateway, same run);
- relay CPU per relayed frame: CPU time of the seed (relay) processes over the cell divided by
  the frames the probe sent through a relay (an upper bound: the seeds' DHT work is included).

Aims (issue 12): 100 % reach; a direct path where one side is not symmetric; relayed rtt <=
direct + 1 ms; relay memory per idle reservation < 20 KB (bench/bench_relay.py measures it).

    sudo .venv/bin/python bench/bench_reach.py [--finds 4] [--rtts 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netns.natlab import nat_lab
from tests.netns.reachnet import Gateway, ReachNet

KINDS = ("public", "cone", "port-restricted", "symmetric", "double", "upnp")
PROBE = str(Path(__file__).resolve().parents[1] / "tests" / "netns" / "reach_probe.py")
TICKS = 100  # clock ticks per second of /proc/PID/stat (Linux: USER_HZ)


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_cell(
    net: ReachNet, peer: Any, gw: Gateway, args: argparse.Namespace, *extra: str
) -> dict[str, Any]:
    # "--gateway=ID": an id may begin with "-", which argparse takes for an option otherwise
    argv = [sys.executable, PROBE, "--key", str(gw.keys / "alice"), f"--gateway={gw.id}",
            "--finds", str(args.finds), "--rtts", str(args.rtts), *extra]  # fmt: skip
    argv += [a for s in net.seeds[:2] for a in ("--bootstrap", s.dht)]
    relays = [s.proc.pid for s in net.seeds]
    before = cpu_s(relays)
    proc = peer.run(argv, timeout=120, check=False)
    used = cpu_s(relays) - before
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}
    r: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    mapped = {a for a in gw.reach.get("addrs", []) if "/relay/" not in a}
    path = r["path"]
    if path == "direct" and r["url"] in mapped and gw.reach.get("mode") == "mapped":
        path = "mapped"
    relayed_reads = sum(1 for u in r["urls"] if "/relay/" in u)
    if r["path"] == "relayed":
        relayed_reads += 5 + len(r["rtt"]) + (0 if "--no-upgrade" in extra else 2)
    r["shown_path"] = path + ("->punched" if r.get("upgraded") else "")
    r["relay_us_per_frame"] = used * 1e6 / (2 * relayed_reads) if relayed_reads else None
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--finds", type=int, default=4)
    p.add_argument("--rtts", type=int, default=30)
    p.add_argument("--relay-frames", type=int, default=400)
    args = p.parse_args()
    t0 = time.monotonic()
    rows: list[tuple[str, str, dict[str, Any]]] = []
    relay_row: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, nat_lab() as lab:
        net = ReachNet(lab, Path(tmp))
        try:
            net.start_seeds(3)
            gws = {kind: net.start_gateway(kind) for kind in KINDS}
            print("gateways:", {k: g.reach["mode"] for k, g in gws.items()}, flush=True)
            for pkind in KINDS:
                peer = net.peer_host(pkind)
                for gkind, gw in gws.items():
                    rows.append((gkind, pkind, run_cell(net, peer, gw, args)))
                    print(".", end="", flush=True)
            print()
            # relay CPU alone: many reads through one relay, no lookups to speak of, no punch
            steady = argparse.Namespace(finds=0, rtts=args.relay_frames // 2)
            peer = net.peer_host("symmetric")
            relay_row = run_cell(net, peer, gws["symmetric"], steady, "--no-upgrade")
        finally:
            net.close()
    direct = next(r for g, pk, r in rows if g == "public" and pk == "public")
    ref = statistics.median(direct["rtt"])
    head = (f"{'gateway':16} {'peer':16} {'path':22} {'find p50/p99 ms':>16} {'rtt p50':>8} "
            f"{'punched':>8} {'vs direct':>9} {'relay us/frame':>14}")  # fmt: skip
    print(head)
    print("-" * len(head))
    reached = 0
    for gkind, pkind, r in rows:
        if "error" in r:
            print(f"{gkind:16} {pkind:16} FAILED: {r['error']}")
            continue
        reached += 1
        finds = [f * 1000 for f in r["finds"]]
        rtt = statistics.median(r["rtt"])
        punched = statistics.median(r["rtt_punched"]) if r.get("rtt_punched") else None
        cpu = r["relay_us_per_frame"]
        print(
            f"{gkind:16} {pkind:16} {r['shown_path']:22} "
            f"{pct(finds, 0.5):7.0f}/{pct(finds, 0.99):<8.0f} {rtt:8.2f} "
            f"{(f'{punched:.2f}' if punched is not None else '-'):>8} {rtt - ref:+9.2f} "
            f"{(f'{cpu:.0f}' if cpu is not None else '-'):>14}"
        )
    cpu = relay_row.get("relay_us_per_frame")
    print(
        f"\nrelay CPU per relayed frame, steady state ({args.relay_frames} frames through one "
        f"relay, symmetric -> symmetric): {cpu:.0f} us"
        if cpu
        else "\nrelay CPU: not measured"
    )
    print(f"\nreach: {reached}/{len(rows)} cells; direct reference rtt p50 {ref:.2f} ms "
          f"(public peer -> public gateway); {time.monotonic() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
