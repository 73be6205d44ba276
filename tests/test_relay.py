"""Circuit relays (docs/reach.md, "Relays"): real aiohttp relays on 127.0.0.1, real keys."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws

from gateway.codes import Code
from gateway.errors import MessageError, ReachError
from gateway.identity import KeyPair, PublicIdentity, generate_keypair
from gateway.messages import open_sealed, seal
from gateway.reach.relay import (
    RelayLimits,
    RelayReservations,
    RelayService,
    sign_reservation,
    verify_reservation,
)
from gateway.reach.relay import service as service_mod
from gateway.reach.relay.reservation import RESERVATION_TYP

DOC = Path(__file__).resolve().parent.parent / "docs" / "reach.md"
OPEN = RelayLimits(rate_per_s=1000.0, rate_burst=1000)  # tests make many calls from 127.0.0.1

# --- the vector published in docs/reach.md ("Relays") ---------------------------------------------
VECTOR_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "JCtMF0yfAeWx-DUc99fvKGx7iB5cOrlCI3EPWlyOH_8",
    "y": "BScqY0YzK5tiEgNgehFPjBjKEuewa6kqZcy2KzcgRK4",
    "d": "iBpnTAs8bcGqL4WhF-JVneKTx_QfzsTU7fGfak3zqF0",
}
VECTOR_ID = "b72Nxnip96avR8lCOnNiUqal35vA4X1ORwRAn6_k8uE"
VECTOR_NONCE = "AAECAwQFBgcICQoLDA0ODw"
VECTOR_NOW = 1767225610
VECTOR_JWS = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6InN0cmVlbWJpdC1yZWxheStqd3MiLCJqd2siOnsia3R5IjoiRUMiLCJjcnYiOiJQ"
    "LTI1NiIsIngiOiJKQ3RNRjB5ZkFlV3gtRFVjOTlmdktHeDdpQjVjT3JsQ0kzRVBXbHlPSF84IiwieSI6IkJTY3FZMFl6"
    "SzV0aUVnTmdlaEZQakJqS0V1ZXdhNmtxWmN5Mkt6Y2dSSzQifX0.eyJleHAiOjE3NjcyMjU2NjAsImlhdCI6MTc2NzIy"
    "NTYwMCwiaWQiOiJiNzJOeG5pcDk2YXZSOGxDT25OaVVxYWwzNXZBNFgxT1J3UkFuNl9rOHVFIiwibm9uY2UiOiJBQUVD"
    "QXdRRkJnY0lDUW9MREEwT0R3In0.Uipfijymyu8naE_PL6GDlWI0yLh4ykNVmepgVVvtOoc5whk-6hLafSHwzi6HrA-ks"
    "DU0R4eO1MAVCol7VO-s6g"
)


def _vector_keypair() -> KeyPair:
    import base64

    d = int.from_bytes(base64.urlsafe_b64decode(VECTOR_JWK["d"] + "="), "big")
    private = ec.derive_private_key(d, ec.SECP256R1())
    return KeyPair(private=private, public=PublicIdentity.from_key(private.public_key()))


def test_doc_vector_is_in_the_doc_and_verifies() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert "# Reaching a gateway behind NAT" in doc and "## Relays" in doc
    for text in (json.dumps(VECTOR_JWK), VECTOR_ID, VECTOR_NONCE, VECTOR_JWS):
        assert text in doc
    kp = _vector_keypair()
    assert kp.id == VECTOR_ID
    res = verify_reservation(VECTOR_JWS, nonce=VECTOR_NONCE, now=VECTOR_NOW)
    assert (res.id, res.iat, res.exp) == (VECTOR_ID, 1767225600, 1767225660)
    with pytest.raises(ReachError) as err:
        verify_reservation(VECTOR_JWS, nonce="A" * 22, now=VECTOR_NOW)
    assert err.value.code == Code.RELAY_BAD_RESERVATION


def _forge(signer: KeyPair, header_jwk: dict[str, str], payload: dict[str, Any]) -> str:
    header = {"alg": "ES256", "typ": RESERVATION_TYP, "jwk": header_jwk}
    body = json.dumps(payload).encode()
    return jws.serialize_compact(header, body, signer.jose_key(), algorithms=["ES256"])


def test_verify_reservation_refusals() -> None:
    kp, other = generate_keypair(), generate_keypair()
    nonce, now = "B" * 22, time.time()
    good = {"id": kp.id, "nonce": nonce, "iat": int(now), "exp": int(now) + 60}
    cases = {
        "another key claims the id": _forge(other, dict(other.public.jwk), good),
        "the id's key, another's signature": _forge(other, dict(kp.public.jwk), good),
        "wrong nonce": sign_reservation(kp, "C" * 22),
        "expired": sign_reservation(kp, nonce, ttl=60, now=now - 120),
        "future": sign_reservation(kp, nonce, now=now + 3600),
        "too long-lived": _forge(kp, dict(kp.public.jwk), {**good, "exp": int(now) + 301}),
        "missing claim": _forge(kp, dict(kp.public.jwk), {"id": kp.id, "nonce": nonce}),
        "not a JWS": "not.a.jws",
        "too large": "a" * 5000,
    }
    for what, token in cases.items():
        with pytest.raises(ReachError) as err:
            verify_reservation(token, nonce=nonce, now=now)
        assert err.value.code == Code.RELAY_BAD_RESERVATION, what
    assert verify_reservation(sign_reservation(kp, nonce), nonce=nonce).id == kp.id


# --- helpers --------------------------------------------------------------------------------------
@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _relay(limits: RelayLimits = OPEN, **kw: Any) -> RelayService:
    relay = RelayService(limits, **kw)
    await relay.start("127.0.0.1", 0)
    return relay


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


_RAW: list[aiohttp.ClientWebSocketResponse] = []  # sockets opened by hand, closed by close_all


async def close_all(http: aiohttp.ClientSession) -> None:
    """Close our raw sockets and the session, before the relay (its closes then need no wait)."""
    while _RAW:
        await _RAW.pop().close()
    await http.close()


async def reserve_raw(
    http: aiohttp.ClientSession,
    relay: RelayService,
    kp: KeyPair,
    answer: Callable[[KeyPair, str], str] | None = None,
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Reserve by hand: the challenge, our (or a forged) answer, the relay's reply."""
    ws = await http.ws_connect(relay.url.replace("http", "ws") + "/relay/v1/reserve")
    _RAW.append(ws)
    chal = json.loads((await ws.receive(timeout=5)).data)
    assert chal["type"] == "challenge" and len(chal["nonce"]) == 22
    token = (answer or (lambda k, n: sign_reservation(k, n)))(kp, chal["nonce"])
    await ws.send_json({"type": "reserve", "jws": token})
    return ws, json.loads((await ws.receive(timeout=5)).data)


