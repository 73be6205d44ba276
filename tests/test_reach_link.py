"""Links (gateway/reach/link.py): the P2P session over a bare TCP stream, and a peer connection
moving from one link to a better one with its subscriptions, on 127.0.0.1 against a real
gateway (the `running` fixture)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from gateway.bindings.p2p import P2PBinding
from gateway.errors import ReachError
from gateway.identity import KeyPair
from gateway.peer import PeerClient, PeerConnection, PeerRequestError
from gateway.reach.link import PREAMBLE, LinkFrameError, StreamLink, open_stream_link
from tests.helpers import Running


@pytest.fixture
async def binding(running: Running) -> AsyncIterator[P2PBinding]:
    gw = running.gw
    b = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one real TCP connection on 127.0.0.1 (what a hole punch hands over)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    return a, b


async def _pair() -> tuple[StreamLink, StreamLink]:
    a, b = _tcp_pair()
    return await asyncio.gather(open_stream_link(a), open_stream_link(b))


async def test_stream_link_carries_frames_both_ways_and_ends_cleanly() -> None:
    left, right = await _pair()
    await left.send("hello")
    await right.send("é" * 1000)
    assert await right.recv() == "hello"
    assert await left.recv() == "é" * 1000
    await left.close()
    assert await right.recv() is None
    assert left.closed


async def test_stream_link_refuses_oversized_and_non_utf8_frames() -> None:
    a, b = _tcp_pair()
    link_task = asyncio.create_task(open_stream_link(a))
    b.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(b, PREAMBLE + struct.pack(">I", 10**9))
    link = await link_task
    with pytest.raises(LinkFrameError) as err:
        await link.recv()
    assert err.value.code == "too_large"
    assert await link.recv() is None  # the link is done after an error

    a, b = _tcp_pair()
    link_task = asyncio.create_task(open_stream_link(a))
    b.setblocking(False)
    await loop.sock_sendall(b, PREAMBLE + struct.pack(">I", 2) + b"\xff\xfe")
    link = await link_task
    with pytest.raises(LinkFrameError) as err:
        await link.recv()
    assert err.value.code == "bad_format"
    b.close()


async def test_a_stranger_without_the_preamble_is_refused() -> None:
    a, b = _tcp_pair()
    b.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ReachError) as err:
        await open_stream_link(a)
    assert err.value.code == "punch_failed" and "not a Streembit link" in str(err.value)
    b.close()


async def _stream_conn(
    binding: P2PBinding, running: Running, key: KeyPair
) -> tuple[PeerConnection, asyncio.Task[None]]:
    ours, theirs = await _pair()
    served = asyncio.create_task(binding.serve_link(theirs, "127.0.0.1"), name="test-serve-link")
    conn = PeerConnection(key, running.gw.identity.public, "tcp://test", ours, path="punched")
    return conn, served


async def test_a_session_over_a_stream_link_serves_and_refuses_like_any_other(
    binding: P2PBinding, running: Running
) -> None:
    w = running.world
    conn, served = await _stream_conn(binding, running, w.user)
    try:
        assert await conn.invoke("front-door", "unlock") == "unlocked"
        assert await conn.read("front-door", "state") == "unlocked"
        assert await conn.invoke("front-door", "lock") == "locked"
    finally:
        await conn.close()
    await asyncio.wait_for(served, 5)
    assert not binding.sessions

    conn, served = await _stream_conn(binding, running, w.stranger)
    try:
        with pytest.raises(PeerRequestError) as err:
            await conn.invoke("front-door", "unlock")
        assert err.value.code == "forbidden"
    finally:
        await conn.close()
    await asyncio.wait_for(served, 5)


async def test_adopt_moves_requests_and_streams_to_the_new_link(
    binding: P2PBinding, running: Running
) -> None:
    w = running.world
    gw = running.gw.identity.public
    async with PeerClient(w.user) as client, PeerClient(w.owner) as owners:
        conn = await client.connect(binding.url, gw, path="relayed")
        owner = await owners.connect(binding.url, gw)
        stream = await conn.observe("front-door", "state").start()
        assert len(binding.sessions) == 2
        ours, theirs = await _pair()
        served = asyncio.create_task(binding.serve_link(theirs, "127.0.0.1"), name="test-serve")
        await conn.adopt(ours, "punched", "tcp://test")
        assert conn.path == "punched"
        # the old WebSocket session is gone, the new link serves the stream and requests
        for _ in range(50):
            if sorted(s.link.kind for s in binding.sessions) == ["tcp", "ws"]:
                break
            await asyncio.sleep(0.05)
        assert sorted(s.link.kind for s in binding.sessions) == ["tcp", "ws"]
        await owner.invoke("front-door", "unlock")
        event = await asyncio.wait_for(stream.next_event(), 3)
        assert event is not None and event.data == "unlocked" and event.seq == 0
        assert await conn.invoke("front-door", "lock") == "locked"
        event = await asyncio.wait_for(stream.next_event(), 3)
        assert event is not None and event.data == "locked"
        assert stream.lost == 0 and not conn.closed
        await conn.close()
        await asyncio.wait_for(served, 5)
