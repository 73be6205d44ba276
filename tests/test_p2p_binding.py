"""The P2P binding and the peer client end to end on 127.0.0.1, against a real gateway.

Hostile frames are crafted here with joserfc and `cryptography` (or sealed with the reference
`seal` where only the envelope matters) and sent over a raw WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwe

from gateway.acl import Grant, sign_acl, with_grant, without_subject
from gateway.audit import AuditLog
from gateway.bindings.p2p import Limits, P2PBinding
from gateway.identity import KeyPair, PublicIdentity
from gateway.messages import Opened, new_jti, open_sealed, seal
from gateway.peer import (
    PeerClient,
    PeerConnection,
    PeerConnectionError,
    PeerRequestError,
    PeerTimeoutError,
)
from gateway.peer.wire import frame_digest
from tests.helpers import Running

JWS_TYP = "streembit-msg+jws"
RATE, BURST = 20.0, 40


@dataclass
class P2P:
    r: Running
    binding: P2PBinding

    @property
    def gw_pub(self) -> PublicIdentity:
        return self.r.gw.identity.public


@pytest.fixture
async def p2p(running: Running) -> AsyncIterator[P2P]:
    gw = running.gw
    binding = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds, rate_per_s=RATE, burst=BURST)
    await binding.start()
    try:
        yield P2P(running, binding)
    finally:
        await binding.stop()


def _audit(p: P2P) -> list[dict[str, Any]]:
    log = AuditLog.open(p.r.world.state / "audit.sqlite3")
    try:
        return [x.as_dict() for x in log.query(limit=5000) if x.binding == "p2p"]
    finally:
        log.close()


async def _audited(p: P2P, pred: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Audit rows matching PRED, waiting for the background writer to commit them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [x for x in _audit(p) if pred(x)]
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


@dataclass
class Raw:
    """A raw WebSocket peer: sends any frame, reads sealed answers or plain refusals."""

    ws: aiohttp.ClientWebSocketResponse
    key: KeyPair
    gw: PublicIdentity

    def request(
        self, op: str, *, now: float | None = None, jti: str | None = None, **body: Any
    ) -> str:
        return seal(
            {"op": op, **body}, sender=self.key, recipient=self.gw, typ="request", now=now, jti=jti
        )

    async def recv(self, timeout: float = 3.0) -> Opened | dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        if msg.data.startswith("{"):
            return dict(json.loads(msg.data))
        return open_sealed(msg.data, recipient=self.key, replay=None)


@pytest.fixture
async def raw(p2p: P2P) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as s, s.ws_connect(p2p.binding.url) as ws:
        yield Raw(ws, p2p.r.world.user, p2p.gw_pub)


@pytest.fixture
async def clients() -> AsyncIterator[list[PeerClient]]:
    made: list[PeerClient] = []
    yield made
    for client in made:
        await client.close()


async def _connect(p: P2P, key: KeyPair, clients: list[PeerClient]) -> PeerConnection:
    client = PeerClient(key)
    clients.append(client)
    return await client.connect(p.binding.url, p.gw_pub)


# ------------------------------------------------------------------ crafting
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(obj: Any) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _crafted(
    sender: KeyPair, to: PublicIdentity, claims: dict[str, Any] | bytes, alg: str = "ES256"
) -> str:
    """A sealed message built by hand (inner alg ES256 or none) and encrypted to TO; CLAIMS as
    bytes are sent as they are (JSON no encoder would write)."""
    header = {"alg": alg, "typ": JWS_TYP, "jwk": dict(sender.public.jwk), "kid": sender.id}
    body = _b64(claims) if isinstance(claims, bytes) else _b64json(claims)
    signing_input = f"{_b64json(header)}.{body}"
    sig = b""
    if alg == "ES256":
        r, s = decode_dss_signature(
            sender.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    outer = {"alg": "ECDH-ES", "enc": "A256GCM", "cty": JWS_TYP, "kid": to.id}
    registry = jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"])
    return jwe.encrypt_compact(
        outer, f"{signing_input}.{_b64(sig)}", to.jose_key(), registry=registry
    )


def _claims(sender: KeyPair, aud: str, **body: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": sender.id,
        "aud": aud,
        "iat": now,
        "exp": now + 30,
        "jti": new_jti(),
        "typ": "request",
        **body,
    }


# ------------------------------------------------------------------ tests
async def test_granted_peer_unlocks_locks_and_reads(p2p: P2P) -> None:
    user = p2p.r.world.user
    async with PeerClient(user) as client:
        conn = await client.connect(p2p.binding.url, p2p.gw_pub)
        listing = await conn.things()
        tds = p2p.r.gw.tds()
        assert {(t["name"], t["id"]) for t in listing} == {(n, td["id"]) for n, td in tds.items()}
        assert {t["title"] for t in listing} == {"Front door", "Living room"}
        assert set((await conn.td("front-door"))["actions"]) == {"lock", "unlock"}
        assert (await conn.td(tds["living-room"]["id"]))["title"] == "Living room"
        assert await conn.read("front-door", "state") == "locked"
        assert await conn.invoke("front-door", "unlock") == "unlocked"
        assert await conn.read("front-door", "state") == "unlocked"
        assert await conn.invoke("front-door", "lock") == "locked"
        assert await conn.read("front-door", "state") == "locked"
        assert isinstance(await conn.read("living-room", "temperature"), float)
        await conn.write("living-room", "targetTemperature", 21.5)
        assert await conn.read("living-room", "targetTemperature") == 21.5
        with pytest.raises(PeerRequestError) as err:
            await conn.write("living-room", "targetTemperature", 90)
        assert (err.value.code, err.value.status) == ("out_of_range", 400)
        with pytest.raises(PeerRequestError) as err:
            await conn.read("nope", "x")
        assert (err.value.code, err.value.status) == ("unknown_thing", 404)
    rows = await _audited(p2p, lambda x: x["op"] == "invokeaction" and x["allowed"])
    assert {x["affordance"] for x in rows} == {"lock", "unlock"}
    assert all(x["subject"] == user.id and x["request_id"] for x in rows)


async def test_ungranted_peer_is_refused_and_audited(p2p: P2P, clients: list[PeerClient]) -> None:
    w = p2p.r.world
    stranger = await _connect(p2p, w.stranger, clients)
    owner = await _connect(p2p, w.owner, clients)
    try:
        for call in (stranger.things(), stranger.invoke("front-door", "unlock")):
            with pytest.raises(PeerRequestError) as err:
                await call
            assert (err.value.code, err.value.status) == ("forbidden", 403)
        # the owner grants a read of the thermostat only
        current = p2p.r.gw.acl.current
        assert current is not None
        grant = Grant.for_key(w.stranger.public, things=["living-room"], ops=["readproperty"])
        out = await owner.acl_push(sign_acl(with_grant(current, grant), w.owner))
        assert out["version"] == current.version + 1
        assert [t["name"] for t in await stranger.things()] == ["living-room"]
        assert isinstance(await stranger.read("living-room", "temperature"), float)
        with pytest.raises(PeerRequestError) as err:
            await stranger.invoke("front-door", "unlock")
        assert err.value.code == "forbidden" and err.value.reason == "thing not granted"
        with pytest.raises(PeerRequestError) as err:
            await stranger.td("front-door")
        assert err.value.code == "forbidden"
        assert await owner.read("front-door", "state") == "locked"
    finally:
        await stranger.close()
        await owner.close()
    denied = await _audited(
        p2p, lambda x: x["subject"] == w.stranger.id and x["op"] == "invokeaction"
    )
    assert len(denied) == 2 and not any(x["allowed"] for x in denied)
    assert "forbidden" in denied[0]["reason"]


async def test_observe_lock_state_and_subscribe_event(p2p: P2P, clients: list[PeerClient]) -> None:
    w = p2p.r.world
    user = await _connect(p2p, w.user, clients)
    owner = await _connect(p2p, w.owner, clients)
    try:
        async with (
            user.observe("front-door", "state") as states,
            user.subscribe("front-door", "unlocked") as unlocked,
        ):
            await owner.invoke("front-door", "unlock")
            await owner.invoke("front-door", "lock")
            first = await asyncio.wait_for(states.next_event(), 3)
            second = await asyncio.wait_for(states.next_event(), 3)
            assert first is not None and second is not None
            assert (first.data, first.seq, second.data, second.seq) == ("unlocked", 0, "locked", 1)
            event = await asyncio.wait_for(anext(unlocked), 3)
            assert event["actor"] == w.owner.id
            assert states.lost == 0
        assert not states.active
        assert p2p.r.gw.things["front-door"].bus.subscriber_count == 0
        with pytest.raises(PeerRequestError) as err:
            async with user.observe("front-door", "nope"):
                pass
        assert err.value.code == "unknown_affordance"
    finally:
        await user.close()
        await owner.close()


async def test_revocation_by_owner_ends_a_live_subscription_at_once(
    p2p: P2P, clients: list[PeerClient]
) -> None:
    w = p2p.r.world
    user = await _connect(p2p, w.user, clients)
    owner = await _connect(p2p, w.owner, clients)
    current = p2p.r.gw.acl.current
    assert current is not None
    revoked = sign_acl(without_subject(current, w.user.id), w.owner)
    try:
        stream = await user.observe("front-door", "state").start()
        with pytest.raises(PeerRequestError) as err:
            await user.acl_push(revoked)  # not the owner
        assert (err.value.code, err.value.status) == ("forbidden", 403)
        assert p2p.r.gw.acl.current is current
        await owner.invoke("front-door", "unlock")
        assert await asyncio.wait_for(anext(stream), 3) == "unlocked"
        t0 = time.monotonic()
        assert (await owner.acl_push(revoked))["version"] == current.version + 1
        with pytest.raises(PeerRequestError) as err:
            await asyncio.wait_for(anext(stream), 3)
        elapsed = time.monotonic() - t0
        assert (err.value.code, err.value.status, err.value.reason) == (
            "forbidden",
            403,
            "access revoked",
        )
        assert elapsed < 0.5, f"revocation took {elapsed:.3f} s"
        await owner.invoke("front-door", "lock")
        with pytest.raises(PeerRequestError) as err:
            await user.read("front-door", "state")
        assert err.value.code == "forbidden"
        with pytest.raises(PeerRequestError) as err:
            await owner.acl_push(revoked)  # the same version again: rollback refused
        assert err.value.code == "bad_request" and "rollback" in err.value.reason
    finally:
        await user.close()
        await owner.close()
    rows = await _audited(p2p, lambda x: x["op"] == "aclpush")
    assert {(x["subject"], x["allowed"]) for x in rows} >= {(w.user.id, False), (w.owner.id, True)}
    closed = await _audited(p2p, lambda x: x["detail"] == "stream closed")
    assert closed and closed[0]["subject"] == w.user.id


async def test_refused_frames_each_with_its_code_audited_nothing_actuated(
    p2p: P2P, raw: Raw
) -> None:
    w, gw = p2p.r.world, p2p.gw_pub
    # a replayed frame: the first copy is served, the second refused (sealed: sender verified)
    frame = raw.request("invokeaction", thing="front-door", name="lock", jti=(jti := new_jti()))
    await raw.ws.send_str(frame)
    first = await raw.recv()
    assert isinstance(first, Opened) and first.typ == "reply" and first.claims["re"] == jti
    await raw.ws.send_str(frame)
    second = await raw.recv()
    assert isinstance(second, Opened) and second.typ == "error"
    assert (second.claims["code"], second.claims["re"]) == ("replayed", jti)
    sealed_cases = {
        "expired": raw.request(
            "invokeaction", thing="front-door", name="unlock", now=time.time() - 120
        ),
        "not_yet_valid": raw.request(
            "invokeaction", thing="front-door", name="unlock", now=time.time() + 120
        ),
    }
    for code, token in sealed_cases.items():
        await raw.ws.send_str(token)
        answer = await raw.recv()
        assert isinstance(answer, Opened) and answer.claims["code"] == code, code
    unlock = {"op": "invokeaction", "thing": "front-door", "name": "unlock"}
    plain_cases = {
        "wrong_audience": seal(unlock, sender=w.user, recipient=w.stranger.public, typ="request"),
        "wrong_audience ": _crafted(w.user, gw, _claims(w.user, w.stranger.id, **unlock)),
        "bad_alg": _crafted(w.user, gw, _claims(w.user, gw.id, **unlock), alg="none"),
        "bad_format": "not a sealed message",
        "bad_format ": "a.b.c.d.e",
        "too_large": "x" * 70_000,
    }
    for label, token in plain_cases.items():
        await raw.ws.send_str(token)
        answer = await raw.recv()
        assert answer == {
            "error": label.strip(),
            "status": 413 if label == "too_large" else 400,
            "frame": frame_digest(token),
        }, label
    # the connection survived every refusal
    await raw.ws.send_str(raw.request("readproperty", thing="front-door", name="state"))
    state = await raw.recv()
    assert isinstance(state, Opened) and state.claims["output"] == "locked"
    # beyond twice the limit the WebSocket layer closes the connection (1009)
    await raw.ws.send_str("x" * 140_000)
    closing = await raw.ws.receive(timeout=3)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1009
    codes = {
        "replayed",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "bad_alg",
        "bad_format",
        "too_large",
    }
    rows = await _audited(p2p, lambda x: x["reason"].split(":")[0] in codes and not x["allowed"])
    seen = {x["reason"].split(":")[0] for x in rows}
    assert seen == codes
    assert [x["subject"] for x in rows if x["reason"].startswith("replayed")] == [w.user.id]
    allowed = [x for x in _audit(p2p) if x["op"] == "invokeaction" and x["allowed"]]
    assert [x["affordance"] for x in allowed] == ["lock"]
    assert await p2p.r.gw.things["front-door"].read_property("state") == "locked"


async def test_a_disconnecting_peer_does_not_cut_an_operation_short(p2p: P2P, raw: Raw) -> None:
    await raw.ws.send_str(raw.request("invokeaction", thing="front-door", name="unlock"))
    await raw.ws.close()
    rows = await _audited(p2p, lambda x: x["op"] == "invokeaction" and x["allowed"])
    assert [x["reason"] for x in rows] == ["ok"]
    lock = p2p.r.gw.things["front-door"]
    assert await lock.read_property("state") == "unlocked"  # finished, confirmed, reported


async def test_binary_frame_closes_with_1003(p2p: P2P, raw: Raw) -> None:
    await raw.ws.send_bytes(b"\x00\x01")
    closing = await raw.ws.receive(timeout=3)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1003


async def test_flood_is_rate_limited_while_another_peer_is_served(
    p2p: P2P, raw: Raw, clients: list[PeerClient]
) -> None:
    frames = [
        raw.request("readproperty", thing="living-room", name="temperature") for _ in range(150)
    ]
    t0 = time.monotonic()
    for f in frames:
        await raw.ws.send_str(f)
    other = await _connect(p2p, p2p.r.world.owner, clients)
    try:
        assert isinstance(await other.read("living-room", "temperature"), float)
        answers = [await raw.recv() for _ in frames]
        elapsed = time.monotonic() - t0
        served = [a for a in answers if isinstance(a, Opened) and a.typ == "reply"]
        # over the connection's rate: refused before opening (plain, matched by frame digest)
        limited = [a for a in answers if isinstance(a, dict) and a["error"] == "rate_limited"]
        # within the rate but over the requests in flight: refused after opening (sealed)
        busy = [a for a in answers if isinstance(a, Opened) and a.typ == "error"]
        assert len(served) + len(limited) + len(busy) == len(frames)
        assert all(a["status"] == 429 for a in limited)
        assert {a["frame"] for a in limited} <= {frame_digest(f) for f in frames}
        assert all((a.claims["code"], a.claims["status"]) == ("rate_limited", 429) for a in busy)
        assert len(served) >= p2p.binding.ctx.limits.max_inflight
        assert BURST <= len(served) + len(busy) <= BURST + RATE * elapsed + 1
        for _ in range(5):
            assert isinstance(await other.read("living-room", "temperature"), float)
    finally:
        await other.close()
    rows = await _audited(p2p, lambda x: x["reason"].startswith("rate_limited"))
    assert 1 <= len(rows) <= elapsed + 2, "a flood is not turned into audit writes"


async def test_wrong_gateway_key_fails_fast_and_closed_connection_fails_cleanly(p2p: P2P) -> None:
    w = p2p.r.world
    async with PeerClient(w.user) as client:
        conn = await client.connect(p2p.binding.url, w.stranger.public)  # not the gateway's key
        with pytest.raises(PeerRequestError) as err:
            await conn.read("front-door", "state")
        assert err.value.code == "wrong_audience"
        conn = await client.connect(p2p.binding.url, p2p.gw_pub)
        stream = await conn.observe("front-door", "state").start()
        await p2p.binding.stop()  # the gateway goes away
        with pytest.raises(PeerConnectionError):
            await asyncio.wait_for(anext(stream), 3)
        with pytest.raises(PeerConnectionError):
            await conn.read("front-door", "state")
    assert p2p.r.gw.things["front-door"].bus.subscriber_count == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("p2p-")]


async def test_silent_gateway_times_out_and_a_dropped_one_fails_pending(
    unused_tcp_port: int,
) -> None:
    from gateway.identity import generate_keypair

    received: asyncio.Queue[web.WebSocketResponse] = asyncio.Queue()

    async def silent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            received.put_nowait(ws)  # read, never answer
        return ws

    app = web.Application()
    app.router.add_get("/p2p", silent)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    url = f"ws://127.0.0.1:{unused_tcp_port}/p2p"
    try:
        async with PeerClient(generate_keypair(), request_timeout=0.3) as client:
            conn = await client.connect(url, generate_keypair().public)
            with pytest.raises(PeerTimeoutError, match="no answer to readproperty"):
                await conn.read("front-door", "state")
            await received.get()
            conn.request_timeout = 10
            pending = asyncio.create_task(conn.read("front-door", "state"))
            server_side = await asyncio.wait_for(received.get(), 3)
            await server_side.close()  # the gateway drops the connection mid-request
            with pytest.raises(PeerConnectionError, match="close code 1000"):
                await asyncio.wait_for(pending, 3)
            assert conn.closed
            with pytest.raises(PeerConnectionError):
                await conn.read("front-door", "state")
            with pytest.raises(PeerConnectionError) as err:
                await client.connect("http://127.0.0.1/p2p", generate_keypair().public)
            assert err.value.code == "bad_url"
    finally:
        await runner.cleanup()


async def test_hostile_json_in_sealed_claims_is_bad_format_and_actuates_nothing(
    p2p: P2P, raw: Raw
) -> None:
    w, gw = p2p.r.world, p2p.gw_pub
    write = {"op": "writeproperty", "thing": "living-room", "name": "targetTemperature"}
    base = json.dumps(_claims(w.user, gw.id, **write), separators=(",", ":")).encode()[:-1]
    for value in (b"[" * 3000 + b"]" * 3000, b"9" * 5000, b"1e400", b"NaN"):
        token = _crafted(w.user, gw, base + b',"input":' + value + b"}")
        await raw.ws.send_str(token)
        answer = await raw.recv()
        assert answer == {"error": "bad_format", "status": 400, "frame": frame_digest(token)}
    await raw.ws.send_str(
        raw.request("readproperty", thing="living-room", name="targetTemperature")
    )
    reply = await raw.recv()
    assert isinstance(reply, Opened) and reply.claims["output"] == 20.0
    deadline = time.monotonic() + 3.0  # the audit writer commits in the background
    while True:
        rows = await _audited(p2p, lambda x: x["reason"].startswith("bad_format"))
        if len(rows) >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 4 and not any(x["allowed"] for x in rows)


async def test_limits_passed_in_are_kept_unless_a_rate_is_given(running: Running) -> None:
    gw = running.gw
    lim = Limits(rate_per_s=5.0, burst=3, max_inflight=2)
    kept = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds, limits=lim)
    assert kept.ctx.limits == lim  # not reset to the default rate and burst
    both = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds, burst=7, limits=lim)
    assert (both.ctx.limits.rate_per_s, both.ctx.limits.burst) == (5.0, 7)
    plain = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds)
    assert (plain.ctx.limits.rate_per_s, plain.ctx.limits.burst) == (20.0, 40)  # [gateway.p2p]
