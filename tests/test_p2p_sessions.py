"""Session keys over the real P2P binding on 127.0.0.1 (docs/protocol.md §8): the peer client
moves to session frames after its first sealed Thing request; a session never widens what the
ACL allows; every refusal of a session frame has its code, is audited and actuates nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import aiohttp
import pytest
from joserfc import jwe
from joserfc.jwk import OctKey

from gateway.acl import sign_acl, without_subject
from gateway.bindings.p2p import keyring
from gateway.identity import KeyPair
from gateway.messages import Opened, claims, new_jti, open_sealed, seal
from gateway.messages.sessionkeys import (
    MIN_SESSION_TTL_S,
    TO_GATEWAY,
    SessionKeys,
    derive_key,
    new_offer,
    parse_announcement,
)
from gateway.peer import PeerClient, PeerConnection, PeerRequestError
from gateway.peer.wire import plain_error
from tests.test_p2p_binding import P2P, Raw, _audited, _connect, clients, p2p, raw  # noqa: F401

UNLOCK = {"op": "invokeaction", "thing": "front-door", "name": "unlock"}
READ = {"op": "readproperty", "thing": "front-door", "name": "state"}


async def _state(p: P2P) -> Any:
    return await p.r.gw.things["front-door"].read_property("state")


async def _refusals(p: P2P, codes: set[str]) -> set[str]:
    """The codes of CODES audited as refusals, waiting up to 3 s for all of them."""
    seen: set[str] = set()
    deadline = time.monotonic() + 3.0
    while seen != codes and time.monotonic() < deadline:
        rows = await _audited(p, lambda x: x["reason"].split(":")[0] in codes and not x["allowed"])
        seen = {x["reason"].split(":")[0] for x in rows}
        await asyncio.sleep(0.05)
    return seen


async def _refusal_subjects(p: P2P) -> dict[str, set[str]]:
    """The subjects of the audited refusals, by code."""
    by_code: dict[str, set[str]] = {}
    for x in await _audited(p, lambda x: not x["allowed"]):
        by_code.setdefault(x["reason"].split(":")[0], set()).add(x["subject"])
    return by_code


def _alg(frame: str) -> str:
    head = frame.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["alg"])


def _tap(conn: PeerConnection) -> tuple[list[str], list[str]]:
    """Record the algs of the frames CONN sends and receives from now on."""
    sent: list[str] = []
    received: list[str] = []
    link = conn._link
    send, recv = link.send, link.recv

    async def tapped_send(text: str) -> None:
        sent.append(_alg(text))
        await send(text)

    async def tapped_recv() -> str | None:
        frame = await recv()
        if frame is not None and not frame.startswith("{"):
            received.append(_alg(frame))
        return frame

    link.send = tapped_send  # type: ignore[method-assign]
    link.recv = tapped_recv  # type: ignore[method-assign]
    return sent, received


class SessionRaw:
    """A raw WebSocket peer that opened a session by hand (crafted offer, derived keys)."""

    def __init__(self, peer: Raw, keys: SessionKeys, secret: bytes) -> None:
        self.raw, self.keys, self.secret = peer, keys, secret

    def hostile(self, claims: dict[str, Any]) -> str:
        """A session frame of CLAIMS built with joserfc alone (no checks of the code)."""
        key = derive_key(self.secret, self.keys.sid, TO_GATEWAY, self.raw.key.id, self.raw.gw.id)
        hdr = {"alg": "dir", "enc": "A256GCM", "kid": self.keys.sid, "cty": "streembit-msg+json"}
        reg = jwe.JWERegistry(algorithms=["dir", "A256GCM"])
        return jwe.encrypt_compact(
            hdr, json.dumps(claims).encode(), OctKey.import_key(key), registry=reg
        )

    async def recv(self) -> Opened | dict[str, Any]:
        msg = await self.raw.ws.receive(timeout=3.0)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        if msg.data.startswith("{"):
            return dict(json.loads(msg.data))
        if _alg(msg.data) == "dir":
            return self.keys.open(msg.data, replay=None)
        return open_sealed(msg.data, recipient=self.raw.key, replay=None)


async def _session(peer: Raw, ttl_s: int = keyring.SESSION_TTL_S) -> SessionRaw:
    offer, secret = new_offer()
    body = {"op": "readproperty", "thing": "front-door", "name": "state", "ses": offer}
    await peer.ws.send_str(seal(body, sender=peer.key, recipient=peer.gw, typ="request"))
    answer = await peer.recv()
    assert isinstance(answer, Opened) and answer.typ == "reply", answer
    assert answer.claims["output"] == "locked"
    if ttl_s >= MIN_SESSION_TTL_S:
        sid, ttl = parse_announcement(answer.claims["ses"])
    else:  # shorter than a peer accepts: tests of the gateway's expiry take it as it is
        sid, ttl = answer.claims["ses"]["id"], answer.claims["ses"]["ttl"]
    assert ttl == ttl_s
    keys = SessionKeys.derive(
        secret, sid, role="peer", local=peer.key.public, remote=peer.gw, ttl_s=ttl
    )
    return SessionRaw(peer, keys, secret)


@pytest.fixture
async def sraw(raw: Raw) -> AsyncIterator[SessionRaw]:  # noqa: F811
    yield await _session(raw)


async def test_the_client_moves_to_session_frames_after_its_first_request(p2p: P2P) -> None:  # noqa: F811
    async with PeerClient(p2p.r.world.user) as client:
        conn = await client.connect(p2p.binding.url, p2p.gw_pub)
        sent, received = _tap(conn)
        assert await conn.read("front-door", "state") == "locked"
        assert await conn.invoke("front-door", "unlock") == "unlocked"
        assert await conn.read("front-door", "state") == "unlocked"
        async with conn.observe("front-door", "state") as stream:
            await conn.invoke("front-door", "lock")
            assert await asyncio.wait_for(anext(stream), 3) == "locked"
        assert await _state(p2p) == "locked"
        assert sent[0] == "ECDH-ES" and set(sent[1:]) == {"dir"}, sent
        assert received[0] == "ECDH-ES" and set(received[1:]) == {"dir"}, received
        # Administrative requests stay sealed on a session.
        with pytest.raises(PeerRequestError) as err:
            await conn.audit_checkpoint()
        assert err.value.code == "forbidden"
        assert sent[-1] == "ECDH-ES"
    rows = await _audited(p2p, lambda x: x["op"] == "invokeaction" and x["allowed"])
    assert {x["affordance"] for x in rows} == {"lock", "unlock"}


async def test_with_session_keys_off_every_frame_is_sealed(p2p: P2P) -> None:  # noqa: F811
    async with PeerClient(p2p.r.world.user) as client:
        conn = await client.connect(p2p.binding.url, p2p.gw_pub)
        conn.session_keys.enabled = False
        sent, received = _tap(conn)
        for _ in range(3):
            assert await conn.read("front-door", "state") == "locked"
        assert set(sent) == set(received) == {"ECDH-ES"}


async def test_a_session_never_outlives_a_revocation(
    p2p: P2P,  # noqa: F811
    sraw: SessionRaw,
) -> None:
    w = p2p.r.world
    current = p2p.r.gw.acl.current
    assert current is not None
    p2p.r.gw.acl.install(sign_acl(without_subject(current, w.user.id), w.owner))
    frame = sraw.keys.seal(UNLOCK, "request")
    await sraw.raw.ws.send_str(frame)
    answer = await sraw.recv()
    assert isinstance(answer, Opened) and answer.session is not None
    assert (answer.claims["code"], answer.claims["status"]) == ("forbidden", 403)
    assert await _state(p2p) == "locked"
    rows = await _audited(p2p, lambda x: x["op"] == "invokeaction" and not x["allowed"])
    assert rows and rows[0]["subject"] == w.user.id


async def test_session_frame_refusals_each_with_its_code_and_audited(
    p2p: P2P,  # noqa: F811
    sraw: SessionRaw,
) -> None:
    keys, ws = sraw.keys, sraw.raw.ws
    # A replayed session frame: the first copy is served, the copy refused over the session.
    frame = keys.seal({"op": "things"}, "request")
    await ws.send_str(frame)
    ok = await sraw.recv()
    assert isinstance(ok, Opened) and ok.typ == "reply" and ok.session == keys.sid
    await ws.send_str(frame)
    replayed = await sraw.recv()
    assert isinstance(replayed, Opened) and replayed.session == keys.sid
    assert replayed.claims["code"] == "replayed"
    # Expired: answered over the session too (the sender is known from the key).
    now = time.time()
    old = sraw.hostile({**_claims(sraw, now - 120), **UNLOCK})
    await ws.send_str(old)
    expired = await sraw.recv()
    assert isinstance(expired, Opened) and expired.claims["code"] == "expired"
    # Tampered ciphertext: plain decrypt_failed.
    head, ek, iv, ct, tag = keys.seal(UNLOCK, "request").split(".")
    ct = ("A" if ct[0] != "A" else "B") + ct[1:]
    await ws.send_str(".".join([head, ek, iv, ct, tag]))
    assert (await sraw.recv())["error"] == "decrypt_failed"  # type: ignore[index]
    # An administrative operation needs a signature: plain refusal, no ACL installed.
    before = p2p.r.gw.acl.current
    await ws.send_str(sraw.hostile({**_claims(sraw, now), "op": "aclpush", "input": "a.b.c"}))
    assert (await sraw.recv())["error"] == "needs_signature"  # type: ignore[index]
    assert p2p.r.gw.acl.current is before
    # A new offer may not ride on a session frame.
    offer, _ = new_offer()
    await ws.send_str(sraw.hostile({**_claims(sraw, now), **UNLOCK, "ses": offer}))
    assert (await sraw.recv())["error"] == "bad_format"  # type: ignore[index]
    # The session belongs to its connection: the same key is unknown on another one.
    async with aiohttp.ClientSession() as s, s.ws_connect(p2p.binding.url) as other:
        await other.send_str(keys.seal(UNLOCK, "request"))
        plain = json.loads((await other.receive(timeout=3)).data)
        assert (plain["error"], plain["status"]) == ("unknown_session", 400)
    assert await _state(p2p) == "locked"
    codes = {"replayed", "expired", "decrypt_failed", "needs_signature", "unknown_session"}
    assert await _refusals(p2p, codes) == codes
    # Audited under the peer once its frame decrypted (only it holds the key), else "-".
    by_code = await _refusal_subjects(p2p)
    peer = sraw.raw.key.id
    for code in ("replayed", "expired", "needs_signature", "bad_format"):
        assert by_code[code] == {peer}, code
    for code in ("decrypt_failed", "unknown_session"):
        assert by_code[code] == {"-"}, code


def _claims(sraw: SessionRaw, iat: float) -> dict[str, Any]:
    return {
        "iss": sraw.raw.key.id,
        "aud": sraw.raw.gw.id,
        "iat": int(iat),
        "exp": int(iat) + 30,
        "jti": new_jti(),
        "typ": "request",
    }


async def test_gateway_ttl_runs_out_plain_session_expired(
    p2p: P2P,  # noqa: F811
    raw: Raw,  # noqa: F811
) -> None:
    for session in p2p.binding.sessions:
        session.keyring.ttl_s = 1
    sraw = await _session(raw, ttl_s=1)
    await asyncio.sleep(1.1)
    await raw.ws.send_str(sraw.keys.seal(UNLOCK, "request"))
    plain = await sraw.recv()
    assert isinstance(plain, dict) and plain["error"] == "session_expired"
    assert await _state(p2p) == "locked"
    assert await _refusals(p2p, {"session_expired"}) == {"session_expired"}


async def test_the_client_resends_sealed_when_the_gateway_lost_its_session(
    p2p: P2P,  # noqa: F811
    clients: list[PeerClient],  # noqa: F811
) -> None:
    conn = await _connect(p2p, p2p.r.world.user, clients)
    assert await conn.read("front-door", "state") == "locked"
    sent, _ = _tap(conn)
    for session in p2p.binding.sessions:  # the gateway forgets every session key
        session.keyring.forget()
    assert await conn.invoke("front-door", "unlock") == "unlocked"
    assert sent == ["dir", "ECDH-ES"]  # refused as unknown_session, then sealed with an offer
    assert await conn.read("front-door", "state") == "unlocked"
    assert sent[-1] == "dir"  # and the new session is in use
    await conn.invoke("front-door", "lock")


async def test_two_peers_on_their_own_connections_have_separate_sessions(
    p2p: P2P,  # noqa: F811
    clients: list[PeerClient],  # noqa: F811
) -> None:
    w = p2p.r.world
    user = await _connect(p2p, w.user, clients)
    owner = await _connect(p2p, w.owner, clients)
    for _ in range(2):
        assert await user.read("front-door", "state") == "locked"
        assert await owner.read("front-door", "state") == "locked"
    keys = [s.keyring.keys_of(p.id) for s in p2p.binding.sessions for p in (w.user, w.owner)]
    sids = {k.sid for k in keys if k is not None}
    peers = {k.remote.id for k in keys if k is not None}
    assert len(sids) == 2 and peers == {w.user.id, w.owner.id}
    assert isinstance(w.user, KeyPair)


@pytest.mark.parametrize(("reoffer", "refusal"), [(True, "unknown_session"), (False, "replayed")])
async def test_a_forged_refusal_never_runs_a_command_twice(
    p2p: P2P,  # noqa: F811
    clients: list[PeerClient],  # noqa: F811
    reoffer: bool,
    refusal: str,
) -> None:
    """Someone on the path holds a session frame and answers it with a forged plain
    `unknown_session`: the client resends sealed with the same jti, iat and exp. The held
    frame, delivered later, is refused: its session was replaced by the resend's new offer,
    or (no new offer) the replay cache holds its jti until the exp both copies share. The
    lock moves once."""
    conn = await _connect(p2p, p2p.r.world.user, clients)
    assert await conn.read("front-door", "state") == "locked"
    link = conn._link
    send = link.send
    held: list[str] = []

    async def interposed(text: str) -> None:
        if _alg(text) == "dir" and not held:
            held.append(text)  # kept back; the client hears a forged refusal instead
            conn.session_keys.enabled = reoffer
            conn._on_frame(plain_error("unknown_session", text), link)
            return
        await send(text)

    link.send = interposed  # type: ignore[method-assign]
    assert await conn.invoke("front-door", "unlock") == "unlocked"
    assert len(held) == 1
    await send(held[0])  # the held session frame reaches the gateway after all
    assert await _refusals(p2p, {refusal}) == {refusal}
    runs = await _audited(
        p2p, lambda x: x["op"] == "invokeaction" and x["affordance"] == "unlock" and x["allowed"]
    )
    assert len(runs) == 1, runs
    # the session the forged refusal named still opens answers; new requests use a new one
    assert await conn.read("front-door", "state") == "unlocked"
    await conn.invoke("front-door", "lock")


async def test_the_gateway_answers_with_session_frames_only_once_the_peer_used_the_key(
    p2p: P2P,  # noqa: F811
    sraw: SessionRaw,
) -> None:
    peer = sraw.raw
    await peer.ws.send_str(peer.request("readproperty", thing="front-door", name="state"))
    answer = await sraw.recv()  # announced, but the peer has not shown it holds the key
    assert isinstance(answer, Opened) and answer.session is None and answer.typ == "reply"
    await peer.ws.send_str(sraw.keys.seal(READ, "request"))
    answer = await sraw.recv()
    assert isinstance(answer, Opened) and answer.session == sraw.keys.sid


@pytest.mark.parametrize(
    "offer",
    [
        {"v": 1, "k": "A" * 42 + "B"},  # right shape, not canonical base64url
        {"v": 1.0, "k": "A" * 43},  # a float is not the version
    ],
)
async def test_an_offer_the_gateway_could_not_use_is_refused_and_audited(
    p2p: P2P,  # noqa: F811
    raw: Raw,  # noqa: F811
    offer: dict[str, Any],
) -> None:
    body = {"op": "readproperty", "thing": "front-door", "name": "state", "ses": offer}
    with mock.patch.object(claims, "check_body", lambda typ, body: None):  # send it anyway
        token = seal(body, sender=raw.key, recipient=raw.gw, typ="request")
    await raw.ws.send_str(token)
    answer = await raw.recv()  # bad_format is answered plain, like any malformed body
    assert answer == {"error": "bad_format", "status": 400, "frame": answer.get("frame")}
    assert await _refusals(p2p, {"bad_format"}) == {"bad_format"}
    await raw.ws.send_str(raw.request("readproperty", thing="front-door", name="state"))
    answer = await raw.recv()  # the connection is still served
    assert isinstance(answer, Opened) and answer.claims["output"] == "locked"


async def test_another_peers_offer_on_the_same_connection_leaves_a_session_alone(
    p2p: P2P,  # noqa: F811
    sraw: SessionRaw,
) -> None:
    peer, owner = sraw.raw, p2p.r.world.owner
    offer, _ = new_offer()
    body = {"op": "readproperty", "thing": "front-door", "name": "state", "ses": offer}
    await peer.ws.send_str(seal(body, sender=owner, recipient=peer.gw, typ="request"))
    msg = await peer.ws.receive(timeout=3.0)  # sealed to the owner: the user cannot open it
    assert msg.type is aiohttp.WSMsgType.TEXT and _alg(msg.data) == "ECDH-ES"
    await peer.ws.send_str(sraw.keys.seal(READ, "request"))
    answer = await sraw.recv()
    assert isinstance(answer, Opened) and answer.claims["output"] == "locked"
    assert answer.session == sraw.keys.sid
