"""Sealed command round trip over the P2P binding, against the raw crypto floor, in one run.

peer -> WebSocket -> gateway (open, verify, replay check, ACL, audit) -> simulated lock ->
sealed reply -> peer (open, verify). The simulated bolt moves instantly here (bolt_travel_s 0),
so the figures are the protocol's own cost. Two runs: with session keys (the default of the
peer client: after the first sealed request, session frames, docs/protocol.md §8) and with
every message sealed (`session_keys.enabled = False`). The floor is the four public-key operations a
request and its reply need at minimum (2 x (ECDH + sign) + 2 x (ECDH + verify), plus AES-GCM),
measured with `cryptography` in the same run (TESTING-NOTES: about 0.42 ms on the reference box).

    .venv/bin/python bench/bench_p2p.py [--quick] [--json]

Target (issue 3): round-trip p50 at most 3x the crypto floor.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant
from gateway.app import Gateway
from gateway.config import LockSafety, P2pConfig, default_config
from gateway.identity import generate_keypair
from gateway.peer import PeerClient
from gateway.state import StateDir

TARGET_FACTOR = 3.0  # round-trip p50 at most this many times the crypto floor


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def crypto_floor_ms(n: int) -> float:
    """Median of one request+reply's minimal public-key work, in milliseconds."""
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    data = os.urandom(200)
    aead = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    sig = a.sign(data, ec.ECDSA(hashes.SHA256()))
    pa = a.public_key()

    def one() -> None:
        for _ in range(2):  # request, then reply
            eph = ec.generate_private_key(ec.SECP256R1())
            eph.exchange(ec.ECDH(), b.public_key())  # sender: ephemeral ECDH
            a.sign(data, ec.ECDSA(hashes.SHA256()))  # sender: sign
            ct = aead.encrypt(nonce, data, None)
            b.exchange(ec.ECDH(), eph.public_key())  # receiver: ECDH
            aead.decrypt(nonce, ct, None)
            pa.verify(sig, data, ec.ECDSA(hashes.SHA256()))  # receiver: verify

    times = []
    for _ in range(50):
        one()
    for _ in range(n):
        t0 = time.perf_counter()
        one()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def run(n: int, concurrency: int, sessions: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "gw"
        gw_key, _ = StateDir(state).init_identity()
        owner, peer = generate_keypair(), generate_keypair()
        store = AclStore(state, gw_key.id)
        store.pin_owner(owner.public)
        acl = with_grant(
            new_acl(gw_key.id),
            Grant.for_key(peer.public, things=["*"], ops=["readproperty", "invokeaction"]),
        )
        store.install(sign_acl(acl, owner))
        cfg = default_config(state, http_port=0)
        lock = dataclasses.replace(
            cfg.things[0],
            driver_settings={"bolt_travel_s": 0.0},
            safety=LockSafety(auto_relock_s=0, jam_timeout_s=1.0),
        )
        cfg = dataclasses.replace(
            cfg,
            things=(lock,),
            p2p=P2pConfig(enabled=True, ws_port=0, dht_port=0, rate_per_s=1e6, burst=10**6),
        )
        gw = await Gateway.create(cfg)
        await gw.start()
        assert gw.p2p is not None
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            async with PeerClient(peer) as client:
                conn = await client.connect(gw.p2p.url, gw_key.public)
                conn.session_keys.enabled = sessions
                for _ in range(50):  # warm-up
                    await conn.invoke("front-door", "lock")
                times: list[float] = []
                t_start = time.perf_counter()
                per = n // concurrency

                async def worker() -> None:
                    for _ in range(per):
                        t0 = time.perf_counter()
                        await conn.invoke("front-door", "lock")
                        times.append((time.perf_counter() - t0) * 1000)

                seq = [await _timed(conn) for _ in range(n // 2)]
                t_start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.perf_counter() - t_start
                await conn.close()
        finally:
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            await gw.stop()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "p50_ms": statistics.median(seq),
        "p99_ms": pct(seq, 99),
        "throughput_rps": len(times) / elapsed,
        "loaded_p50_ms": statistics.median(times),
        "cpu_ms_per_cmd_both_ends": cpu * 1000 / (n // 2 + len(times) + 50),
    }


async def _timed(conn: object) -> float:
    t0 = time.perf_counter()
    await conn.invoke("front-door", "lock")  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) * 1000


def _report(name: str, res: dict[str, float], floor: float) -> None:
    print(f"  {name}:")
    print(
        f"    round trip, one at a time   p50 {res['p50_ms']:7.3f} ms   p99 {res['p99_ms']:7.3f} ms"
        f"   = {res['p50_ms'] / floor:.2f}x the floor"
    )
    print(
        f"    round trip, 8 in flight     p50 {res['loaded_p50_ms']:7.3f} ms   "
        f"throughput {res['throughput_rps']:7.0f} commands/s"
    )
    print(
        f"    CPU per command (peer and gateway in this one process) "
        f"{res['cpu_ms_per_cmd_both_ends']:.3f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    n = 400 if args.quick else 2000
    floor = crypto_floor_ms(200 if args.quick else 1000)
    res = asyncio.run(run(n, concurrency=8))
    sealed = asyncio.run(run(n, concurrency=8, sessions=False))
    res["crypto_floor_ms"] = floor
    res["factor"] = res["p50_ms"] / floor
    res["sealed_p50_ms"] = sealed["p50_ms"]
    res["sealed_factor"] = sealed["p50_ms"] / floor
    res["sealed_cpu_ms_per_cmd_both_ends"] = sealed["cpu_ms_per_cmd_both_ends"]
    print(f"command round trip, {n // 2} sequential + {n} with 8 in flight, loopback")
    print(f"  crypto floor (4 ECDH/sign/verify pairs + AES-GCM) p50 {floor:7.3f} ms")
    _report("session keys (the client's default)", res, floor)
    _report("every message sealed", sealed, floor)
    ok = res["factor"] <= TARGET_FACTOR
    print(
        f"  target p50 <= {TARGET_FACTOR:.0f}x floor: {res['factor']:.2f}x "
        f"{'PASS' if ok else 'FAIL'} (sealed only: {res['sealed_factor']:.2f}x)"
    )
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
