"""A DHT node for the NAT lab (tests/netns/natlab.py); prints JSON lines.

Run inside a lab namespace (`host.popen([sys.executable, DHT_PROBE, ...])`):
  serve --host IP --port P [--bootstrap H:P ...] [--service NAME=URL ...] [--seconds S]
        a full-mode node; prints {"ready": true, "port": P, "id": HEX}, then runs S seconds
  check --bootstrap H:P ... [--tcp-listen P] [--peers N] [--client]
        joins (port 0 on every interface), waits for N contacts at most `JOIN_WAIT_S`, checks
        its reachability (a TCP listener on P first, if given) and prints {"observed": [ip, port],
        "udp_reachable": ..., "tcp_reachable": ..., "confirmations": N, "asked": N,
        "answered": N, "routing": N} or {"error": CODE, "message": TEXT}
  find --bootstrap H:P ... --name NAME [--want N]
        joins as a client and prints {"services": [URL, ...]}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.errors import StreembitError
from gateway.p2p import DhtNode

JOIN_WAIT_S: Final = 5.0  # a node in the lab finds its seeds within milliseconds
SERVE_S: Final = 120.0  # a serving node stops by itself after this (the lab also stops it)


def out(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def joined(node: DhtNode, peers: int) -> None:
    deadline = time.monotonic() + JOIN_WAIT_S
    while node.routing_size() < peers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if node.routing_size() == 0:
            await node.bootstrap(node.bootstrap_addrs)


async def serve(args: argparse.Namespace) -> None:
    node = DhtNode(args.host, args.port, bootstrap=[hostport(b) for b in args.bootstrap])
    node.services = dict(s.split("=", 1) for s in args.service)
    async with node:
        out({"ready": True, "port": node.port, "id": node.node_id.hex()})
        await asyncio.sleep(args.seconds)


async def check(args: argparse.Namespace) -> None:
    server = None
    if args.tcp_listen is not None:
        server = await asyncio.start_server(lambda _r, w: w.close(), "0.0.0.0", args.tcp_listen)
    node = DhtNode("0.0.0.0", 0, bootstrap=[hostport(b) for b in args.bootstrap])
    node.set_client_mode(args.client)
    try:
        async with node:
            await joined(node, args.peers)
            try:
                r = await node.check_reachability(args.tcp_listen)
            except StreembitError as exc:
                out({"error": exc.code, "message": str(exc), "routing": node.routing_size()})
                return
            out(
                {
                    "observed": list(r.observed) if r.observed else None,
                    "udp_reachable": r.udp_reachable,
                    "tcp_reachable": r.tcp_reachable,
                    "confirmations": r.confirmations,
                    "asked": r.asked,
                    "answered": r.answered,
                    "routing": node.routing_size(),
                }
            )
    finally:
        if server is not None:
            server.close()


async def find(args: argparse.Namespace) -> None:
    node = DhtNode("0.0.0.0", 0, bootstrap=[hostport(b) for b in args.bootstrap], client_mode=True)
    async with node:
        await joined(node, 1)
        out({"services": await node.find_services(args.name, args.want)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=4000)
    s.add_argument("--bootstrap", action="append", default=[])
    s.add_argument("--service", action="append", default=[])
    s.add_argument("--seconds", type=float, default=SERVE_S)
    c = sub.add_parser("check")
    c.add_argument("--bootstrap", action="append", default=[])
    c.add_argument("--tcp-listen", type=int)
    c.add_argument("--peers", type=int, default=3)
    c.add_argument("--client", action="store_true")
    f = sub.add_parser("find")
    f.add_argument("--bootstrap", action="append", default=[])
    f.add_argument("--name", required=True)
    f.add_argument("--want", type=int, default=3)
    args = p.parse_args()
    asyncio.run({"serve": serve, "check": check, "find": find}[args.cmd](args))


if __name__ == "__main__":
    main()
