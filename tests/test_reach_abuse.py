"""A relay can delay or drop, never read, forge or replay: the whole path on 127.0.0.1.

A real gateway (the `running` fixture) keeps a reservation at a real relay
(gateway/reach/relay) and serves its circuits with its P2P binding; alice connects to the
relayed address with the peer client. Then the relay turns hostile (its pipe is replaced in
this test): it replays every frame, or flips one character of a frame. The gateway refuses
those frames with a reason, audits them, and the lock acts exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from gateway.audit import AuditLog
from gateway.bindings.p2p import P2PBinding
from gateway.peer import PeerClient, PeerTimeoutError
from gateway.reach.link import WsLink
from gateway.reach.relay import RelayReservations, RelayService
from gateway.reach.relay.circuit import Circuit, Counters
from tests.helpers import Running

Tamper = Callable[[int, str], list[str]]  # frame index, frame -> what the relay forwards


@dataclass
class Relayed:
    running: Running
    binding: P2PBinding
    relay: RelayService
    addr: str


@pytest.fixture
async def relayed(running: Running) -> AsyncIterator[Relayed]:
    gw = running.gw
    binding = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds)
    await binding.start()
    relay = RelayService()
    await relay.start("127.0.0.1", 0)

    async def find() -> list[str]:
        return [relay.url]

    async def serve(ws: Any, label: str) -> None:
        await binding.serve_link(WsLink(ws), "127.0.0.1")

    res = RelayReservations(gw.identity, find, serve, want=1)
    await res.start()
    try:
        deadline = time.monotonic() + 5
        while not res.addrs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert res.addrs, res.status()
        yield Relayed(running, binding, relay, res.addrs[0])
    finally:
        await res.stop()
        await relay.stop()
        await binding.stop()


def hostile(monkeypatch: pytest.MonkeyPatch, tamper: Tamper) -> None:
    """Make every relay circuit forward `tamper(i, frame)` instead of frame i (toward either
    end): the relay's own pipe, replaced."""

    async def pipe(
        self: Circuit,
        src: web.WebSocketResponse,
        dst: web.WebSocketResponse,
        max_bytes: int,
        counters: Counters,
    ) -> None:
        i = 0
        try:
            async for msg in src:
                if msg.type is not WSMsgType.TEXT:
                    return
                for out in tamper(i, msg.data):
                    await dst.send_str(out)
                i += 1
        except (ConnectionError, RuntimeError):
            pass
        finally:
            await self.close()

    monkeypatch.setattr(Circuit, "_pipe", pipe)


def audit_rows(r: Running) -> list[dict[str, Any]]:
    log = AuditLog.open(r.world.state / "audit.sqlite3")
    try:
        return [x.as_dict() for x in log.query(limit=5000) if x.binding == "p2p"]
    finally:
        log.close()


async def wait_rows(r: Running, pred: Callable[[dict[str, Any]], bool], n: int) -> list[Any]:
    deadline = time.monotonic() + 5
    while True:
        rows = [x for x in audit_rows(r) if pred(x)]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_an_honest_relay_carries_a_granted_unlock(relayed: Relayed) -> None:
    r = relayed.running
    async with PeerClient(r.world.user) as client:
        conn = await client.connect(relayed.addr, r.gw.identity.public, path="relayed")
        assert await conn.invoke("front-door", "unlock") == "unlocked"
        assert await conn.invoke("front-door", "lock") == "locked"
    stats = relayed.relay.stats()
    assert stats["circuits_total"] == 1 and stats["frames_relayed"] >= 4


async def test_a_replaying_relay_makes_the_lock_act_once(
    relayed: Relayed, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile(monkeypatch, lambda i, frame: [frame, frame])  # every frame twice
    r = relayed.running
    async with PeerClient(r.world.user) as client:
        conn = await client.connect(relayed.addr, r.gw.identity.public, path="relayed")
        assert await conn.invoke("front-door", "unlock") == "unlocked"
        replayed = await wait_rows(r, lambda x: x["reason"].startswith("replayed"), 1)
    allowed = [x for x in audit_rows(r) if x["op"] == "invokeaction" and x["allowed"]]
    assert len(allowed) == 1  # the replayed copy was refused, not acted on
    assert replayed and not replayed[0]["allowed"]
    assert await r.gw.things["front-door"].read_property("state") == "unlocked"


async def test_a_tampering_relay_causes_refusals_never_an_action(
    relayed: Relayed, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flip(i: int, frame: str) -> list[str]:
        if frame.startswith("{"):  # a plain refusal back to the peer: pass it on
            return [frame]
        mid = len(frame) // 2
        return [frame[:mid] + ("A" if frame[mid] != "A" else "B") + frame[mid + 1 :]]

    hostile(monkeypatch, flip)
    r = relayed.running
    async with PeerClient(r.world.user, request_timeout=2.0) as client:
        conn = await client.connect(relayed.addr, r.gw.identity.public, path="relayed")
        with pytest.raises(PeerTimeoutError):  # the refusal names a frame the peer never sent
            await conn.invoke("front-door", "unlock")
    refused = await wait_rows(r, lambda x: not x["allowed"], 1)
    assert refused, "the tampered frame was not audited"
    code = refused[0]["reason"].split(":", 1)[0]  # "decrypt_failed: cannot decrypt (…)"
    assert code in ("decrypt_failed", "bad_format", "bad_signature"), refused[0]
    assert not [x for x in audit_rows(r) if x["allowed"] and x["op"] == "invokeaction"]
    assert await r.gw.things["front-door"].read_property("state") == "locked"
