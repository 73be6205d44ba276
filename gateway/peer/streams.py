"""Client side of an observation or event subscription: an async iterator of values.

A `PeerStream` is created by `PeerConnection.observe()` / `.subscribe()` and started by
`async with` (or by the first iteration). It yields each event's `data`; `events()` yields the
whole `PeerEvent` (with `seq`). Iteration ends normally after `stop()`, and raises the reason
when the gateway ends it (`PeerRequestError` `forbidden` when access is revoked) or the
connection closes (`PeerConnectionError`). A slow consumer loses the oldest events beyond
`maxsize` (counted in `dropped`); `lost` counts every gap in `seq` seen so far.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from gateway.peer.errors import PeerError

if TYPE_CHECKING:
    from gateway.peer.connection import PeerConnection

STREAM_QUEUE: Final = 256  # events kept for a consumer that lags behind
STOP_TIMEOUT_S: Final = 5.0  # how long stop() waits for the gateway to confirm
STOP_OPS: Final = {"observeproperty": "unobserveproperty", "subscribeevent": "unsubscribeevent"}


@dataclass(frozen=True)
class PeerEvent:
    """One notification: a property's new value or an event's data."""

    thing: str
    name: str
    seq: int
    data: Any


class PeerStream:
    """A subscription on one connection; see the module docstring."""

    def __init__(
        self, conn: PeerConnection, op: str, thing: str, name: str, *, maxsize: int = STREAM_QUEUE
    ) -> None:
        self.conn = conn
        self.op = op
        self.thing = thing
        self.name = name
        self.maxsize = maxsize
        self.jti: str | None = None
        self.dropped = 0
        self.lost = 0
        self._items: deque[PeerEvent] = deque()
        self._wake = asyncio.Event()
        self._started = False
        self._finished = False
        self._error: BaseException | None = None
        self._next_seq = 0  # the seq expected next: the gateway numbers from 0

    @property
    def active(self) -> bool:
        """True between a confirmed start and the end of the subscription."""
        return self._started and not self._finished

    async def start(self) -> PeerStream:
        """Ask the gateway to start (raises `PeerRequestError` if refused). Idempotent."""
        if not self._started:
            self._started = True
            await self.conn._start_stream(self)
        return self

    async def stop(self) -> None:
        """End the subscription (iteration then ends normally). Never raises a peer error."""
        was_active = self.active
        self._finish(None)
        self.conn._forget_stream(self)
        if was_active and not self.conn.closed:
            with contextlib.suppress(PeerError):
                await self.conn.request(
                    STOP_OPS[self.op], thing=self.thing, name=self.name, timeout_s=STOP_TIMEOUT_S
                )

    async def __aenter__(self) -> PeerStream:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __aiter__(self) -> PeerStream:
        return self

    async def __anext__(self) -> Any:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event.data

    async def next_event(self) -> PeerEvent | None:
        """The next event; None once stopped; raises why the gateway or connection ended it."""
        await self.start()
        while not self._items:
            if self._finished:
                if self._error is not None:
                    raise self._error
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()

    async def events(self) -> AsyncIterator[PeerEvent]:
        """Iterate over whole events (thing, name, seq, data)."""
        while (event := await self.next_event()) is not None:
            yield event

    # ----------------------------------------------------- called by the connection
    def _push(self, event: PeerEvent) -> None:
        if self._finished:
            return
        if event.seq > self._next_seq:
            self.lost += event.seq - self._next_seq
        self._next_seq = max(self._next_seq, event.seq + 1)
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
            self.lost += 1
        self._items.append(event)
        self._wake.set()

    def _moved(self) -> None:
        """The subscription is being started again on another link: it numbers from 0."""
        self._next_seq = 0

    def _finish(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._error = error
        self._wake.set()
