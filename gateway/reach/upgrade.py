"""Direct upgrade of a relayed session (docs/reach.md, "Direct upgrade").

A peer connected through a relay asks the gateway, in sealed `punch` requests over that very
session, to punch a direct TCP path (gateway/reach/punch.py: connect, connect, sync); both ends
learn their mapping from the relay's observe endpoint. On success each end wraps the socket in
a `StreamLink` (gateway/reach/link.py): the gateway serves it as one more P2P connection, the
peer moves its `PeerConnection` onto it (`adopt`: requests and streams follow). On failure the
relayed path simply goes on. The sealed messages are the same on every path, so a relay or a
punched link can delay or drop them, never read, forge or replay them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from gateway.codes import Code
from gateway.errors import ReachError, StreembitError
from gateway.reach.link import Link, open_stream_link
from gateway.reach.observe import Address, format_addr
from gateway.reach.portmap import PortMapper
from gateway.reach.punch import Exchange, PunchResponder, PunchResult, PunchTiming, punch
from gateway.reach.spray import SprayRole
from gateway.requests import Outcome
from gateway.tasks import TaskOwner
from gateway.text import clean

if TYPE_CHECKING:  # the gateway side never imports the peer client
    from gateway.peer.connection import PeerConnection

__all__ = ["MAX_PUNCHES", "UpgradeResponder", "observer_of", "upgrade"]

log = logging.getLogger(__name__)

MAX_PUNCHES: Final = 8  # punches in progress at once: each holds a port and dials for seconds
PUNCH_TTL_S: Final = 30.0  # a responder whose sync never came is forgotten after this long
SPRAY_INTERVAL_S: Final = 600.0  # a peer may make the gateway spray (hundreds of SYNs) ...
SPRAYS_PER_INTERVAL: Final = 6  # ... this often in that time: three upgrades, both roles each
SPRAYED_MAX: Final = 256  # senders remembered for that (the oldest is forgotten)
SPRAY_ORDER: Final[tuple[SprayRole, ...]] = ("S", "E")  # a phone's carrier NAT is the usual S
MAP_TIMEOUT_S: Final = 7.0  # PCP or NAT-PMP (2 s: port 5351 once) then UPnP-IGD (4 s), + margin


def free_tcp_port() -> int:
    """A TCP port free on every address now (the punch binds it again with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104
        port: int = sock.getsockname()[1]
        return port


Serve = Callable[[Link, str], Awaitable[None]]
Observers = Callable[[], Sequence[Address]]


def observer_of(url: str) -> Address | None:
    """The observe endpoint (relay host, port) behind a relayed URL; None if it names no IP
    literal and port (the observer is dialed from a fresh socket, without name lookups)."""
    parts = urlsplit(url)
    try:
        host = str(ipaddress.ip_address(parts.hostname or ""))
        port = parts.port
    except ValueError:
        return None
    return (host, port) if port else None


class UpgradeResponder:
    """The gateway's `P2PContext.punch` hook: one `PunchResponder` per session, at most
    `MAX_PUNCHES` at once; a punched link is handed to SERVE (`P2PBinding.serve_link`)."""

    def __init__(
        self, serve: Serve, observers: Observers, *, timing: PunchTiming | None = None
    ) -> None:
        self._serve = serve
        self._observers = observers
        self._timing = timing or PunchTiming()
        self._by_session: dict[str, tuple[PunchResponder, float]] = {}
        #: sessions spraying now -> sprays in flight (one session at a time; its next spray,
        #: in the other role, may start while the last one's dial is still ending)
        self._spraying: Counter[str] = Counter()
        self._sprayed: dict[str, list[float]] = {}  # sender -> loop times of its last sprays
        self._tasks = TaskOwner("direct upgrades", logger=log)
        self.punched = 0
        self.failed = 0

    async def __call__(self, label: str, sender: str, step: dict[str, Any]) -> Outcome:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for key, (old, since) in list(self._by_session.items()):
            if now - since > PUNCH_TTL_S:
                old.close()
                del self._by_session[key]
                self._spraying.pop(key, None)
        entry = self._by_session.get(label)
        if entry is None and step.get("spray") is not None:
            refusal = self._may_spray(sender, label, now)
            if refusal is not None:
                return refusal
            self._spraying[label] += 1
            self._sprayed.setdefault(sender, []).append(now)
        if entry is None:
            if len(self._by_session) >= MAX_PUNCHES:
                return Outcome(Code.RATE_LIMITED, reason="too many direct upgrades at once")
            observers = list(self._observers())
            if not observers:
                return Outcome(Code.PUNCH_FAILED, reason="no observer (no relay) known")
            entry = (PunchResponder(observers[0], timing=self._timing), now)
            self._by_session[label] = entry
        responder = entry[0]
        try:
            answer = await responder.handle(step)
        except ReachError as exc:
            self._by_session.pop(label, None)
            self._sprayed_one(label)
            responder.close()
            self.failed += 1
            return Outcome(exc.code, reason=str(exc))
        if step.get("type") == "sync":
            self._by_session.pop(label, None)
            self._tasks.spawn(self._finish(responder, sender, label), name=f"punch-{label}")
        return Outcome(Code.OK, output=answer)

    def _sprayed_one(self, label: str) -> None:
        if self._spraying[label] <= 1:
            self._spraying.pop(label, None)
        else:
            self._spraying[label] -= 1

    def _may_spray(self, sender: str, label: str, now: float) -> Outcome | None:
        """A spray opens hundreds of sockets and sends as many SYNs: one at a time, and
        SPRAYS_PER_INTERVAL per sender every SPRAY_INTERVAL_S."""
        if set(self._spraying) - {label}:
            return Outcome(Code.RATE_LIMITED, reason="another spray is in progress")
        recent = [t for t in self._sprayed.get(sender, []) if now - t < SPRAY_INTERVAL_S]
        self._sprayed[sender] = recent
        if len(recent) >= SPRAYS_PER_INTERVAL:
            reason = f"{SPRAYS_PER_INTERVAL} sprays per peer in {SPRAY_INTERVAL_S:g} s"
            return Outcome(Code.RATE_LIMITED, reason=reason)
        if len(self._sprayed) > SPRAYED_MAX:
            oldest = min(self._sprayed, key=lambda k: max(self._sprayed[k], default=0.0))
            del self._sprayed[oldest]
        return None

    async def _finish(self, responder: PunchResponder, sender: str, label: str) -> None:
        try:
            result = await responder.result()
            link = await open_stream_link(result.sock)
        except StreembitError as exc:
            self.failed += 1
            log.info("direct link for %s… failed: %s", clean(sender, 12), clean(str(exc), 160))
            return
        finally:
            self._sprayed_one(label)
        self.punched += 1
        log.info("direct link for %s… from %s", clean(sender, 12), format_addr(result.peer))
        await self._serve(link, result.peer[0])

    async def close(self) -> None:
        for responder, _ in self._by_session.values():
            responder.close()
        self._by_session.clear()
        await self._tasks.close()

    def status(self) -> dict[str, int]:
        return {"punched": self.punched, "failed": self.failed, "pending": len(self._by_session)}


async def _map(mapper: PortMapper, port: int) -> Address | None:
    """The external address MAPPER's router forwards to PORT, or None (no mapping method)."""
    try:
        async with asyncio.timeout(MAP_TIMEOUT_S):
            made = await mapper.start([("tcp", port)])
    except (TimeoutError, StreembitError, OSError) as exc:
        log.info("no port mapping for a direct link: %s", clean(str(exc), 200))
        return None
    return (made[0].external_ip, made[0].external_port)


async def upgrade(
    conn: PeerConnection,
    *,
    timing: PunchTiming | None = None,
    mapper: Callable[[], PortMapper] | None = PortMapper,
) -> bool:
    """Try to move a relayed CONN onto a punched direct link; True if it moved. Never raises a
    reachability error: the relayed path goes on working (the reason is logged).

    A plain punch first. If it fails, MAPPER (None: never) asks this peer's router for a port
    mapping and a second punch runs from the mapped port with the mapped address named first,
    so a gateway behind a symmetric NAT (which no plain punch reaches from a port-restricted NAT)
    simply dials it; without a mapping the plain punch is tried once more. The mapping is
    removed at the end (an open connection stays in the router's connection table). Last, a
    spray in each role (symmetric NAT against a stable one; gateway/reach/spray.py)."""
    if conn.path != "relayed" or conn.closed:
        return False
    observer = observer_of(conn.url)
    if observer is None:
        return False

    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        reply = await conn.request("punch", input=msg)
        out = reply.output
        if not isinstance(out, dict):
            why = "the gateway answered a punch step without an object"
            raise ReachError(why, code=Code.PUNCH_FAILED)
        return out

    try:
        result = await punch("initiator", exchange, observer, timing=timing)
    except (StreembitError, OSError) as exc:
        log.info("no direct link to the gateway: %s", clean(str(exc), 200))
        if conn.closed:
            return False
        ports = mapper() if mapper is not None else None
        try:
            again = await _second_punch(exchange, observer, timing, ports)
        finally:
            if ports is not None:
                await ports.stop()
        if again is None and not conn.closed:
            again = await _spray(exchange, observer, timing)
        return again is not None and await _adopt(conn, again)
    return await _adopt(conn, result)


async def _spray(
    exchange: Exchange, observer: Address, timing: PunchTiming | None
) -> PunchResult | None:
    """Last, a birthday-paradox spray (gateway/reach/spray.py): this peer as the symmetric side,
    then as the stable one (which NAT is which is not known here). None if both failed."""
    for role in SPRAY_ORDER:
        try:
            return await punch("initiator", exchange, observer, timing=timing, spray=role)
        except (StreembitError, OSError) as exc:
            log.info("no direct link by a spray as %s: %s", role, clean(str(exc), 200))
    return None


async def _second_punch(
    exchange: Exchange, observer: Address, timing: PunchTiming | None, ports: PortMapper | None
) -> PunchResult | None:
    """From a port PORTS maps at this peer's router, the mapped address named first; without a
    mapping, the plain punch once more. None if it failed too."""
    port = free_tcp_port()
    mapped = await _map(ports, port) if ports is not None else None
    if mapped is not None:
        log.info("punching again from port %d, mapped at %s", port, format_addr(mapped))
    local = ("0.0.0.0", port if mapped is not None else 0)  # noqa: S104
    also = [mapped] if mapped is not None else []
    try:
        return await punch("initiator", exchange, observer, local=local, timing=timing, also=also)
    except (StreembitError, OSError) as exc:
        log.info("no direct link on the second try either: %s", clean(str(exc), 200))
        return None


async def _adopt(conn: PeerConnection, result: PunchResult) -> bool:
    try:
        link = await open_stream_link(result.sock)
    except (StreembitError, OSError) as exc:
        log.info("no direct link to the gateway: %s", clean(str(exc), 200))
        return False
    try:
        await conn.adopt(link, "punched", f"tcp://{format_addr(result.peer)}")
    except StreembitError:
        return False
    return True
