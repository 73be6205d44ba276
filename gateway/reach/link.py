"""Links: one ordered, reliable channel of text frames between a peer and a gateway.

The P2P binding and the peer client speak end-to-end sealed messages (docs/protocol.md) over a
`Link`, whatever carries it (aiocoap's layered transports):

* `WsLink`: a WebSocket, direct, through a mapped router port, or piped through a relay
  (the relay sees only the sealed frames);
* `StreamLink`: a bare TCP connection made by a hole punch (gateway/reach/punch.py). It starts
  with the 8-byte preamble ``SBLINK1\\n`` each way; then each frame is a 4-byte big-endian length
  and that many bytes of UTF-8 (docs/reach.md, "Direct links").

`recv()` returns the next text frame, None once the link is closed, or raises `LinkFrameError`
(with the refusal code the session audits) for a frame it cannot deliver; after that error the
link is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Final, Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.messages import MAX_MESSAGE_BYTES
from gateway.text import clean

if TYPE_CHECKING:  # the server side of aiohttp is not needed by a peer
    from aiohttp import web

__all__ = [
    "PREAMBLE",
    "Link",
    "LinkFrameError",
    "StreamLink",
    "WsLink",
    "open_stream_link",
]

PREAMBLE: Final = b"SBLINK1\n"
# The largest frame a link delivers: gateway.peer.wire.HARD_FRAME_BYTES (not imported from there:
# gateway.peer imports this module).
MAX_FRAME: Final = 2 * MAX_MESSAGE_BYTES
_LEN: Final = struct.Struct(">I")
PREAMBLE_TIMEOUT_S: Final = 5.0  # both ends write the preamble at once; a silent end is not ours
CLOSE_TIMEOUT_S: Final = 2.0  # a peer that does not finish a close is cut off
# TCP keepalive on a punched link: NAT mappings of idle flows expire; probes keep them and find
# a dead peer within IDLE + INTERVAL * COUNT seconds (the WebSocket heartbeat's job elsewhere).
KEEPALIVE_IDLE_S: Final = 30
KEEPALIVE_INTERVAL_S: Final = 10
KEEPALIVE_COUNT: Final = 3


class LinkFrameError(ReachError):
    """A frame the link cannot deliver (binary, too large, broken); the link is done."""

    def __init__(self, code: str, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason, code=code)
        self.close_code = close_code


class Link(Protocol):
    """What a session needs from its transport."""

    kind: str  # "ws" or "tcp" (shown by ops and `streembit-peer find`)

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    async def recv(self) -> str | None: ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int = WSCloseCode.GOING_AWAY) -> None: ...


class WsLink:
    """A `Link` over an aiohttp WebSocket (server or client side)."""

    kind = "ws"

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def recv(self) -> str | None:
        msg = await self.ws.receive()
        if msg.type is WSMsgType.TEXT:
            return str(msg.data)
        if msg.type is WSMsgType.BINARY:
            raise LinkFrameError(
                Code.BAD_FORMAT, "binary frame (text frames only)", WSCloseCode.UNSUPPORTED_DATA
            )
        if msg.type is WSMsgType.ERROR:
            too_big = self.ws.close_code == WSCloseCode.MESSAGE_TOO_BIG
            code = Code.TOO_LARGE if too_big else Code.BAD_FORMAT
            raise LinkFrameError(code, f"WebSocket error: {clean(str(self.ws.exception()), 120)}")
        return None  # CLOSE, CLOSING, CLOSED

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def close(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError, RuntimeError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code=code)


class StreamLink:
    """A `Link` over a connected TCP stream: length-prefixed UTF-8 frames (module docstring)."""

    kind = "tcp"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max = max_frame
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    @property
    def close_code(self) -> int | None:
        return None

    @property
    def remote(self) -> str:
        peer = self._writer.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"

    async def recv(self) -> str | None:
        if self._closed:
            return None
        try:
            (size,) = _LEN.unpack(await self._reader.readexactly(_LEN.size))
            if size > self._max:
                self._closed = True
                raise LinkFrameError(Code.TOO_LARGE, f"frame of {size} bytes (limit {self._max})")
            data = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            self._closed = True
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self._closed = True
            raise LinkFrameError(Code.BAD_FORMAT, "a frame that is not UTF-8") from None

    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionError("the link is closed")
        data = text.encode("utf-8")
        self._writer.write(_LEN.pack(len(data)) + data)
        await self._writer.drain()

    async def close(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        self._closed = True
        self._writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)


async def open_stream_link(sock: socket.socket) -> StreamLink:
    """Turn a connected TCP socket (a hole punch's) into a `StreamLink`: keepalive on, the
    preamble written and checked. ReachError(code "punch_failed") if the other end is not a
    Streembit link; the socket is closed then."""
    _keepalive(sock)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME + 8)
    try:
        writer.write(PREAMBLE)
        async with asyncio.timeout(PREAMBLE_TIMEOUT_S):
            await writer.drain()
            got = await reader.readexactly(len(PREAMBLE))
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
        writer.close()
        why = "no preamble in time" if isinstance(exc, TimeoutError) else "connection lost"
        raise ReachError(f"direct link failed: {why}", code=Code.PUNCH_FAILED) from None
    if got != PREAMBLE:
        writer.close()
        raise ReachError("direct link failed: not a Streembit link", code=Code.PUNCH_FAILED)
    return StreamLink(reader, writer)
