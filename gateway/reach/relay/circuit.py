"""One relayed circuit: two WebSockets whose TEXT frames are copied both ways, unchanged.

The frames are end-to-end sealed messages (docs/protocol.md): the relay never parses, reads
or alters them; it only counts their bytes against the circuit's limit. Anything but a text
frame (binary, an oversized frame, an error) ends the circuit, as does either side closing,
the byte limit or the duration limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.tasks import TaskOwner

log = logging.getLogger(__name__)

__all__ = ["Circuit", "Counters", "ws_close"]

#: Close reasons sent to both ends (WebSocket close frame, 1008 policy violation).
BYTES_REASON: Final = b"relay: circuit byte limit"
TIME_REASON: Final = b"relay: circuit duration limit"
BINARY_REASON: Final = b"relay: text frames only"


async def ws_close(ws: web.WebSocketResponse, code: int = WSCloseCode.OK, msg: bytes = b"") -> None:
    """Close WS if it is open; bounded by its own close timeout; errors mean it is gone."""
    if ws.prepared and not ws.closed:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=code, message=msg)


@dataclass
class Counters:
    """The relay's counters for ops (`RelayService.stats`)."""

    reservations_total: int = 0
    circuits_total: int = 0
    bytes_relayed: int = 0
    frames_relayed: int = 0


@dataclass(eq=False)
class Circuit:
    """A circuit from its "incoming" to its end. `accepted` is the reserving node's socket."""

    token: str
    id: str
    accepted: asyncio.Future[web.WebSocketResponse]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    nbytes: int = 0
    frames: int = 0
    why: str = ""

    async def close(self, code: int = WSCloseCode.OK, msg: bytes = b"") -> None:
        await asyncio.gather(*(ws_close(ws, code, msg) for ws in self.sockets))

    async def run(
        self,
        a: web.WebSocketResponse,
        b: web.WebSocketResponse,
        *,
        max_bytes: int,
        max_duration_s: float,
        tasks: TaskOwner,
        counters: Counters,
    ) -> None:
        """Pipe A <-> B until either ends or a limit is hit; both are closed on return."""
        self.sockets = [a, b]
        back = tasks.spawn(self._pipe(b, a, max_bytes, counters), name=f"relay-circuit-{self.id}")
        try:
            async with asyncio.timeout(max_duration_s):
                await self._pipe(a, b, max_bytes, counters)
                await back
        except TimeoutError:
            self.why = "duration limit"
            await self.close(WSCloseCode.POLICY_VIOLATION, TIME_REASON)
        finally:
            TaskOwner.cancel(back)
            await asyncio.wait([back])  # returns when it ended; our own cancellation propagates
            await self.close(WSCloseCode.GOING_AWAY)
            self.done.set()

    async def _pipe(
        self,
        src: web.WebSocketResponse,
        dst: web.WebSocketResponse,
        max_bytes: int,
        counters: Counters,
    ) -> None:
        code, reason = WSCloseCode.OK, b""
        try:
            async for msg in src:
                if msg.type is not WSMsgType.TEXT:  # BINARY, or ERROR (e.g. over the frame cap)
                    self.why = f"{msg.type.name.lower()} frame"
                    code, reason = WSCloseCode.POLICY_VIOLATION, BINARY_REASON
                    return
                data: str = msg.data
                n = len(data) if data.isascii() else len(data.encode("utf-8"))
                if self.nbytes + n > max_bytes:
                    self.why = "byte limit"
                    code, reason = WSCloseCode.POLICY_VIOLATION, BYTES_REASON
                    return
                self.nbytes += n
                self.frames += 1
                counters.bytes_relayed += n
                counters.frames_relayed += 1
                await dst.send_str(data)
            self.why = self.why or "closed by a peer"
        except (ConnectionError, RuntimeError):
            self.why = self.why or "a peer went away"
        finally:
            await self.close(code, reason)
