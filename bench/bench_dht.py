"""DHT benchmark: plain kademlia vs the validating DHT, side by side, in one process.

For each network size (default 100 and 500 nodes on 127.0.0.1) and each implementation:
start the nodes (the same seeded node ids for both; each bootstraps through the first), then

1. all nodes up: `--ops` stores of distinct keys from random nodes, then a lookup of each key
   from another random node (sequential: clean per-operation latency);
2. 30 % of the nodes stopped: lookups of the keys stored before, then `--ops` new stores and
   their lookups (run `--concurrency` at a time, since plain kademlia's 5 s timeouts would
   otherwise take many minutes; the validating DHT pays for that in event-loop contention).

Both implementations store the same values under the same keys: signed contact records (made
beforehand; the signing cost is reported on its own). A plain kademlia store "succeeds" when
`set()` returns True; the bench also counts the nodes that really hold the value afterwards.
A lookup succeeds when it returns exactly the stored record.

Then the flood scenario of bench/bench_dht_flood.py (issue 16): 24 nodes, 10 000 valid records
under fresh keys and 200 Sybil ids from one source, genuine lookups during and after the flood
and datagrams per join, for both implementations (`--no-flood` skips it, `--flood-only` runs
only it).

    .venv/bin/python bench/bench_dht.py            # 100 and 500 nodes, 200 keys per scenario
    .venv/bin/python bench/bench_dht.py --quick    # 100 nodes, 50 keys
    .venv/bin/python bench/bench_dht.py --flood-only
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import bench_dht_flood  # bench/ is on sys.path when this script runs
from kademlia.network import Server

from gateway.identity import generate_keypair
from gateway.p2p import DhtNode, dht_key_digest, make_contact_record, verify_record

CHURN = 0.30
TARGET_LOOKUP_P50_CHURN = 0.5  # seconds
TARGET_OVERHEAD = 0.30  # signed records vs plain kademlia, all nodes up


class Net(Protocol):
    name: str

    async def start(self, ids: list[bytes]) -> float: ...
    async def stop_fraction(self, fraction: float, rng: random.Random) -> None: ...
    async def close(self) -> None: ...
    def alive(self) -> list[int]: ...
    async def store(self, i: int, key: str, value: str) -> bool: ...
    async def lookup(self, i: int, key: str) -> str | None: ...
    def holders(self, key: str, value: str) -> int: ...
    def routing(self) -> float: ...


class PlainNet:
    """Stock kademlia 2.2.3 (5 s RPC timeout, unsigned values, last write wins)."""

    name = "plain kademlia"

    def __init__(self) -> None:
        self.nodes: list[Server] = []
        self.ports: list[int] = []
        self.up: list[bool] = []

    async def start(self, ids: list[bytes]) -> float:
        started = time.perf_counter()
        for node_id in ids:
            server = Server(node_id=node_id)
            await server.listen(0, interface="127.0.0.1")
            port = server.transport.get_extra_info("sockname")[1]
            if self.nodes:
                await server.bootstrap([("127.0.0.1", self.ports[0])])
            self.nodes.append(server)
            self.ports.append(port)
            self.up.append(True)
        return time.perf_counter() - started

    async def stop_fraction(self, fraction: float, rng: random.Random) -> None:
        for i in rng.sample(range(len(self.nodes)), int(len(self.nodes) * fraction)):
            self.nodes[i].stop()
            self.up[i] = False

    async def close(self) -> None:
        for i, server in enumerate(self.nodes):
            if self.up[i]:
                server.stop()
        await asyncio.sleep(0.1)

    def alive(self) -> list[int]:
        return [i for i, up in enumerate(self.up) if up]

    async def store(self, i: int, key: str, value: str) -> bool:
        try:
            return bool(await self.nodes[i].set(key, value))
        except ValueError:  # kademlia: max() of no nodes when the neighbour search gives up
            return False

    async def lookup(self, i: int, key: str) -> str | None:
        value = await self.nodes[i].get(key)
        return value if isinstance(value, str) else None

    def holders(self, key: str, value: str) -> int:
        dkey = dht_key_digest(key)
        return sum(1 for i in self.alive() if self.nodes[i].storage.get(dkey) == value)

    def routing(self) -> float:
        return statistics.mean(sum(len(b) for b in s.protocol.router.buckets) for s in self.nodes)


class ValidatingNet:
    """gateway.p2p.DhtNode with its defaults (1 s RPC timeout cap, signed records)."""

    name = "validating DHT"

    def __init__(self) -> None:
        self.nodes: list[DhtNode] = []
        self.up: list[bool] = []

    async def start(self, ids: list[bytes]) -> float:
        started = time.perf_counter()
        for node_id in ids:
            boot = [self.nodes[0].address] if self.nodes else []
            node = DhtNode(bootstrap=boot, node_id=node_id)
            await node.start()
            self.nodes.append(node)
            self.up.append(True)
        return time.perf_counter() - started

    async def stop_fraction(self, fraction: float, rng: random.Random) -> None:
        for i in rng.sample(range(len(self.nodes)), int(len(self.nodes) * fraction)):
            await self.nodes[i].stop()
            self.up[i] = False

    async def close(self) -> None:
        for i, node in enumerate(self.nodes):
            if self.up[i]:
                await node.stop()

    def alive(self) -> list[int]:
        return [i for i, up in enumerate(self.up) if up]

    async def store(self, i: int, key: str, value: str) -> bool:
        return await self.nodes[i].publish(value, keep_alive=False) > 0

    async def lookup(self, i: int, key: str) -> str | None:
        rec = await self.nodes[i].get(key)
        return rec.text if rec is not None else None

    def holders(self, key: str, value: str) -> int:
        dkey = dht_key_digest(key)
        return sum(1 for i in self.alive() if self.nodes[i].storage.get(dkey) == value)

    def routing(self) -> float:
        return statistics.mean(n.routing_size() for n in self.nodes)


@dataclass
class Result:
    scenario: str
    impl: str
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    total: int = 0
    note: str = ""

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(q * (len(data) - 1)))]


async def run_ops(
    ops: Sequence[Callable[[], Awaitable[bool]]], concurrency: int
) -> tuple[list[float], list[bool]]:
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = [0.0] * len(ops)
    oks: list[bool] = [False] * len(ops)

    async def one(k: int) -> None:
        async with sem:
            started = time.perf_counter()
            oks[k] = await ops[k]()
            lat[k] = time.perf_counter() - started

    await asyncio.gather(*(one(k) for k in range(len(ops))))
    return lat, oks


async def store_phase(
    net: Net, scenario: str, items: list[tuple[str, str]], rng: random.Random, conc: int
) -> tuple[Result, dict[str, int]]:
    alive = net.alive()
    origin = {key: rng.choice(alive) for key, _ in items}

    def op(key: str, value: str) -> Callable[[], Awaitable[bool]]:
        return lambda: net.store(origin[key], key, value)

    lat, oks = await run_ops([op(k, v) for k, v in items], conc)
    await asyncio.sleep(0.2)  # let fire-and-forget traffic settle before counting holders
    held = [net.holders(k, v) for k, v in items]
    really = sum(1 for h in held if h > 0)
    res = Result(scenario, net.name, lat, sum(oks), len(items))
    res.note = (
        f"reported ok {sum(oks)}, really stored {really}/{len(items)}, "
        f"replicas avg {statistics.mean(held):.1f} min {min(held)}"
    )
    return res, origin


async def lookup_phase(
    net: Net,
    scenario: str,
    items: list[tuple[str, str]],
    origin: dict[str, int],
    rng: random.Random,
    conc: int,
) -> Result:
    alive = net.alive()

    def op(key: str, value: str) -> Callable[[], Awaitable[bool]]:
        others = [i for i in alive if i != origin.get(key)]
        reader = rng.choice(others)

        async def go() -> bool:
            return await net.lookup(reader, key) == value

        return go

    lat, oks = await run_ops([op(k, v) for k, v in items], conc)
    return Result(scenario, net.name, lat, sum(oks), len(items))


async def bench_one(
    net: Net, n: int, batches: tuple[list[tuple[str, str]], list[tuple[str, str]]], args: Any
) -> tuple[list[Result], str]:
    rng = random.Random(args.seed)
    boot = await net.start([rng.randbytes(20) for _ in range(n)])  # same node ids for both
    info = f"{net.name}: bootstrap {boot:.1f} s, routing table avg {net.routing():.0f} contacts"
    before, during = batches
    out: list[Result] = []
    try:
        res, origin = await store_phase(net, "store, all up", before, rng, 1)
        out.append(res)
        out.append(await lookup_phase(net, "lookup, all up", before, origin, rng, 1))
        await net.stop_fraction(CHURN, rng)
        conc = args.concurrency
        out.append(
            await lookup_phase(net, "lookup, 30% stopped, stored before", before, origin, rng, conc)
        )
        res, origin2 = await store_phase(net, "store, 30% stopped", during, rng, conc)
        out.append(res)
        out.append(
            await lookup_phase(
                net, "lookup, 30% stopped, stored during", during, origin2, rng, conc
            )
        )
    finally:
        await net.close()
    return out, info


def fmt_ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def print_table(n: int, infos: list[str], results: list[Result]) -> None:
    print(f"\n== {n} nodes ==")
    for info in infos:
        print(f"   {info}")
    head = f"{'scenario':38} {'implementation':15} {'success':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"   {head}  notes")
    for r in results:
        print(
            f"   {r.scenario:38} {r.impl:15} {r.ok:>4}/{r.total:<4} {fmt_ms(r.pct(0.5))} "
            f"{fmt_ms(r.pct(0.99))}  {r.note}"
        )


def check_targets(n: int, results: list[Result]) -> list[str]:
    def get(scenario: str, impl: str) -> Result:
        return next(r for r in results if r.scenario == scenario and r.impl == impl)

    lines = []
    ours = [r for r in results if r.impl == ValidatingNet.name]
    all_ok = all(r.ok == r.total for r in ours)
    lines.append(
        f"{n} nodes: 100 % stores and lookups, with and without churn: "
        f"{'MET' if all_ok else 'MISSED'} "
        f"({', '.join(f'{r.ok}/{r.total}' for r in ours)})"
    )
    churn = [
        get(s, ValidatingNet.name)
        for s in ("lookup, 30% stopped, stored before", "lookup, 30% stopped, stored during")
    ]
    p50 = max(r.pct(0.5) for r in churn)
    lines.append(
        f"{n} nodes: lookup p50 with 30 % stopped < {TARGET_LOOKUP_P50_CHURN * 1000:.0f} ms:"
        f" {'MET' if p50 < TARGET_LOOKUP_P50_CHURN else 'MISSED'} ({p50 * 1000:.1f} ms)"
    )
    for scenario in ("store, all up", "lookup, all up"):
        plain = get(scenario, PlainNet.name).pct(0.5)
        mine = get(scenario, ValidatingNet.name).pct(0.5)
        over = mine / plain - 1
        lines.append(
            f"{n} nodes: {scenario.split(',')[0]} p50 overhead vs plain < {TARGET_OVERHEAD:.0%}: "
            f"{'MET' if over < TARGET_OVERHEAD else 'MISSED'} "
            f"({mine * 1000:.1f} vs {plain * 1000:.1f} ms, {over:+.0%})"
        )
    return lines


def verify_cost(text: str, key: str, rounds: int = 500) -> float:
    """Seconds per `verify_record` of one record (what every receiving node pays per store)."""
    started = time.perf_counter()
    for _ in range(rounds):
        verify_record(text, key=key)
    return (time.perf_counter() - started) / rounds


def make_items(count: int) -> tuple[list[tuple[str, str]], float]:
    keys = [generate_keypair() for _ in range(count)]
    started = time.perf_counter()
    items = [
        (
            kp.id,
            make_contact_record(
                kp,
                seq=1,
                addrs=[f"ws://127.0.0.1:{9000 + i}/p2p"],
                td_digest="sha256:bench",
                ttl=3600,
            ),
        )
        for i, kp in enumerate(keys)
    ]
    return items, (time.perf_counter() - started) / count


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 nodes, 50 keys per scenario")
    parser.add_argument("--sizes", default=None, help="comma-separated node counts (100,500)")
    parser.add_argument("--ops", type=int, default=None, help="keys per scenario (200)")
    parser.add_argument("--concurrency", type=int, default=25, help="ops in flight under churn")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-flood", action="store_true", help="skip the flood scenario")
    parser.add_argument("--flood-only", action="store_true", help="only the flood scenario")
    bench_dht_flood.add_arguments(parser)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("100" if args.quick else "100,500")).split(",")]
    ops = args.ops or (50 if args.quick else 200)
    logging.disable(logging.CRITICAL)  # kademlia logs every timeout at WARNING/ERROR

    print(
        f"DHT bench: sizes {sizes}, {ops} keys per scenario, {CHURN:.0%} stopped for churn, "
        f"churn ops {args.concurrency} in flight, Python {sys.version.split()[0]}"
    )
    targets: list[str] = []
    for n in [] if args.flood_only else sizes:
        before, sign_s = make_items(ops)
        during, _ = make_items(ops)
        ver_s = verify_cost(before[0][1], before[0][0])
        print(
            f"\n[{n} nodes] contact record: signing {sign_s * 1000:.2f} ms (owner, once, not in "
            f"the latencies below); verifying {ver_s * 1000:.2f} ms (each of the ~20 receivers "
            f"of a store, one after another in this one-process bench; once per lookup)"
        )
        results: list[Result] = []
        infos: list[str] = []
        for net in (PlainNet(), ValidatingNet()):
            started = time.perf_counter()
            res, info = await bench_one(net, n, (before, during), args)
            infos.append(f"{info}; run {time.perf_counter() - started:.0f} s")
            results.extend(res)
        order: dict[str, int] = {}
        for r in results:
            order.setdefault(r.scenario, len(order))
        results.sort(key=lambda r: (order[r.scenario], r.impl != PlainNet.name))
        print_table(n, infos, results)
        targets.extend(check_targets(n, results))
    if not args.no_flood:
        targets.extend(await bench_dht_flood.run(args))
    return bench_dht_flood.print_targets(targets)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
