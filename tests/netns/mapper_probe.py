"""Runs `PortMapper` inside a NAT lab home host (tests/test_reach_portmap.py); JSON lines out.

    mapper_probe.py --method pcp|natpmp|upnp|auto --tcp PORT --udp PORT [--lease S]

Serves a TCP listener (answers "hello" to each connection) and a UDP socket (answers "pong" to
each datagram) on those ports, maps them, then prints one line:
  {"ok": true, "mappings": [...], "status": {...}, "seconds": S}   or
  {"ok": false, "code": CODE, "reason": TEXT, "seconds": S}          (then exits)
Then reads commands on stdin, one a line: `status` prints {"status": ...}; `events` prints
{"events": [...]}; `stop` removes the mappings, prints {"stopped": true, "seconds": S}, exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.errors import ReachError
from gateway.reach.portmap import PortmapEvent, PortMapper


def out(obj: object) -> None:
    print(json.dumps(obj), flush=True)


class Pong(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"pong", addr)  # type: ignore[attr-defined]


async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello\n")
    await writer.drain()
    writer.close()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(hello, "0.0.0.0", args.tcp)
    udp, _ = await loop.create_datagram_endpoint(Pong, local_addr=("0.0.0.0", args.udp))
    mapper = PortMapper(method=args.method, lease_s=args.lease)
    events: list[dict[str, object]] = []

    def note(event: PortmapEvent) -> None:
        events.append({"kind": event.kind, "reason": event.reason,
                       "mappings": [m.as_dict() for m in event.mappings]})  # fmt: skip

    mapper.on_change.append(note)
    started = time.monotonic()
    try:
        mappings = await mapper.start([("tcp", args.tcp), ("udp", args.udp)])
    except ReachError as exc:
        out({"ok": False, "code": exc.code, "reason": str(exc),
             "seconds": round(time.monotonic() - started, 3)})  # fmt: skip
        return
    out({"ok": True, "mappings": [m.as_dict() for m in mappings], "status": mapper.status(),
         "seconds": round(time.monotonic() - started, 3)})  # fmt: skip
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if line == "status":
            out({"status": mapper.status()})
        elif line == "events":
            out({"events": events})
        elif line in ("stop", ""):
            began = time.monotonic()
            await mapper.stop()
            out({"stopped": True, "seconds": round(time.monotonic() - began, 3)})
            break
    server.close()
    udp.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=("auto", "pcp", "natpmp", "upnp"), default="auto")
    ap.add_argument("--tcp", type=int, required=True)
    ap.add_argument("--udp", type=int, required=True)
    ap.add_argument("--lease", type=int, default=3600)
    asyncio.run(main(ap.parse_args()))
