"""What a delegation chain costs: per check, and per authenticated HTTP read, in the same run.

Run: .venv/bin/python bench/bench_delegation.py [--requests 3000] [--concurrency 16] [--json]

1. `verify_chain` alone, for chains of 1..4 links: cold (every signature verified: the first
   request with a chain) and warm (links parsed and signatures checked once per link text, as
   on every later request;
   the rest is re-checked against the current ACL each time, so revocation stays immediate).
2. A real gateway (`streembit-gateway demo`, HTTP only, 127.0.0.1): the same property read by
   Alice on her own grant, by the cleaner with a 1-link chain and by a helper with a 2-link chain
   (Streembit-Delegation header, jwk-bearing token). Server CPU per request (its /proc stat) and
   p50 at concurrency 1, as in bench/bench_http.py. docs/acl.md section 6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_http import (  # bench/ is on sys.path when this script runs
    GATEWAY,
    PEER,
    Result,
    cli_id,
    load,
    run_cli,
    spawn_until_ready,
)

from gateway.acl import Acl, Grant
from gateway.acl.delegation import HTTP_HEADER, _parse_link, sign_link
from gateway.acl.dlg_verify import _signed_by, verify_chain
from gateway.auth import issue_token
from gateway.identity import generate_keypair, load_keypair

GW = "bench-gateway-id-0000000000000000000000000"


def verify_costs(rounds: int) -> list[dict[str, float]]:
    """Microseconds per verify_chain, cold and warm, for 1..4 links."""
    keys = [generate_keypair() for _ in range(5)]
    now = int(time.time())
    grant = Grant.for_key(keys[0].public, things=["*"], ops=["readproperty"], delegate=4)
    acl = Acl(gateway=GW, version=1, iat=now, grants=(grant,))
    links: list[str] = []
    for i in range(4):
        parent = links[-1] if links else None
        links.append(
            sign_link(keys[i], to=keys[i + 1].id, gateway_id=GW, things=["*"],
                      ops=["readproperty"], exp=now + 3600, depth=3 - i, parent=parent)
        )  # fmt: skip
    at = datetime.now(UTC)
    out = []
    for n in range(1, 5):
        chain, holder = links[:n], keys[n].id
        cold, warm = [], []
        for _ in range(rounds):
            _signed_by.cache_clear()
            _parse_link.cache_clear()
            t = time.perf_counter()
            verify_chain(chain, acl=acl, gateway_id=GW, holder=holder, now=at)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            for _ in range(20):
                verify_chain(chain, acl=acl, gateway_id=GW, holder=holder, now=at)
            warm.append((time.perf_counter() - t) / 20)
        out.append(
            {"links": n, "cold_us": statistics.median(cold) * 1e6,
             "warm_us": statistics.median(warm) * 1e6}
        )  # fmt: skip
    return out


async def http_costs(args: argparse.Namespace, work: Path) -> list[Result]:
    keys = work / "keys"
    keys.mkdir()
    for who in ("owner", "alice", "cleaner", "helper"):
        run_cli(PEER, "keygen", "--key", keys / who, "--json")
    state = work / "gw-state"
    gw_id = cli_id(run_cli(GATEWAY, "init", "--state", state, "--json"))
    run_cli(GATEWAY, "provision", "--state", state, "--owner-key", keys / "owner.pub", "--json")
    acl = work / "acl.jws"
    run_cli(PEER, "acl", "grant", "--key", keys / "owner", "--acl", acl, "--gateway", gw_id,
            "--subject", keys / "alice.pub", "--things", "living-room", "--ops", "readproperty",
            "--delegate", "2")  # fmt: skip
    run_cli(GATEWAY, "acl", "apply", "--state", state, acl)
    one, two = work / "one.dlg", work / "two.dlg"
    base = ["delegate", "--gateway", gw_id, "--things", "living-room", "--ops", "readproperty"]
    run_cli(PEER, *base, "--key", keys / "alice", "--to", keys / "cleaner.pub", "--depth", "1",
            "--out", one)  # fmt: skip
    run_cli(PEER, *base, "--key", keys / "cleaner", "--to", keys / "helper.pub", "--parent", one,
            "--out", two)  # fmt: skip
    server = spawn_until_ready(
        "gateway",
        [str(GATEWAY), "demo", "--state", str(state), "--http-port", "0", "--no-p2p", "--json"],
        "http",
        work,
    )
    common = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_seconds": 60.0,
        "warmup": 200,
    }
    results = []
    try:
        url = f"{str(server.info['http']).rstrip('/')}/things/living-room/properties/temperature"
        cases = [
            ("grant", "alice", None),
            ("chain of 1", "cleaner", one),
            ("chain of 2", "helper", two),
        ]
        for label, who, chain_file in cases:
            kp = load_keypair(keys / who)
            token = issue_token(kp, audience=gw_id, ttl=3600, embed_key=chain_file is not None)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if chain_file is not None:
                headers[HTTP_HEADER] = "~".join(chain_file.read_text().split())
            results.append(await load(label, "GET", url, headers, None, server, **common))
    finally:
        server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=30, help="verify_chain rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    print("verify_chain ...", file=sys.stderr)
    verify = verify_costs(args.rounds)
    print("HTTP reads against a real gateway ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-dlg-") as tmp:
        http = asyncio.run(http_costs(args, Path(tmp)))
    if args.json:
        rows = [
            {"case": r.label, "cpu_per_req_ms": r.cpu_per_req_ms, "c1_p50_ms": r.c1_p50_ms,
             "ok": r.ok, "requests": r.requests}
            for r in http
        ]  # fmt: skip
        print(json.dumps({"verify_chain": verify, "http": rows}, indent=2))
        return 0
    print("verify_chain (µs)      cold (signatures)   warm (cached)")
    for v in verify:
        print(f"  {v['links']} link(s)          {v['cold_us']:10.1f}        {v['warm_us']:10.1f}")
    base = http[0].cpu_per_req_ms or 0.0
    print("\nHTTP read              CPU/request (ms)    +vs grant    p50 c=1 (ms)   ok/requests")
    for r in http:
        extra = f"{(r.cpu_per_req_ms - base) * 1000:+7.1f} µs" if r is not http[0] else "    —    "
        print(f"  {r.label:<20} {r.cpu_per_req_ms:10.3f}        {extra}   {r.c1_p50_ms:8.2f}"
              f"      {r.ok}/{r.requests}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
