"""The web app away from home (docs/webapp.md "Away from home: P2P in the browser"): the core
library's records.js, find.js and p2p.js in Node (gateway/webapp/test/p2p.mjs) against a real
gateway with P2P and a real seed node, all on 127.0.0.1, as subprocesses.

The JS key is a `streembit-peer keygen` PEM imported with keys.importPkcs8Pem; it is granted
by the owner with the CLI (tests/helpers.py provision_cli). The browser code uses the standard
WebSocket API; on Node < 22 the driver injects the `ws` package (tests only).
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.errors import P2PError
from gateway.identity import generate_keypair
from gateway.p2p.records import make_contact_record, verify_record
from tests.helpers import GW, PEER, REPO
from tests.helpers import provision_cli as provision
from tests.test_peer_cli import start
from tests.webapp_node import P2PDriver

WEBAPP = REPO / "gateway" / "webapp"
DOC = REPO / "docs" / "dht-records.md"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A seed node and a demo gateway joined through it; alice may read, unlock and observe."""
    tmp = tmp_path_factory.mktemp("p2p")
    gw_id, st, k, _ = provision(tmp, "readproperty,invokeaction,observeproperty")
    seed, seed_info = start(PEER, "node", "--dht-port", "0", "--json")
    procs = [seed]
    try:
        gw, gw_info = start(GW, "demo", "--state", str(st), "--http-port", "0", "--ws-port", "0",
                            "--dht-port", "0", "--bootstrap", seed_info["dht"], "--no-mdns",
                            "--json")  # fmt: skip
        procs.append(gw)
        ws = gw_info["ws"]
        assert ws.startswith("ws://127.0.0.1:") and ws.endswith("/p2p")
        yield {
            "gw": gw_id,
            "ws": ws,
            "seed_lookup": seed_info["lookup"],
            "gw_lookup": ws.removesuffix("/p2p") + "/dht/v1/lookup",
            "k": k,
            "st": st,
        }
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=15) == 0


@pytest.fixture(scope="module")
def js(net: dict[str, Any]) -> Iterator[P2PDriver]:
    d = P2PDriver()
    for who in ("alice", "mallory"):
        pem = (Path(net["k"]) / who).read_text()
        d.ok("importPem", store=who, pem=pem)
    yield d
    d.close()


