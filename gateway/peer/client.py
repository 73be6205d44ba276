"""The peer client: talk to a gateway over the Streembit P2P binding from any program.

    async with PeerClient(my_key) as client:
        conn = await client.connect("ws://192.0.2.7:8765/p2p", gateway_identity)
        await conn.invoke("front-door", "unlock")

`PeerClient` opens WebSockets and owns the connections; each is a `PeerConnection`
(gateway/peer/connection.py: sealed requests, session keys, answers, streams). There is no
reconnection here: connect again. Finding the gateway's address and key (the DHT contact
record) is not this module's job (gateway/peer/find.py).
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from gateway.identity import KeyPair, PublicIdentity
from gateway.peer import wire
from gateway.peer.closing import ClosedOnExit
from gateway.peer.connection import CLOSE_TIMEOUT_S, REQUEST_TIMEOUT_S, PeerConnection, Reply
from gateway.peer.errors import PeerConnectionError
from gateway.reach.link import WsLink
from gateway.text import clean

CONNECT_TIMEOUT_S: Final = 10.0  # TCP + WebSocket handshake
HEARTBEAT_S: Final = 30.0  # WebSocket ping: a dead gateway is noticed within about this long


class PeerClient(ClosedOnExit):
    """A peer identity's client: opens connections to gateways, closes them all at the end."""

    def __init__(
        self,
        key: KeyPair,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.key = key
        self.request_timeout = request_timeout
        self._session = session
        self._own_session = session is None
        self._conns: set[PeerConnection] = set()

    async def connect(
        self,
        url: str,
        gateway: PublicIdentity,
        *,
        timeout_s: float | None = None,
        path: str = "direct",
    ) -> PeerConnection:
        """Open a WebSocket to the gateway at URL (ws:// or wss://) whose key is GATEWAY,
        within TIMEOUT_S (None: CONNECT_TIMEOUT_S)."""
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise PeerConnectionError(f"not a WebSocket URL: {clean(url)!r}", code="bad_url")
        limit = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(limit):
                ws = await self._session.ws_connect(
                    url,
                    max_msg_size=wire.HARD_FRAME_BYTES,
                    heartbeat=HEARTBEAT_S,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
                )
        except TimeoutError:
            raise PeerConnectionError(
                f"cannot connect to {clean(url)}: no answer within {limit:g} s",
                code="connect_failed",
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerConnectionError(
                f"cannot connect to {clean(url)}: {clean(str(exc))}", code="connect_failed"
            ) from None
        conn = PeerConnection(
            self.key, gateway, url, WsLink(ws), request_timeout=self.request_timeout, path=path
        )
        self._conns = {c for c in self._conns if not c.closed}
        self._conns.add(conn)
        return conn

    async def close(self) -> None:
        """Close every connection (and the HTTP session if this client created it)."""
        conns, self._conns = list(self._conns), set()
        for conn in conns:
            await conn.close()
        if self._own_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()


__all__ = [
    "CONNECT_TIMEOUT_S",
    "REQUEST_TIMEOUT_S",
    "PeerClient",
    "PeerConnection",
    "Reply",
]
