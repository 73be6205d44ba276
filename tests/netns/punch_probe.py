"""Hole-punch probes for the NAT lab (tests/test_reach_punch.py); one JSON object per line.

  observer --port P            an aiohttp observer: GET /relay/v1/observe answers
                               {"ip": ..., "port": ...} (the relays' contract); prints
                               {"ready": true}
  punch --role R --observer H:P [--deadline S] [--dial S]
                               one gateway.reach.punch.punch() whose relayed session is this
                               process's stdin/stdout: each message it sends is printed as
                               {"to_peer": MSG}; each line {"from_peer": MSG} read from stdin is
                               the other side's (the responder starts from the first one). Then
                               "hello from R" is sent over the punched socket and the other side's
                               line read back. Prints {"result": {...}} last.

The test process is the relay: it copies every "to_peer" of one probe as "from_peer" to the
other's stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.errors import ReachError
from gateway.reach.observe import OBSERVE_PATH
from gateway.reach.punch import PunchTiming, punch

DATA_TIMEOUT_S = 5.0


def out(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


# -- the observer (the relays' GET /relay/v1/observe, same contract) ---------------------------
async def observe_handler(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return web.json_response({"error": "no peer address"}, status=500)
    return web.json_response({"ip": peer[0], "port": peer[1]})


def observer_app() -> web.Application:
    app = web.Application()
    app.router.add_get(OBSERVE_PATH, observe_handler)
    return app


async def serve_observer(host: str, port: int) -> None:
    runner = web.AppRunner(observer_app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    out({"ready": True})
    await asyncio.Event().wait()


# -- one punch over stdin/stdout ---------------------------------------------------------------
async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def next_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise ReachError("the relay (stdin) closed", code="relay_unreachable")
    msg: dict[str, Any] = json.loads(line)["from_peer"]
    return msg


async def run_punch(role: str, observer: tuple[str, int], timing: PunchTiming) -> dict[str, Any]:
    reader = await stdin_reader()

    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        out({"to_peer": msg})
        return await next_message(reader)

    incoming = await next_message(reader) if role == "responder" else None
    started = time.monotonic()
    try:
        res = await punch(role, exchange, observer, incoming=incoming, timing=timing)  # type: ignore[arg-type]
    except ReachError as exc:
        return {"ok": False, "code": exc.code, "reason": str(exc),
                "seconds": round(time.monotonic() - started, 3)}  # fmt: skip
    punched = round(time.monotonic() - started, 3)
    r, w = await asyncio.open_connection(sock=res.sock)
    try:
        w.write(f"hello from {role}\n".encode())
        await w.drain()
        async with asyncio.timeout(DATA_TIMEOUT_S):
            got = (await r.readline()).decode().strip()
    finally:
        w.close()
    plan = res.plan
    return {"ok": True, "seconds": punched, "got": got, "peer": list(res.peer),
            "local": list(plan.local), "observed": list(plan.observed),
            "remote": [list(a) for a in plan.remote], "rtt_s": plan.rtt_s}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("observer")
    o.add_argument("--host", default="0.0.0.0")
    o.add_argument("--port", type=int, required=True)
    c = sub.add_parser("punch")
    c.add_argument("--role", choices=["initiator", "responder"], required=True)
    c.add_argument("--observer", type=hostport, required=True)
    c.add_argument("--deadline", type=float, default=10.0)
    c.add_argument("--dial", type=float, default=4.0)
    c.add_argument("--no-listen", action="store_true", help="dial only (no accept)")
    args = p.parse_args()
    if args.cmd == "observer":
        asyncio.run(serve_observer(args.host, args.port))
        return
    timing = PunchTiming(deadline_s=args.deadline, dial_s=args.dial, listen=not args.no_listen)
    out({"result": asyncio.run(run_punch(args.role, args.observer, timing))})


if __name__ == "__main__":
    main()
