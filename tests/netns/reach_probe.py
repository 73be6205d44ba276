"""A peer's measurements of one path to one gateway, run inside a NAT-lab namespace by
bench/bench_reach.py; prints one JSON object.

    reach_probe.py --key KEY --bootstrap H:P [--bootstrap H:P] --gateway ID [--finds N] [--rtts M]
                   [--no-upgrade]

- `finds`: N times a fresh DHT node joins, looks the gateway up by id, connects (Happy Eyeballs
  over the record's addresses) and reads the lock's state: seconds from start to that first
  reply, and the address that won;
- `rtts`: one connection, M reads, their round trips (ms) on the path it took; if that path was
  a relay, then a direct upgrade (hole punch) and M reads again on the punched link.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.identity import load_keypair
from gateway.peer import PeerClient, PeerConnection
from gateway.peer.find import connect, ephemeral_dht, find_contact
from gateway.reach.upgrade import upgrade


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


PACE_S = 0.06  # between reads: under the gateway's 20 requests/s per peer (its rate limit)


async def rtts(conn: PeerConnection, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        await conn.read("front-door", "state")
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(PACE_S)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    key = load_keypair(Path(args.key))
    boot = [hostport(b) for b in args.bootstrap]
    result: dict[str, Any] = {"finds": [], "urls": []}
    for _ in range(args.finds):
        t0 = time.perf_counter()
        async with ephemeral_dht(boot) as dht:
            contact = await find_contact(dht, args.gateway)
        async with PeerClient(key) as client:
            conn = await connect(client, contact)
            await conn.read("front-door", "state")
            result["finds"].append(time.perf_counter() - t0)
            result["urls"].append(conn.url)
    async with ephemeral_dht(boot) as dht:
        contact = await find_contact(dht, args.gateway)
    async with PeerClient(key) as client:
        conn = await connect(client, contact)
        result["path"], result["url"] = conn.path, conn.url
        await rtts(conn, 5)  # warm-up
        result["rtt"] = await rtts(conn, args.rtts)
        if conn.path == "relayed" and not args.no_upgrade:
            t0 = time.perf_counter()
            result["upgraded"] = await upgrade(conn)
            result["upgrade_s"] = time.perf_counter() - t0
            if result["upgraded"]:
                await rtts(conn, 5)
                result["rtt_punched"] = await rtts(conn, args.rtts)
                result["punched_url"] = conn.url
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--key", required=True)
    p.add_argument("--bootstrap", action="append", required=True)
    p.add_argument("--gateway", required=True)
    p.add_argument("--finds", type=int, default=10)
    p.add_argument("--rtts", type=int, default=200)
    p.add_argument("--no-upgrade", action="store_true", help="stay on a relay (relay CPU)")
    print(json.dumps(asyncio.run(main(p.parse_args()))), flush=True)
