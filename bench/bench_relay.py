"""Relay cost: CPU per relayed frame and memory per idle reservation (docs/reach.md, "Relays").

The relay runs in a child process (this file with --child) so that its CPU time and memory are
its own; the parent plays the gateway (RelayReservations, echoing every frame back) and the
peer, and asks the child for `time.process_time()` and tracemalloc/RSS figures over stdin.

    .venv/bin/python bench/bench_relay.py [--frames N] [--reservations M] [--json]

- CPU per relayed frame: N sealed-message-sized frames (about 1.2 KB, a real sealed request)
  go peer -> relay -> gateway and back (2N relayed frames), 64 in flight.
- Memory per idle reservation: M reservations (M keys, real signed answers) held open; the
  child's tracemalloc delta (and its RSS delta) divided by M. Target: < 20 KB each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from gateway.identity import generate_keypair
from gateway.messages import seal
from gateway.reach.relay import RelayLimits, RelayReservations, RelayService, sign_reservation

TARGET_BYTES_PER_RESERVATION = 20 * 1024
IN_FLIGHT = 64


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def child() -> None:
    limits = RelayLimits(
        max_reservations=100_000,
        max_handshakes=1000,
        rate_per_s=1e6,
        rate_burst=1_000_000,
        circuit_bytes=1 << 40,
    )
    relay = RelayService(limits)
    await relay.start("127.0.0.1", 0)
    print(json.dumps({"url": relay.url}), flush=True)
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        out: dict[str, Any] = {}
        if line in ("", "quit"):
            break
        if line == "cpu":
            out = {"cpu": time.process_time()}
        elif line == "rss":
            gc.collect()
            out = {"rss": _rss_kb()}
        elif line == "trace":
            gc.collect()
            tracemalloc.start()
            out = {"mem": tracemalloc.get_traced_memory()[0], "rss": _rss_kb()}
        elif line == "mem":
            gc.collect()
            out = {"mem": tracemalloc.get_traced_memory()[0], "rss": _rss_kb()}
        elif line == "stats":
            out = relay.stats()
        print(json.dumps(out), flush=True)
    await relay.stop()


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return json.loads(await self.proc.stdout.readline())  # type: ignore[no-any-return]

    async def ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.line()


async def bench_cpu(child: Child, url: str, frames: int) -> dict[str, float]:
    gw, peer_kp = generate_keypair(), generate_keypair()
    frame = seal(
        {"op": "readproperty", "thing": "living-room", "name": "temperature", "input": None},
        sender=peer_kp,
        recipient=gw.public,
        typ="request",
    )

    async def echo(ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        async for msg in ws:
            await ws.send_str(msg.data)

    async def find() -> list[str]:
        return [url]

    rr = RelayReservations(gw, find, echo, want=1)
    await rr.start()
    try:
        while not rr.addrs:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http, http.ws_connect(rr.addrs[0]) as peer:
            for _ in range(200):  # warm-up
                await peer.send_str(frame)
                await peer.receive()
            before = (await child.ask("cpu"))["cpu"]
            t0 = time.perf_counter()
            window = asyncio.Semaphore(IN_FLIGHT)

            async def sender() -> None:
                for _ in range(frames):
                    await window.acquire()
                    await peer.send_str(frame)

            task = asyncio.create_task(sender())
            for _ in range(frames):
                msg = await peer.receive()
                assert msg.data == frame
                window.release()
            await task
            wall = time.perf_counter() - t0
            after = (await child.ask("cpu"))["cpu"]
    finally:
        await rr.stop()
    relayed = 2 * frames
    return {
        "frame_bytes": len(frame),
        "relayed_frames": relayed,
        "cpu_us_per_frame": (after - before) / relayed * 1e6,
        "frames_per_s": relayed / wall,
    }


async def hold_reservations(child: Child, url: str, count: int, probe: str) -> dict[str, Any]:
    """Hold COUNT idle reservations; the child's PROBE answer before and while they are held."""
    keys = [generate_keypair() for _ in range(count)]
    base = await child.ask(probe)
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    gate = asyncio.Semaphore(32)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def reserve(kp: Any) -> None:
            async with gate:
                ws = await http.ws_connect(url.replace("http", "ws", 1) + "/relay/v1/reserve")
                chal = json.loads((await ws.receive()).data)
                await ws.send_json({"type": "reserve", "jws": sign_reservation(kp, chal["nonce"])})
                reply = json.loads((await ws.receive()).data)
                assert reply["type"] == "reserved", reply
                sockets.append(ws)

        await asyncio.gather(*(reserve(kp) for kp in keys))
        await asyncio.sleep(0.5)
        held = (await child.ask("stats"))["reservations"]
        now = await child.ask("rss" if probe == "rss" else "mem")
        for ws in sockets:
            await ws.close()
    await asyncio.sleep(0.5)
    return {"held": held, "base": base, "now": now}


async def bench_memory(child: Child, url: str, count: int) -> dict[str, float]:
    # RSS first, without tracemalloc (whose own bookkeeping would inflate it); then tracemalloc
    rss = await hold_reservations(child, url, count, "rss")
    traced = await hold_reservations(child, url, count, "trace")
    return {
        "reservations": min(rss["held"], traced["held"]),
        "bytes_per_reservation": (traced["now"]["mem"] - traced["base"]["mem"]) / count,
        "rss_kb_per_reservation": (rss["now"]["rss"] - rss["base"]["rss"]) / count,
    }


async def main(args: argparse.Namespace) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    child = Child(proc)
    try:
        url = (await child.line())["url"]
        cpu = await bench_cpu(child, url, args.frames)
        mem = await bench_memory(child, url, args.reservations)
    finally:
        if proc.stdin is not None:
            proc.stdin.write(b"quit\n")
            await proc.stdin.drain()
        await proc.wait()
    ok = mem["bytes_per_reservation"] < TARGET_BYTES_PER_RESERVATION
    if args.json:
        print(json.dumps({"cpu": cpu, "memory": mem, "memory_target_met": ok}))
    else:
        print(f"relay CPU per relayed frame ({cpu['frame_bytes']} B sealed message):")
        print(f"  {cpu['cpu_us_per_frame']:.1f} us CPU over {cpu['relayed_frames']} frames")
        print(f"  ({cpu['frames_per_s']:.0f} relayed frames/s on loopback, {IN_FLIGHT} in flight)")
        print(f"relay memory per idle reservation ({mem['reservations']} held):")
        print(f"  {mem['bytes_per_reservation'] / 1024:.1f} KB (tracemalloc)", end="")
        print(f", {mem['rss_kb_per_reservation']:.1f} KB (RSS delta)")
        print(f"  target < {TARGET_BYTES_PER_RESERVATION // 1024} KB: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--reservations", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        asyncio.run(child())
        sys.exit(0)
    sys.exit(asyncio.run(main(ns)))