def _wait(pred: Any, timeout: float = 15.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------- finding the gateway
def test_found_by_id_through_the_seed_and_the_gateway_lookup(
    js: P2PDriver, net: dict[str, Any]
) -> None:
    # the seed's lookup answers from the DHT; allow the gateway's first publish to land
    def found() -> dict[str, Any] | None:
        out = js.call("find", lookup=[net["seed_lookup"]], gatewayId=net["gw"])
        return out.get("ok")

    rec = _wait(found)
    assert rec["id"] == net["gw"] and rec["addrs"][0] == net["ws"] and rec["refused"] == []
    both = js.ok("find", lookup=[net["seed_lookup"], net["gw_lookup"]], gatewayId=net["gw"])
    assert both["id"] == net["gw"] and both["seq"] >= rec["seq"] and both["refused"] == []
    assert js.ok("find", lookup=[net["gw_lookup"]], gatewayId=net["gw"])["addrs"] == rec["addrs"]
    # an address without a path gets the lookup path
    plain = net["seed_lookup"].removesuffix("/dht/v1/lookup")
    assert js.ok("find", lookup=[plain], gatewayId=net["gw"])["id"] == net["gw"]
    missing = js.error("find", lookup=[net["seed_lookup"]], gatewayId="A" * 43)
    assert missing["code"] == "not_found" and missing["status"] == 404
    assert js.error("find", lookup=[net["seed_lookup"]], gatewayId="short")["code"] == "bad_id"
    assert js.error("find", lookup=["ftp://x"], gatewayId=net["gw"])["code"] == "bad_address"


@asynccontextmanager
async def lying_peer(record: str) -> AsyncIterator[str]:
    """A lookup peer answering every get with RECORD."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            req = json.loads(msg.data)["req"]
            await ws.send_str(json.dumps({"type": "record", "req": req, "record": record}))
        return ws

    app = web.Application()
    app.router.add_get("/dht/v1/lookup", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/dht/v1/lookup"
    finally:
        await runner.cleanup()


def _swap_payload(text: str, **changes: Any) -> str:
    h, p, s = text.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{h}.{body}.{s}"


async def test_a_record_tampered_by_the_lookup_peer_is_refused(
    js: P2PDriver, net: dict[str, Any]
) -> None:
    real = js.ok("find", lookup=[net["gw_lookup"]], gatewayId=net["gw"])
    assert real["id"] == net["gw"]
    # the genuine record, from the DHT, with the attacker's address swapped in
    import aiohttp

    async with aiohttp.ClientSession() as s, s.ws_connect(net["gw_lookup"]) as ws:
        await ws.send_str(json.dumps({"type": "get", "id": net["gw"], "req": 1}))
        text = json.loads(await ws.receive_str(timeout=15))["record"]
    forged = _swap_payload(text, addrs=["ws://127.0.0.1:1/evil"], seq=2**52)
    async with lying_peer(forged) as liar:
        err = await _in_thread(js.error, "find", lookup=[liar], gatewayId=net["gw"])
        assert err["code"] == "record_bad_signature"
        # with an honest peer too, the forged (higher seq) record is ignored
        rec = await _in_thread(
            js.ok, "find", lookup=[liar, net["seed_lookup"]], gatewayId=net["gw"]
        )
        assert rec["addrs"] == real["addrs"]
        assert [r["code"] for r in rec["refused"]] == ["record_bad_signature"]
    # a record signed by another key for the id asked for: refused too
    other = make_contact_record(
        generate_keypair(), seq=1, addrs=["ws://127.0.0.1:1/p"], td_digest="x"
    )
    async with lying_peer(other) as liar:
        err = await _in_thread(js.error, "find", lookup=[liar], gatewayId=net["gw"])
        assert err["code"] == "record_wrong_dht_key"


async def _in_thread(fn: Any, *args: Any, **kw: Any) -> Any:
    """Run a blocking driver call while this loop keeps serving the lying peer."""
    import asyncio

    return await asyncio.to_thread(fn, *args, **kw)


# --------------------------------------------------------------------- P2P requests
def test_read_unlock_observe_and_refusals_over_p2p(js: P2PDriver, net: dict[str, Any]) -> None:
    lookup = [net["seed_lookup"], net["gw_lookup"]]
    js.ok("gateway", name="alice", store="alice", gatewayId=net["gw"], lookup=lookup)
    tds = js.ok("call", name="alice", method="things")["value"]
    assert {td["title"] for td in tds} == {"Front door", "Living room"}
    mine = js.ok("call", name="alice", method="mine")["value"]
    assert mine["role"] == "peer" and mine["things"]["front-door"]["type"] == "lock"
    assert "unlock" in mine["things"]["front-door"]["actions"]
    first = js.ok("call", name="alice", method="read", args=["front-door", "state"])
    assert first["url"] == net["ws"]
    js.ok("observe", name="alice", stream="state", thing="front-door", prop="state")
    time.sleep(0.5)  # the subscription is accepted (202) before the change
    state = first["value"]
    action = "lock" if state == "unlocked" else "unlock"
    out = js.ok("call", name="alice", method="invoke", args=["front-door", action])["value"]
    assert out == ("locked" if action == "lock" else "unlocked")
    seen = _wait(lambda: js.ok("streamState", stream="state")["values"])
    assert seen[0]["v"] == out and seen[0]["name"] == "state" and seen[0]["seq"] == 0
    assert js.ok("call", name="alice", method="read", args=["front-door", "state"])["value"] == out
    values = js.ok("call", name="alice", method="readAll", args=["living-room"])["value"]
    assert isinstance(values["temperature"], (int, float))
    # granted ops only: a write is refused by the ACL, sealed, with its status
    refused = js.error(
        "call", name="alice", method="write", args=["living-room", "targetTemperature", 21]
    )
    assert refused["code"] == "forbidden" and refused["status"] == 403
    missing = js.error("call", name="alice", method="read", args=["nope", "state"])
    assert missing["status"] in (403, 404)
    # what the P2P binding has no operation for is refused in words, not sent
    assert js.error("call", name="alice", method="status")["code"] == "unsupported_op"
    state = js.ok("streamState", stream="state", stop=True)
    assert state["errors"] == []


def test_a_lost_connection_is_made_again_and_observations_resume(
    js: P2PDriver, net: dict[str, Any]
) -> None:
    js.ok("gateway", name="again", store="alice", gatewayId=net["gw"], lookup=[net["gw_lookup"]])
    js.ok("observe", name="again", stream="again", thing="front-door", prop="state")
    _wait(lambda: js.ok("call", name="again", method="read", args=["front-door", "state"]))
    js.ok("drop", name="again")
    errors = _wait(lambda: js.ok("streamState", stream="again")["errors"])
    assert errors[0]["code"] == "closed" and errors[0]["retrying"] is True
    time.sleep(1.5)  # the stream's first retry (1 s) subscribes again on a new connection
    for action, state in (("unlock", "unlocked"), ("lock", "locked")):
        assert (
            js.ok("call", name="again", method="invoke", args=["front-door", action])["value"]
            == state
        )
    values = _wait(
        lambda: [x["v"] for x in js.ok("streamState", stream="again")["values"]][-1:] == ["locked"]
    )
    assert values
    js.ok("streamState", stream="again", stop=True)
    js.ok("close", name="again")


def test_an_ungranted_key_is_refused(js: P2PDriver, net: dict[str, Any]) -> None:
    js.ok(
        "gateway", name="mallory", store="mallory", gatewayId=net["gw"], lookup=[net["gw_lookup"]]
    )
    refused = js.error("call", name="mallory", method="invoke", args=["front-door", "unlock"])
    assert refused["code"] == "forbidden" and refused["status"] == 403
    assert js.ok("call", name="mallory", method="mine")["value"]["role"] is None
    js.ok("observe", name="mallory", stream="m", thing="front-door", prop="state")
    errors = _wait(lambda: js.ok("streamState", stream="m")["errors"])
    assert errors[0]["code"] == "forbidden" and errors[0]["retrying"] is False


def test_plain_refusals_fail_the_request_at_once(js: P2PDriver, net: dict[str, Any]) -> None:
    """A frame sealed to another key: the gateway cannot open it and answers a plain refusal
    naming the frame's digest; the request fails with that code, not by timeout."""
    stranger = generate_keypair()
    js.ok(
        "connect", name="wrong", store="alice", url=net["ws"], gatewayJwk=dict(stranger.public.jwk)
    )
    t0 = time.monotonic()
    err = js.error("request", name="wrong", op="things", opts={"timeoutMs": 8000})
    assert err["code"] == "wrong_audience" and err["status"] == 400
    assert time.monotonic() - t0 < 5
    js.ok("close", conn="wrong")


# ------------------------------------------------------------- records.js vs records.py
def _doc_vector() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("The record (one line;")
    return next(line for line in text[start:].splitlines() if line.startswith("eyJ"))


def _b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _variants() -> list[tuple[str, str, str, int]]:
    """(name, record text, key, now): the doc vector and broken versions of it."""
    vec = _doc_vector()
    h, p, s = vec.split(".")
    key, now = "cTAhtZrjmfjZpxzagCe0XiXo9NHY-uAEThYvCkyXmMk", 1767225660
    header = json.loads(base64.urlsafe_b64decode(h + "=="))
    payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))

    dup = _b64(b'{"id":1,"id":2}')

    def hdr(**kw: Any) -> str:
        return f"{_b64({**header, **kw})}.{p}.{s}"

    def pay(drop: str = "", **kw: Any) -> str:
        d = {k: v for k, v in {**payload, **kw}.items() if k != drop}
        return f"{h}.{_b64(d)}.{s}"

    return [
        ("valid", vec, key, now),
        ("expired", vec, key, 1767229200),
        ("not_yet_valid", vec, key, 1767225539),
        ("wrong_key", vec, "A" * 43, now),
        ("bad_signature", vec[:-1] + "Q", key, now),
        ("two_parts", f"{h}.{p}", key, now),
        ("too_large", vec + "A" * 4096, key, now),
        ("alg_none", hdr(alg="none"), key, now),
        ("alg_hs256", hdr(alg="HS256"), key, now),
        ("typ", hdr(typ="JWT"), key, now),
        ("extra_header", hdr(kid="x"), key, now),
        ("p384", hdr(jwk={**header["jwk"], "crv": "P-384"}), key, now),
        (
            "private",
            hdr(jwk={**header["jwk"], "d": "MnLvTyvX3qYuNVoPzb3tqvxOhqBqKvaRWq8fSWLsJ0I"}),
            key,
            now,
        ),
        ("off_curve", hdr(jwk={**header["jwk"], "y": header["jwk"]["x"]}), key, now),
        ("no_td", pay(drop="td"), key, now),
        ("no_seq", pay(drop="seq"), key, now),
        ("seq_str", pay(seq="7"), key, now),
        ("kind", pay(kind="other"), key, now),
        ("http_addr", pay(addrs=["http://x/p2p"]), key, now),
        ("user_addr", pay(addrs=["ws://u:p@x/p2p"]), key, now),
        ("no_addrs", pay(addrs=[]), key, now),
        ("lifetime", pay(exp=payload["iat"] + 8 * 86400), key, now),
        ("other_id", pay(id="A" * 43), "A" * 43, now),
        ("dup", f"{h}.{dup}.{s}", key, now),
        ("not_json", f"{h}.{_b64(b'nope')}.{s}", key, now),
        ("addrs_changed", pay(addrs=["ws://198.51.100.1:1/p2p"]), key, now),
    ]


def test_records_js_refuses_as_records_py(js: P2PDriver) -> None:
    for name, text, key, now in _variants():
        try:
            expected = verify_record(text, key=key, now=now).id
        except P2PError as exc:
            expected = exc.code
        out = js.call("verifyRecord", text=text, expectedId=key, now=now)
        got = out["ok"]["id"] if "ok" in out else out["error"]["code"]
        assert got == expected, f"{name}: JS {got} != Python {expected}"
    valid = js.ok("verifyRecord", text=_doc_vector(), expectedId=_variants()[0][2], now=1767225660)
    assert valid["seq"] == 7 and valid["addrs"] == [
        "ws://192.0.2.10:8765/p2p",
        "wss://gw.example.net/p2p",
    ]