def connect_url(relay: RelayService, kp: KeyPair) -> str:
    return f"{relay.url.replace('http', 'ws')}/relay/v1/connect/{kp.id}"


async def echo(ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
    """The gateway end of a circuit: answers each frame with "echo:" + the frame."""
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)


async def reservations(
    kp: KeyPair, urls: list[str], on_circuit: Any = echo, want: int = 1
) -> RelayReservations:
    async def find() -> list[str]:
        return list(urls)

    rr = RelayReservations(kp, find, on_circuit, want=want)
    await rr.start()
    return rr


# --- reservations and circuits --------------------------------------------------------------------
async def test_reservation_then_connect_pipes_frames_both_ways_unchanged(
    http: aiohttp.ClientSession,
) -> None:
    relay = await _relay()
    kp = generate_keypair()
    seen: list[str] = []

    async def serve(ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        assert label.startswith(f"relay {relay.url} from 127.0.0.1:")
        async for msg in ws:
            seen.append(msg.data)
            await ws.send_str(msg.data[::-1])

    rr = await reservations(kp, [relay.url], serve)
    changes: list[list[str]] = []
    rr.on_change.append(lambda: changes.append(rr.addrs))
    try:
        await until(lambda: bool(rr.addrs))
        assert rr.addrs == [connect_url(relay, kp)]
        frames = ["hello", "ünïcödé ✓ \u2028", "x" * 60_000, '{"a": [1, 2]}', ""]
        async with http.ws_connect(rr.addrs[0]) as peer:
            for frame in frames:
                await peer.send_str(frame)
                assert (await peer.receive(timeout=5)).data == frame[::-1]
        assert seen == frames
        stats = relay.stats()
        assert stats["reservations"] == 1 and stats["circuits_total"] == 1
        assert stats["frames_relayed"] == 2 * len(frames)
        assert stats["bytes_relayed"] == 2 * sum(len(f.encode()) for f in frames)
        assert rr.status()["reserved"] == 1
    finally:
        await rr.stop()
        await close_all(http)
        await relay.stop()
    assert changes == [[connect_url(relay, kp)], []]  # reserved, then dropped by the stop


async def test_relay_cannot_read_sealed_messages(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay_saw: list[str] = []
    original = web.WebSocketResponse.send_str

    async def spy(self: web.WebSocketResponse, data: str, compress: int | None = None) -> None:
        relay_saw.append(data)  # everything the relay writes to any socket
        await original(self, data, compress)

    monkeypatch.setattr(web.WebSocketResponse, "send_str", spy)
    relay = await _relay()
    gw, peer_kp = generate_keypair(), generate_keypair()
    opened: list[dict[str, Any]] = []
    refused: list[str] = []

    async def gateway_end(ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        async for msg in ws:
            try:
                got = open_sealed(msg.data, recipient=gw, replay=None)
            except MessageError as exc:
                refused.append(exc.code)
                await ws.send_str(json.dumps({"error": exc.code}))
                continue
            opened.append(got.claims)
            reply = {"status": 200, "re": got.jti, "output": {"secret": "the-door-code-4711"}}
            await ws.send_str(seal(reply, sender=gw, recipient=peer_kp.public, typ="reply"))

    rr = await reservations(gw, [relay.url], gateway_end)
    try:
        await until(lambda: bool(rr.addrs))
        request = {"op": "invokeaction", "thing": "front-door", "name": "unlock", "input": None}
        sealed = seal(request, sender=peer_kp, recipient=gw.public, typ="request")
        tampered = sealed[:-30] + ("A" if sealed[-30] != "A" else "B") + sealed[-29:]
        async with http.ws_connect(rr.addrs[0]) as peer:
            await peer.send_str(sealed)
            answer = (await peer.receive(timeout=5)).data
            reply = open_sealed(answer, recipient=peer_kp, replay=None)
            assert reply.claims["output"] == {"secret": "the-door-code-4711"}
            await peer.send_str(tampered)
            assert json.loads((await peer.receive(timeout=5)).data)["error"] == "decrypt_failed"
        assert opened[0]["name"] == "unlock" and opened[0]["iss"] == peer_kp.id
        assert refused == ["decrypt_failed"]
        # the relay wrote exactly the opaque frames (and its own control messages), nothing else
        assert sealed in relay_saw and answer in relay_saw and tampered in relay_saw
        for text in relay_saw:
            assert "the-door-code-4711" not in text and "unlock" not in text
    finally:
        await rr.stop()
        await close_all(http)
        await relay.stop()


@pytest.mark.parametrize("how", ["other key claims id", "id key, other signature", "wrong nonce"])
async def test_forged_reservations_are_refused(http: aiohttp.ClientSession, how: str) -> None:
    relay = await _relay()
    victim, mallory = generate_keypair(), generate_keypair()

    def forge(_: KeyPair, nonce: str) -> str:
        now = int(time.time())
        claims = {"id": victim.id, "nonce": nonce, "iat": now, "exp": now + 60}
        if how == "other key claims id":
            return _forge(mallory, dict(mallory.public.jwk), claims)
        if how == "id key, other signature":
            return _forge(mallory, dict(victim.public.jwk), claims)
        return sign_reservation(victim, "Z" * 22)

    try:
        ws, reply = await reserve_raw(http, relay, victim, forge)
        assert reply["type"] == "refused" and reply["error"] == Code.RELAY_BAD_RESERVATION
        assert reply["reason"]
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE,)
        assert relay.stats()["reservations"] == 0
        async with http.get(connect_url(relay, victim).replace("ws", "http", 1)) as r:
            assert r.status == 404
    finally:
        await close_all(http)
        await relay.stop()


async def test_expired_reservation_jws_refused(http: aiohttp.ClientSession) -> None:
    relay = await _relay()
    try:
        old = time.time() - 600
        _, reply = await reserve_raw(
            http, relay, generate_keypair(), lambda k, n: sign_reservation(k, n, now=old)
        )
        assert (reply["type"], reply["error"]) == ("refused", Code.RELAY_BAD_RESERVATION)
        assert "expired" in reply["reason"]
    finally:
        await close_all(http)
        await relay.stop()


async def test_no_reservation_and_disabled(http: aiohttp.ClientSession) -> None:
    relay = await _relay()
    off = await _relay(enabled=False)
    try:
        url = f"{relay.url}/relay/v1/connect/{generate_keypair().id}"
        async with http.get(url) as r:
            assert r.status == 404
            assert (await r.json())["error"] == Code.RELAY_NO_RESERVATION
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(url.replace("http", "ws", 1))
        assert err.value.status == 404
        async with http.get(f"{off.url}/relay/v1/reserve") as r:
            assert r.status == 503 and (await r.json())["error"] == Code.RELAY_DISABLED
        assert relay.stats()["refusals"][Code.RELAY_NO_RESERVATION] == 2
    finally:
        await close_all(http)
        await relay.stop()
        await off.stop()


async def test_full_relay_refuses_new_reservations(http: aiohttp.ClientSession) -> None:
    relay = await _relay(RelayLimits(max_reservations=2, rate_per_s=100.0, rate_burst=100))
    a, b, c = generate_keypair(), generate_keypair(), generate_keypair()
    try:
        ws_a, ra = await reserve_raw(http, relay, a)
        ws_b, rb = await reserve_raw(http, relay, b)
        assert ra["type"] == rb["type"] == "reserved"
        assert ra["connect"] == f"{relay.url}/relay/v1/connect/{a.id}" and ra["ttl"] == 600
        _, rc = await reserve_raw(http, relay, c)
        assert (rc["type"], rc["error"]) == ("refused", Code.RELAY_FULL)
        assert "maximum of 2" in rc["reason"]
        # the same id again replaces its reservation (even when full); the old socket is closed
        ws_a2, ra2 = await reserve_raw(http, relay, a)
        assert ra2["type"] == "reserved"
        assert (await ws_a.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        assert relay.stats()["reservations"] == 2
        assert not ws_b.closed and not ws_a2.closed
        assert relay.stats()["refusals"] == {Code.RELAY_FULL: 1}
    finally:
        await close_all(http)
        await relay.stop()


async def test_renewal_and_expiry(http: aiohttp.ClientSession) -> None:
    relay = await _relay(RelayLimits(reservation_ttl_s=2, rate_per_s=100.0, rate_burst=100))
    kp = generate_keypair()
    rr = await reservations(kp, [relay.url])
    changes: list[list[str]] = []
    try:
        await until(lambda: bool(rr.addrs))
        rr.on_change.append(lambda: changes.append(rr.addrs))
        await asyncio.sleep(2.6)  # past the first TTL: renewed at half-life on the same socket
        assert rr.addrs == [connect_url(relay, kp)] and changes == []
        assert relay.stats()["reservations_total"] == 1
        ws, reply = await reserve_raw(http, relay, generate_keypair())  # never renews
        assert reply["type"] == "reserved"
        end = json.loads((await ws.receive(timeout=4)).data)
        assert (end["type"], end["error"]) == ("refused", Code.RELAY_NO_RESERVATION)
    finally:
        await rr.stop()
        await close_all(http)
        await relay.stop()


async def test_circuits_per_reservation_limit(http: aiohttp.ClientSession) -> None:
    relay = await _relay(RelayLimits(circuits_per_reservation=2, rate_per_s=100.0, rate_burst=100))
    kp = generate_keypair()
    rr = await reservations(kp, [relay.url])
    try:
        await until(lambda: bool(rr.addrs))
        async with http.ws_connect(rr.addrs[0]) as p1, http.ws_connect(rr.addrs[0]) as p2:
            for p in (p1, p2):
                await p.send_str("hi")
                assert (await p.receive(timeout=5)).data == "echo:hi"
            async with http.get(rr.addrs[0].replace("ws", "http", 1)) as r:
                assert r.status == 503
                body = await r.json()
                assert body["error"] == Code.RELAY_CIRCUIT_LIMIT and "2 circuits" in body["reason"]
        await until(lambda: relay.stats()["circuits_active"] == 0)
        async with http.ws_connect(rr.addrs[0]) as p3:  # slots are freed when circuits end
            await p3.send_str("again")
            assert (await p3.receive(timeout=5)).data == "echo:again"
    finally:
        await rr.stop()
        await close_all(http)
        await relay.stop()


async def test_bytes_per_circuit_limit_closes_the_circuit(http: aiohttp.ClientSession) -> None:
    relay = await _relay(RelayLimits(circuit_bytes=1000, rate_per_s=100.0, rate_burst=100))
    kp = generate_keypair()
    got: list[str] = []

    async def sink(ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        async for msg in ws:
            got.append(msg.data)

    rr = await reservations(kp, [relay.url], sink)
    try:
        await until(lambda: bool(rr.addrs))
        async with http.ws_connect(rr.addrs[0]) as peer:
            await peer.send_str("a" * 600)
            await peer.send_str("b" * 600)  # 1200 > 1000: the circuit ends
            msg = await peer.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
        await until(lambda: relay.stats()["circuits_active"] == 0)
        assert got == ["a" * 600] and relay.stats()["bytes_relayed"] == 600
    finally:
        await rr.stop()
        await close_all(http)
        await relay.stop()


async def test_unaccepted_circuit_is_refused(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_mod, "ACCEPT_TIMEOUT_S", 0.3)
    relay = await _relay()
    kp = generate_keypair()
    try:
        ws, reply = await reserve_raw(http, relay, kp)  # reserves, never accepts
        assert reply["type"] == "reserved"
        async with http.get(connect_url(relay, kp).replace("ws", "http", 1)) as r:
            assert r.status == 400  # not a WebSocket upgrade
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(connect_url(relay, kp))
        assert err.value.status == 502
        incoming = json.loads((await ws.receive(timeout=5)).data)
        assert incoming["type"] == "incoming" and incoming["from"].startswith("127.0.0.1:")
        # the token was one-time: too late now
        url = f"{relay.url}/relay/v1/accept/{incoming['circuit']}"
        async with http.get(url) as r:
            assert r.status == 404
        assert relay.stats()["refusals"][Code.RELAY_UNREACHABLE] == 1
    finally:
        await close_all(http)
        await relay.stop()


async def test_silent_handshakes_are_capped_per_source_address(
    http: aiohttp.ClientSession,
) -> None:
    """Sockets that never answer the challenge hold handshake slots: one address gets a few,
    and a real reservation still goes through once they are gone."""
    limits = RelayLimits(rate_per_s=100.0, rate_burst=100, handshakes_per_ip=2)
    relay = await _relay(limits)
    url = relay.url.replace("http", "ws") + "/relay/v1/reserve"
    try:
        silent = [await http.ws_connect(url) for _ in range(2)]
        _RAW.extend(silent)
        for ws in silent:  # the challenge arrives; we never answer it
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "challenge"
        async with http.get(f"{relay.url}/relay/v1/reserve") as r:
            body = await r.json()
            assert (r.status, body["error"]) == (503, Code.RELAY_FULL)
            assert "from this address" in body["reason"]
        for ws in silent:
            await ws.close()
        await until(lambda: relay.stats()["handshakes"] == 0)
        _, reply = await reserve_raw(http, relay, generate_keypair())
        assert reply["type"] == "reserved"
    finally:
        await close_all(http)
        await relay.stop()


async def test_per_source_rate_limit(http: aiohttp.ClientSession) -> None:
    relay = await _relay(RelayLimits(rate_per_s=0.01, rate_burst=3))
    try:
        statuses = []
        for _ in range(5):
            async with http.get(f"{relay.url}/relay/v1/connect/{'x' * 43}") as r:
                statuses.append((r.status, (await r.json())["error"]))
        assert statuses[:3] == [(404, Code.RELAY_NO_RESERVATION)] * 3
        assert statuses[3:] == [(429, Code.RELAY_RATE_LIMITED)] * 2
        async with http.get(f"{relay.url}/relay/v1/reserve") as r:
            assert r.status == 429
    finally:
        await close_all(http)
        await relay.stop()


async def test_observe_reports_the_tcp_peer() -> None:
    relay = await _relay()
    try:
        port = int(relay.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(b"GET /relay/v1/observe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 200")
        assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {"ip": "127.0.0.1", "port": local_port}
    finally:
        await relay.stop()


async def test_lost_relay_is_replaced_within_seconds() -> None:
    relays = [await _relay() for _ in range(3)]
    kp = generate_keypair()
    rr = await reservations(kp, [r.url for r in relays], want=2)
    changed = asyncio.Event()
    rr.on_change.append(changed.set)
    try:
        await until(lambda: len(rr.addrs) == 2)
        before = list(rr.addrs)
        assert before == [connect_url(relays[0], kp), connect_url(relays[1], kp)]
        changed.clear()
        t0 = time.monotonic()
        await relays[0].stop()  # killed
        await until(lambda: connect_url(relays[2], kp) in rr.addrs, timeout=5.0)
        took = time.monotonic() - t0
        assert took < 3.0, took
        assert changed.is_set()
        assert sorted(rr.addrs) == sorted([connect_url(relays[1], kp), connect_url(relays[2], kp)])
        assert rr.status()["errors"]  # why relay 0 was lost, for ops
    finally:
        await rr.stop()
        for r in relays:
            await r.stop()


async def test_renewal_signed_by_another_id_is_refused(http: aiohttp.ClientSession) -> None:
    relay = await _relay()
    kp, other = generate_keypair(), generate_keypair()
    try:
        ws, reply = await reserve_raw(http, relay, kp)
        assert reply["type"] == "reserved"
        await ws.send_json({"type": "renew"})
        chal = json.loads((await ws.receive(timeout=5)).data)
        await ws.send_json({"type": "reserve", "jws": sign_reservation(other, chal["nonce"])})
        end = json.loads((await ws.receive(timeout=5)).data)
        assert (end["type"], end["error"]) == ("refused", Code.RELAY_BAD_RESERVATION)
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        await until(lambda: relay.stats()["reservations"] == 0)
    finally:
        await close_all(http)
        await relay.stop()


async def test_binary_frames_end_the_circuit_and_stop_closes_circuits(
    http: aiohttp.ClientSession,
) -> None:
    relay = await _relay()
    kp = generate_keypair()
    rr = await reservations(kp, [relay.url])
    try:
        await until(lambda: bool(rr.addrs))
        async with http.ws_connect(rr.addrs[0]) as peer:
            await peer.send_bytes(b"\x00binary")
            msg = await peer.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
        async with http.ws_connect(rr.addrs[0]) as peer:
            await peer.send_str("up")
            assert (await peer.receive(timeout=5)).data == "echo:up"
            await relay.stop()  # a relay going away closes its circuits
            msg = await peer.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
        assert relay.stats()["circuits_active"] == 0
    finally:
        await rr.stop()
        await close_all(http)
        await relay.stop()
