"""One request at a time to a router's UDP port (NAT-PMP and PCP, both on 5351): a connected
datagram endpoint, retransmission with doubling waits, and the answer picked out of whatever
arrives. Each protocol says what a datagram is with its MATCH function."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Final, TypeVar

from gateway.errors import ReachError
from gateway.reach.portmap.model import unavailable

T = TypeVar("T")
#: MATCH(datagram): the awaited answer, None (not it: ignored), or a ReachError kept as the
#: reason if no answer comes; it raises ReachError for the router's own final refusal.
Match = Callable[[bytes], "T | ReachError | None"]

QUEUE_MAX: Final = 16  # datagrams buffered while no request waits; more are dropped
_RANDOM: Final = secrets.SystemRandom()


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self, max_datagram: int) -> None:
        self.max_datagram = max_datagram
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue(QUEUE_MAX)

    def _put(self, item: bytes | OSError) -> None:
        if not self.queue.full():
            self.queue.put_nowait(item)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._put(data[: self.max_datagram + 1])  # one byte more: "too long" stays visible

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):  # ICMP port unreachable: nothing listens on the port
            self._put(exc)


class RouterPort:
    """A datagram endpoint connected to a router's port (the kernel drops datagrams from
    elsewhere); `ask` sends one request at a time. `ignored` counts datagrams that were not
    the answer awaited."""

    def __init__(
        self, transport: asyncio.DatagramTransport, inbox: _Inbox, what: str, port: int
    ) -> None:
        self.transport = transport
        self._port = port
        self._inbox = inbox
        self._what = what
        self._lock = asyncio.Lock()
        self.ignored = 0

    @classmethod
    async def open(cls, gateway: str, port: int, *, what: str, max_datagram: int) -> RouterPort:
        loop = asyncio.get_running_loop()
        try:
            transport, inbox = await loop.create_datagram_endpoint(
                lambda: _Inbox(max_datagram), remote_addr=(gateway, port)
            )
        except OSError as exc:
            why = exc.strerror or "error"
            raise unavailable(f"{what}: cannot reach {gateway}: {why}") from None
        return cls(transport, inbox, what, port)

    async def ask(
        self,
        request: bytes,
        match: Callable[[bytes], T | ReachError | None],
        *,
        tries: int,
        first_wait_s: float,
        jitter: float = 0.0,
        silent: Callable[[str], ReachError] = unavailable,
    ) -> T:
        """Send REQUEST up to TRIES times, waiting FIRST_WAIT_S then doubling (each wait times
        1 +- JITTER); the first datagram MATCH accepts. SILENT makes the error of a router that
        never answers (or does not listen on the port)."""
        wait = first_wait_s
        last: ReachError | None = None
        loop = asyncio.get_running_loop()
        queue = self._inbox.queue
        async with self._lock:
            while not queue.empty():  # late answers to an earlier request
                queue.get_nowait()
            for _ in range(tries):
                self.transport.sendto(request)
                deadline = loop.time() + wait * (1 + _RANDOM.uniform(-jitter, jitter))
                while (left := deadline - loop.time()) > 0:
                    try:
                        item = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                    if isinstance(item, OSError):
                        why = f"{self._what}: the router does not listen on port {self._port}"
                        raise silent(why)
                    got = match(item)
                    if got is None or isinstance(got, ReachError):
                        last = got if got is not None else last
                        self.ignored += 1
                        continue
                    return got
                wait *= 2
        raise last or silent(f"{self._what}: no answer after {tries} tries")

    def close(self) -> None:
        self.transport.close()
