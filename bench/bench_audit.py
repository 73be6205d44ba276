"""CPU per audited record: the plain audit log against the hash-chained one, in the same run.

Run: .venv/bin/python bench/bench_audit.py [--n 20000] [--rounds 3] [--json]

Each round opens a fresh log in a temporary folder, appends N records the way the gateway does
(`await log.append(rec)`, CONCURRENCY appends in flight, group commit), closes it (every record
imported into SQLite, a checkpoint signed at the stop) and reads the process CPU time
(`time.process_time`: every thread, user + system). "plain" runs with the chain switched off
(`Store.chain = False`, no checkpoint signer), "chained" as shipped. Rounds alternate, and the
median per record is reported, so both see the same machine state. The chain's own floor (one
SHA-256 + the canonical bytes per record) is measured alone too. docs/audit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from gateway.audit import AUDIT_FILE, AuditLog, AuditRecord
from gateway.audit.chain import GENESIS, link
from gateway.audit.record import to_row
from gateway.identity import KeyPair, generate_keypair

CONCURRENCY = 64  # appends in flight, as under HTTP load
TARGET_PCT = 5.0  # the aim: the chain adds less than this to the CPU per audited record


def rec(i: int) -> AuditRecord:
    return AuditRecord(
        ts=time.time(),
        subject="J2y1V0o5cOaV7rX0i3xv6c4m3kq1o8w2pQ9sY5tZ7uA",
        binding="http",
        op="readproperty",
        thing="living-room",
        affordance="temperature",
        allowed=True,
        rule="grant:1",
        reason="ok",
        request_id=f"req-{i:08d}",
    )


async def _append_all(log: AuditLog, n: int) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await log.append(rec(i))

    await asyncio.gather(*(one(i) for i in range(n)))


def one_round(n: int, chained: bool, kp: KeyPair) -> float:
    """CPU microseconds per record for N records (open, appends, close)."""
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        t0 = time.process_time()
        log = AuditLog.open(Path(tmp) / AUDIT_FILE, signer=kp if chained else None)
        log._store.chain = chained  # the switch exists for this measurement only
        asyncio.run(_append_all(log, n))
        log.close()
        return (time.process_time() - t0) * 1e6 / n


def chain_floor(n: int) -> float:
    row = to_row(rec(0))
    prev = GENESIS
    t0 = time.process_time()
    for i in range(n):
        prev = link(prev, i + 1, i + 1, row)
    return (time.process_time() - t0) * 1e6 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000, help="records per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kp = generate_keypair()
    one_round(min(args.n, 2000), True, kp)  # warm-up: imports, caches
    plain: list[float] = []
    chained: list[float] = []
    for _ in range(args.rounds):
        plain.append(one_round(args.n, False, kp))
        chained.append(one_round(args.n, True, kp))
    p, c = statistics.median(plain), statistics.median(chained)
    result = {
        "records": args.n,
        "rounds": args.rounds,
        "plain_us_per_record": round(p, 2),
        "chained_us_per_record": round(c, 2),
        "extra_pct": round((c - p) * 100 / p, 2),
        "chain_floor_us_per_record": round(chain_floor(args.n), 3),
        "target_pct": TARGET_PCT,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
