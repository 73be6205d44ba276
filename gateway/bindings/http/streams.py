"""Observation and event delivery over HTTP: long-poll (node-wot) and Server-Sent Events.

Both re-check the ACL before every notification they send (a revocation ends a live stream at once)
and end when the bearer token expires.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from gateway.requests import Request, RequestProcessor
from gateway.things.bus import Notification, Subscription

LONGPOLL_TIMEOUT_S = 300.0  # hold a long-poll this long, then answer with the current value / 204
SSE_KEEPALIVE_S = 15.0  # comment line so proxies and clients see the stream is alive
REVOCATION_CHECK_S = 1.0  # while idle, re-check the ACL this often so a revoked stream closes


def _payload(n: Notification) -> bytes:
    return json.dumps(n.data, separators=(",", ":")).encode()


async def longpoll(
    request: web.Request,
    sub: Subscription,
    req: Request,
    processor: RequestProcessor,
    hold_s: float,
    token_exp: float,
) -> web.StreamResponse:
    """Answer with the next notification, or after `hold_s` with the last value (properties)
    or 204 (events) after `hold_s`. node-wot re-issues the request after every answer."""
    # never hold past the bearer token's expiry: the answer then is the same as on a timeout
    deadline = time.monotonic() + max(0.0, min(hold_s, token_exp - time.time()))
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            last = sub.bus.last.get((sub.kind, sub.name))
            if sub.kind == "property" and last is not None:
                return web.Response(body=_payload(last), content_type="application/json")
            return web.Response(status=204)
        try:
            n = await asyncio.wait_for(sub.get(), min(left, REVOCATION_CHECK_S))
        except TimeoutError:
            if not await processor.still_allowed(req):
                return web.json_response(
                    {"error": "forbidden", "reason": "access revoked"}, status=403
                )
            continue
        if not await processor.still_allowed(req):
            return web.json_response({"error": "forbidden", "reason": "access revoked"}, status=403)
        return web.Response(body=_payload(n), content_type="application/json")


async def sse(
    request: web.Request,
    sub: Subscription,
    req: Request,
    processor: RequestProcessor,
    token_exp: float,
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    await resp.write(b": streembit\n\n")
    last_write = time.monotonic()
    while time.time() < token_exp:
        try:
            n: Any = await asyncio.wait_for(sub.get(), REVOCATION_CHECK_S)
        except TimeoutError:
            n = None
        if not await processor.still_allowed(req):
            await resp.write(
                b'event: error\ndata: {"error":"forbidden","reason":"access revoked"}\n\n'
            )
            break
        if n is None:
            if time.monotonic() - last_write >= SSE_KEEPALIVE_S:
                await resp.write(b": keep-alive\n\n")
                last_write = time.monotonic()
            continue
        await resp.write(b"id: %d\nevent: %s\ndata: %s\n\n" % (n.seq, n.name.encode(), _payload(n)))
        last_write = time.monotonic()
    else:
        await resp.write(
            b'event: error\ndata: {"error":"unauthenticated","reason":"token expired"}\n\n'
        )
    await resp.write_eof()
    return resp
