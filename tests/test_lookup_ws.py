"""DHT lookups over WebSocket (gateway/reach/lookup.py, docs/reach.md): real DHT nodes and a
real aiohttp listener on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.identity import generate_keypair
from gateway.p2p import DhtNode
from gateway.p2p.records import verify_record, verify_unbound
from gateway.reach import lookup as lk
from gateway.reach.lookup import LOOKUP_PATH, LookupService
from tests.helpers import dht_network


@asynccontextmanager
async def serve(service: LookupService) -> AsyncIterator[str]:
    app = web.Application()
    service.mount(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}{LOOKUP_PATH}"
    finally:
        await runner.cleanup()


async def ask(ws: aiohttp.ClientWebSocketResponse, msg: Any) -> dict[str, Any]:
    await ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))
    answer: dict[str, Any] = json.loads(await ws.receive_str(timeout=15))
    return answer


@pytest.fixture
async def net() -> AsyncIterator[tuple[list[DhtNode], str, str]]:
    """Three DHT nodes; a gateway key's contact record published through the last; the lookup
    service on the first. (nodes, lookup URL, record text)."""
    async with dht_network(3) as nodes:
        gw = generate_keypair()
        rec, count = await nodes[2].publish_contact(
            gw, addrs=["ws://127.0.0.1:9/p2p"], td_digest="sha256:x"
        )
        assert count >= 1
        async with serve(LookupService(nodes[0])) as url:
            yield nodes, url, rec.text


async def test_found_not_found_and_many_on_one_socket(
    net: tuple[list[DhtNode], str, str],
) -> None:
    _, url, text = net
    gw_id = verify_unbound(text).id
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        found = await ask(ws, {"type": "get", "id": gw_id, "req": 1})
        assert found == {"type": "record", "req": 1, "record": text}
        assert verify_record(found["record"], key=gw_id).id == gw_id  # the client checks it
        missing = await ask(ws, {"type": "get", "id": "A" * 43, "req": 2})
        assert missing["type"] == "error" and missing["req"] == 2
        assert missing["error"] == "not_found"


@pytest.mark.parametrize(
    ("msg", "code", "req"),
    [
        ("not json", "bad_request", None),
        ("[1, 2]", "bad_request", None),
        ({"type": "get", "id": "A" * 43}, "bad_request", None),
        ({"type": "get", "id": "A" * 43, "req": -1}, "bad_request", None),
        ({"type": "get", "id": "A" * 43, "req": 2**53}, "bad_request", None),
        ({"type": "get", "id": "A" * 43, "req": True}, "bad_request", None),
        ({"type": "put", "id": "A" * 43, "req": 3}, "bad_request", 3),
        ({"type": "get", "id": "A" * 43, "req": 4, "x": 1}, "bad_request", 4),
        ({"type": "get", "id": "A" * 42, "req": 5}, "bad_id", 5),
        ({"type": "get", "id": "A" * 42 + "=", "req": 6}, "bad_id", 6),
        ({"type": "get", "id": 7, "req": 7}, "bad_id", 7),
    ],
)
async def test_malformed_requests_are_refused_with_codes(msg: Any, code: str, req: Any) -> None:
    async with (
        serve(LookupService(None)) as url,
        aiohttp.ClientSession() as s,
        s.ws_connect(url) as ws,
    ):
        answer = await ask(ws, msg)
        assert answer["type"] == "error" and answer["error"] == code and answer["req"] == req
        assert isinstance(answer["reason"], str) and answer["reason"]


async def test_oversized_and_binary_frames_close_the_socket() -> None:
    async with serve(LookupService(None)) as url, aiohttp.ClientSession() as s:
        async with s.ws_connect(url) as ws:
            await ws.send_str("x" * (lk.MAX_REQUEST_BYTES + 1))
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
        async with s.ws_connect(url) as ws:
            await ws.send_bytes(b"{}")
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1003


async def test_unavailable_until_the_dht_is_set_then_found() -> None:
    async with dht_network(2) as nodes:
        gw = generate_keypair()
        rec, _ = await nodes[1].publish_contact(gw, addrs=["ws://127.0.0.1:9/p2p"], td_digest="d")
        service = LookupService()  # mounted before the DHT exists, as on the gateway
        async with serve(service) as url, aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            early = await ask(ws, {"type": "get", "id": gw.id, "req": 1})
            assert early["error"] == "unavailable"
            service.dht = nodes[0]
            assert (await ask(ws, {"type": "get", "id": gw.id, "req": 2}))["record"] == rec.text


async def test_rate_limits_per_connection_and_per_address() -> None:
    service = LookupService(None)  # every lookup is cheap here: answered `unavailable`
    async with serve(service) as url, aiohttp.ClientSession() as s:
        async with s.ws_connect(url) as ws:
            codes = [
                (await ask(ws, {"type": "get", "id": "A" * 43, "req": i}))["error"]
                for i in range(lk.CONN_BURST + 2)
            ]
        assert codes[: lk.CONN_BURST] == ["unavailable"] * lk.CONN_BURST
        assert codes[lk.CONN_BURST :] == ["rate_limited"] * 2
        # new connections from the same address share the address's bucket
        seen: list[str] = []
        for _ in range(lk.IP_BURST // lk.CONN_BURST + 1):
            async with s.ws_connect(url) as ws:
                for i in range(lk.CONN_BURST):
                    seen.append((await ask(ws, {"type": "get", "id": "A" * 43, "req": i}))["error"])
        assert "rate_limited" in seen
        assert service.stats()["refusals"]["rate_limited"] >= 3


async def test_connections_per_address_are_bounded() -> None:
    async with serve(LookupService(None)) as url, aiohttp.ClientSession() as s:
        held = [await s.ws_connect(url) for _ in range(lk.MAX_CONNECTIONS_PER_IP)]
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(url)
            assert err.value.status == 429
        finally:
            for ws in held:
                await ws.close()


async def test_a_slow_dht_times_out_and_concurrency_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()

    class Slow:
        async def get(self, record_id: str) -> None:
            await release.wait()

    monkeypatch.setattr(lk, "LOOKUP_TIMEOUT_S", 0.3)
    async with (
        serve(LookupService(Slow())) as url,
        aiohttp.ClientSession() as s,
        s.ws_connect(url) as ws,
    ):
        for i in range(lk.MAX_INFLIGHT_PER_CONN + 1):
            await ws.send_str(json.dumps({"type": "get", "id": "A" * 43, "req": i}))
        answers = [json.loads(await ws.receive_str(timeout=5)) for _ in range(5)]
        by_req = {a["req"]: a["error"] for a in answers}
        assert by_req[lk.MAX_INFLIGHT_PER_CONN] == "rate_limited"
        assert [by_req[i] for i in range(lk.MAX_INFLIGHT_PER_CONN)] == ["timeout"] * 4
