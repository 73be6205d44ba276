"""HTTP load bench: the Streembit gateway against a node-wot reference servient, in one run.

Drives, one after the other (never at once, so they do not share the CPU):
  gateway/read    GET  /things/living-room/properties/temperature   (bearer JWT, ACL, audit)
  gateway/invoke  POST /things/front-door/actions/lock              (bearer JWT, ACL, audit)
  node-wot/read   GET  .../thermostat/properties/temperature        (nosec, node-wot 0.9.2)

For each: p50 / p99 latency, throughput, p50 / p99 one request at a time (c=1, after the
concurrent phase, not in the CPU figure), server CPU per request (utime+stime of the server process
from /proc/PID/stat around the measured phase), server RSS after the load (VmRSS) and start-up
time (spawn to ready line). The load generator is one aiohttp client with N concurrent
connections, a fixed request count and a time bound.

    .venv/bin/python bench/bench_http.py            # 10000 requests per target, 16 connections
    .venv/bin/python bench/bench_http.py --quick    # 2000 requests, 8 connections
    .venv/bin/python bench/bench_http.py --only nodewot --json

Needs: the gateway's console scripts beside this Python (the venv), Node 20 and
`(cd tests/interop && npm ci)` for the node-wot half. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GATEWAY = BIN / "streembit-gateway"
PEER = BIN / "streembit-peer"
NODEWOT_REF = ROOT / "bench" / "nodewot_reference.js"
INTEROP_DIR = ROOT / "tests" / "interop"

TARGET_RSS_MB = 60.0
C1_REQUESTS = 1000  # sequential requests per target after the concurrent phase (c=1 latency)
TARGET_READY_S = 1.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- /proc ------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    ready_s: float
    info: dict[str, object]
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _drain(stream: IO[str]) -> None:
    with contextlib.suppress(ValueError, OSError):
        for _line in stream:
            pass


def spawn_until_ready(
    name: str, argv: list[str], ready_key: str, workdir: Path, timeout: float = 30.0
) -> Server:
    """Start argv; return once it prints a JSON line holding ready_key (time from spawn to it)."""
    stderr_path = workdir / f"{name}.stderr"
    env = dict(os.environ)
    env.pop("PORT", None)
    env.pop("WOT_PORT", None)
    with open(stderr_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=workdir
        )
    deadline = t0 + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise RuntimeError(f"{name}: no ready line within {timeout} s")
            if not sel.select(timeout=remaining):
                continue
            line = proc.stdout.readline()
            if line == "":
                raise RuntimeError(
                    f"{name}: exited ({proc.wait()}) before ready: "
                    f"{stderr_path.read_text()[-2000:]}"
                )
            with contextlib.suppress(ValueError):
                info = json.loads(line)
                if isinstance(info, dict) and ready_key in info:
                    ready = time.perf_counter() - t0
                    # keep draining stdout, or a chatty server would block on a full pipe
                    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
                    return Server(name, proc, ready, info, stderr_path)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        sel.close()


def run_cli(*argv: str | Path) -> str:
    res = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
        )
    return res.stdout


def cli_id(out: str) -> str:
    out = out.strip()
    with contextlib.suppress(ValueError):
        doc = json.loads(out)
        if isinstance(doc, dict) and "id" in doc:
            return str(doc["id"])
    return out.splitlines()[-1].strip()


def start_gateway(workdir: Path) -> tuple[Server, str]:
    """Keys, provisioning, an ACL for the bench user, then `demo`. Returns (server, user token)."""
    for exe in (GATEWAY, PEER):
        if not exe.exists():
            raise RuntimeError(f"{exe} not found (pip install -e . in the venv)")
    state = workdir / "gw-state"
    keys = workdir / "keys"
    keys.mkdir()
    owner, user = keys / "owner.pem", keys / "user.pem"
    run_cli(PEER, "keygen", "--key", owner, "--json")
    run_cli(PEER, "keygen", "--key", user, "--json")
    gw_id = cli_id(run_cli(GATEWAY, "init", "--state", state, "--json"))
    run_cli(GATEWAY, "provision", "--state", state, "--owner-key", f"{owner}.pub", "--json")
    acl = workdir / "acl.jws"
    run_cli(
        PEER,
        "acl",
        "grant",
        "--key",
        owner,
        "--acl",
        acl,
        "--gateway",
        gw_id,
        "--subject",
        f"{user}.pub",
        "--things",
        "living-room,front-door",
        "--ops",
        "readproperty,invokeaction",
    )
    run_cli(GATEWAY, "acl", "apply", "--state", state, acl)
    token = run_cli(PEER, "token", "--key", user, f"--gateway={gw_id}", "--ttl", "3600").strip()
    token = token.splitlines()[-1].strip()
    server = spawn_until_ready(
        "gateway",
        [str(GATEWAY), "demo", "--state", str(state), "--http-port", "0", "--no-p2p", "--json"],
        "http",
        workdir,
    )
    return server, token


def start_nodewot(workdir: Path) -> Server:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node not found on PATH")
    if not (INTEROP_DIR / "node_modules" / "@node-wot" / "core").is_dir():
        raise RuntimeError("node-wot missing: run `npm ci` in tests/interop")
    return spawn_until_ready("node-wot", [node, str(NODEWOT_REF), "0"], "ready", workdir)


# --- load -------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    c1_p50_ms: float = float("nan")  # one request at a time (no queueing): the path's latency
    c1_p99_ms: float = float("nan")
    rps: float = float("nan")
    cpu_per_req_ms: float = float("nan")
    rss_mb: float = float("nan")
    ready_s: float = float("nan")
    wall_s: float = float("nan")
    truncated: bool = False
    note: str = ""


async def load(
    label: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    server: Server,
    requests: int,
    concurrency: int,
    max_seconds: float,
    warmup: int,
) -> Result:
    res = Result(label, ready_s=server.ready_s)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[float, str | None]:
            t = time.perf_counter()
            try:
                async with session.request(method, url, headers=headers, data=body) as resp:
                    await resp.read()
                    err = None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                err = type(e).__name__
            return time.perf_counter() - t, err

        # warm-up (connections, caches, JIT): not measured
        for _ in range(max(1, warmup // concurrency)):
            await asyncio.gather(*(one() for _ in range(concurrency)))

        latencies: list[float] = []
        issued = 0
        deadline = time.perf_counter() + max_seconds

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                dt, err = await one()
                res.requests += 1
                if err is None:
                    res.ok += 1
                    latencies.append(dt)
                else:
                    res.errors[err] = res.errors.get(err, 0) + 1

        cpu0 = proc_cpu_seconds(server.pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        res.wall_s = time.perf_counter() - t0
        cpu1 = proc_cpu_seconds(server.pid)

        # then one request at a time: latency without queueing behind other connections
        c1: list[float] = []
        for _ in range(min(requests, C1_REQUESTS)):
            dt, err = await one()
            if err is None:
                c1.append(dt)
        if c1:
            c1.sort()
            res.c1_p50_ms = statistics.median(c1) * 1000
            res.c1_p99_ms = c1[min(len(c1) - 1, int(0.99 * len(c1)))] * 1000

    res.truncated = res.requests < requests
    res.rss_mb = proc_rss_mb(server.pid)
    if latencies:
        latencies.sort()
        res.p50_ms = statistics.median(latencies) * 1000
        res.p99_ms = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
    if res.requests:
        res.rps = res.requests / res.wall_s
        res.cpu_per_req_ms = (cpu1 - cpu0) * 1000 / res.requests
    return res


# --- report -----------------------------------------------------------------------------------


def fmt(v: float, digits: int = 2) -> str:
    return "-" if v != v else f"{v:.{digits}f}"  # NaN -> "-"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: list[Result], cpu_tick_ms: float) -> list[str]:
    head = (
        f"{'target':<16} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'req/s':>8} {'CPU/req ms':>10} {'RSS MB':>7} {'ready s':>7} "
        f"{'c=1 p50':>8} {'c=1 p99':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        errs = sum(r.errors.values())
        lines.append(
            f"{r.label:<16} {r.requests:>8} {errs:>6} {fmt(r.p50_ms):>8} {fmt(r.p99_ms):>8} "
            f"{fmt(r.rps, 0):>8} {fmt(r.cpu_per_req_ms, 3):>10} {fmt(r.rss_mb, 1):>7} "
            f"{fmt(r.ready_s):>7} {fmt(r.c1_p50_ms):>8} {fmt(r.c1_p99_ms):>8}"
            + (f"   {r.note}" if r.note else "")
            + (f"   errors: {r.errors}" if r.errors else "")
            + ("   (time bound hit)" if r.truncated else "")
        )
    by = {r.label: r for r in results}
    gw_read, nw_read = by.get("gateway/read"), by.get("node-wot/read")
    lines.append("")
    lines.append("targets:")
    if gw_read and nw_read and gw_read.requests and nw_read.requests:
        lines.append(
            f"  gateway CPU per read {fmt(gw_read.cpu_per_req_ms, 3)} ms "
            f"<= node-wot CPU per open read {fmt(nw_read.cpu_per_req_ms, 3)} ms: "
            f"{verdict(gw_read.cpu_per_req_ms <= nw_read.cpu_per_req_ms)} "
            f"({gw_read.cpu_per_req_ms / nw_read.cpu_per_req_ms:.2f}x)"
        )
        lines.append(
            f"  (not a target) p50 at c=1: gateway {fmt(gw_read.c1_p50_ms)} ms, node-wot "
            f"{fmt(nw_read.c1_p50_ms)} ms ({gw_read.c1_p50_ms / nw_read.c1_p50_ms:.2f}x)"
        )
    else:
        lines.append("  gateway CPU per read <= node-wot CPU per open read: not measured")
    gw = [r for r in results if r.label.startswith("gateway/") and r.requests]
    if gw:
        rss = max(r.rss_mb for r in gw)
        lines.append(
            f"  gateway RSS after load {fmt(rss, 1)} MB < {TARGET_RSS_MB:.0f} MB: "
            f"{verdict(rss < TARGET_RSS_MB)}"
        )
        ready = gw[0].ready_s
        ok = ready < TARGET_READY_S
        lines.append(f"  gateway ready {fmt(ready)} s < {TARGET_READY_S} s: {verdict(ok)}")
    else:
        lines.append("  gateway RSS < 60 MB, ready < 1.5 s: not measured")
    lines.append(
        f"  (CPU is read in clock ticks of {cpu_tick_ms:.0f} ms: per-request figures are "
        f"exact to about {cpu_tick_ms:.0f} ms / request count)"
    )
    return lines


def targets_met(results: list[Result]) -> bool:
    by = {r.label: r for r in results}
    gw = [r for r in results if r.label.startswith("gateway/") and r.requests]
    if not gw or "node-wot/read" not in by or "gateway/read" not in by:
        return False
    return (
        by["gateway/read"].cpu_per_req_ms <= by["node-wot/read"].cpu_per_req_ms
        and max(r.rss_mb for r in gw) < TARGET_RSS_MB
        and gw[0].ready_s < TARGET_READY_S
        and all(not r.errors for r in results)
    )


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, workdir: Path) -> list[Result]:
    results: list[Result] = []
    common = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_seconds": args.max_seconds,
        "warmup": args.warmup,
    }

    if args.only in (None, "gateway"):
        server: Server | None = None
        try:
            server, token = start_gateway(workdir)
            base = str(server.info["http"]).rstrip("/")
            auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            results.append(
                await load(
                    "gateway/read",
                    "GET",
                    f"{base}/things/living-room/properties/temperature",
                    auth,
                    None,
                    server,
                    **common,
                )
            )
            results.append(
                await load(
                    "gateway/invoke",
                    "POST",
                    f"{base}/things/front-door/actions/lock",
                    {**auth, "Content-Type": "application/json"},
                    b"",
                    server,
                    **common,
                )
            )
        except Exception as e:
            results.append(Result("gateway/read", note=f"not run: {str(e).splitlines()[0]}"))
            print(f"gateway: {e}", file=sys.stderr)
        finally:
            if server is not None:
                server.stop()

    if args.only in (None, "nodewot"):
        ref: Server | None = None
        try:
            ref = start_nodewot(workdir)
            results.append(
                await load(
                    "node-wot/read",
                    "GET",
                    str(ref.info["temperature"]),
                    {"Accept": "application/json"},
                    None,
                    ref,
                    **common,
                )
            )
        except Exception as e:
            results.append(Result("node-wot/read", note=f"not run: {str(e).splitlines()[0]}"))
            print(f"node-wot: {e}", file=sys.stderr)
        finally:
            if ref is not None:
                ref.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2000 requests, 8 connections, 20 s bound")
    p.add_argument("--requests", type=int, help="requests per target (default 10000)")
    p.add_argument("--concurrency", type=int, help="concurrent connections (default 16)")
    p.add_argument("--max-seconds", type=float, help="time bound per target (default 60)")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="unmeasured requests first (default 3000: node-wot needs thousands to warm up)",
    )
    p.add_argument("--only", choices=["gateway", "nodewot"], help="run one side only")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, state)")
    args = p.parse_args(argv)
    quick = args.quick
    args.requests = args.requests or (2000 if quick else 10000)
    args.concurrency = args.concurrency or (8 if quick else 16)
    args.max_seconds = args.max_seconds or (20.0 if quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else 3000

    workdir = Path(tempfile.mkdtemp(prefix="streembit-bench-"))
    try:
        results = asyncio.run(run(args, workdir))
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"bench_http: {args.requests} requests/target, {args.concurrency} connections, "
        f"bound {args.max_seconds:.0f} s, {os.cpu_count()} CPUs (the client shares them), "
        f"load average {os.getloadavg()[0]:.2f} (latency and req/s need a quiet machine; "
        f"CPU/req is steadier)"
    )
    print("\n".join(report(results, 1000 / CLK_TCK)))
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    if args.check and not targets_met(results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
