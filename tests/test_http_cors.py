"""Cross-origin use of the HTTP API (gateway/bindings/http/cors.py) against a real gateway on
127.0.0.1: preflights answered for the API only, every API answer readable by any origin (errors
and streams included), never with credentials; the web app and status page stay same-origin;
a cross-origin call without a token is still refused and audited."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from gateway.audit import AuditLog
from tests.helpers import Running

ORIGIN = {"Origin": "http://app.example"}  # never contacted: only a header value


async def test_an_api_preflight_is_answered_before_routing(running: Running) -> None:
    headers = {
        **ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
        "Access-Control-Request-Private-Network": "true",
    }
    url = f"{running.url}/things/front-door/actions/unlock"
    async with running.http.options(url, headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert resp.headers["Access-Control-Allow-Private-Network"] == "true"
        assert "Access-Control-Allow-Credentials" not in resp.headers
    # the web app and the status page are not offered to other origins
    for path in ("/app", "/status"):
        async with running.http.options(running.url + path, headers=headers) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers, path


async def test_api_answers_are_readable_cross_origin(running: Running) -> None:
    r = running
    async with r.http.get(f"{r.url}/things", headers=ORIGIN) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    url = f"{r.url}/things/front-door/properties/state"
    async with r.http.get(url, headers={**ORIGIN, **r.auth(r.world.owner)}) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
    async with r.http.get(f"{r.url}/things/nope", headers=ORIGIN) as resp:
        assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == "*"
    # a stream (SSE) is prepared inside its handler: the header is there too
    sse = f"{r.url}/things/front-door/properties/state/sse"
    timeout = aiohttp.ClientTimeout(total=5)
    async with r.http.get(
        sse, headers={**ORIGIN, **r.auth(r.world.owner)}, timeout=timeout
    ) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    # same-origin requests (no Origin header) are unchanged
    async with r.http.get(f"{r.url}/things") as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_a_cross_origin_call_without_a_token_is_refused_and_audited(running: Running) -> None:
    r = running
    url = f"{r.url}/things/front-door/actions/unlock"
    async with r.http.post(url, headers=ORIGIN) as resp:
        assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"
    deadline = time.monotonic() + 5  # the audit writer commits in the background
    while True:
        log = AuditLog.open(r.world.state / "audit.sqlite3")
        try:
            rows = [x for x in log.query(limit=50) if x.op == "invokeaction" and not x.allowed]
        finally:
            log.close()
        if rows or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert rows and rows[0].reason == "unauthenticated: a bearer token is required"
    assert await r.gw.things["front-door"].read_property("state") == "locked"
