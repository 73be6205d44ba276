"""`PortMapper`: asks the home router to forward ports (PCP, then NAT-PMP, then UPnP-IGD), keeps
the leases renewed, reports changes, and removes the mappings at stop (docs/reach.md, "Port
mapping").

    mapper = PortMapper()
    mappings = await mapper.start([("tcp", 4242), ("udp", 4242)])   # or ReachError
    mapper.on_change.append(lambda event: republish())
    ...
    await mapper.stop()
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Mapping as Map
from typing import Any, Final, Literal

from device_drivers.backoff import Backoff
from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.portmap.model import (
    PROTOS,
    Backend,
    EventKind,
    Mapping,
    NoAnswer,
    PortmapEvent,
    Proto,
    check_port,
    check_public,
    unavailable,
)
from gateway.reach.portmap.route import default_gateway
from gateway.tasks import TaskOwner, describe
from gateway.text import clean

log = logging.getLogger(__name__)

Method = Literal["auto", "pcp", "natpmp", "upnp"]
BackendFactory = Callable[[str | None], Awaitable[Backend]]
OnChange = Callable[[PortmapEvent], None]

ORDER: Final[tuple[str, ...]] = ("pcp", "natpmp", "upnp")
# the whole attempt of one method: opening, the external address, every port mapped
TIMEOUTS_S: Final[dict[str, float]] = {
    "pcp": 2.0,  # 3 sends in 1.75 s +-10 % (pcp.PCP_TRIES); a LAN router answers in ms
    "natpmp": 2.0,  # 3 sends in 1.75 s (natpmp.NATPMP_TRIES); a LAN router answers in ms
    "upnp": 4.0,  # the SSDP window (1.5 s), the descriptions, then 1-2 SOAP calls per port
}
STOP_TIMEOUT_S: Final = 3.0  # removing the mappings at shutdown must not hold the exit up
LEASE_S: Final = 3600  # asked for; renewed at half of what is granted (RFC 6886 suggests 7200)
MIN_RENEW_S: Final = 2.0  # a router granting tiny leases is not asked more often than this
RETRY_INITIAL_S: Final = 1.0  # a failed renewal is retried after this, doubling (jittered) ...
RETRY_CAP_S: Final = 60.0  # ... up to this (also the pace of re-mapping after a loss)
MAX_PORTS: Final = 16  # ports one mapper holds
# not tried after the key got no answer at all: the same UDP port (5351) of the same router,
# so a silent router costs one 2 s wait, not two (a NAT-PMP-only router answers PCP at once)
SKIP_AFTER_SILENCE: Final[dict[str, str]] = {"pcp": "natpmp"}
# methods whose mapping answer names the external address (no separate request before)
ADDRESS_IN_ANSWER: Final = frozenset({"pcp"})


async def _open_pcp(gateway: str | None) -> Backend:
    from gateway.reach.portmap.pcp import PcpBackend

    if gateway is None:
        raise unavailable("pcp: no IPv4 default gateway")
    return await PcpBackend.open(gateway)


async def _open_natpmp(gateway: str | None) -> Backend:
    from gateway.reach.portmap.natpmp import NatPmpBackend

    if gateway is None:
        raise unavailable("natpmp: no IPv4 default gateway")
    return await NatPmpBackend.open(gateway)


async def _open_upnp(gateway: str | None) -> Backend:
    from gateway.reach.portmap.upnp import UpnpBackend  # async-upnp-client: only when used

    return await UpnpBackend.open(gateway)


FACTORIES: Final[dict[str, BackendFactory]] = {
    "pcp": _open_pcp,
    "natpmp": _open_natpmp,
    "upnp": _open_upnp,
}


class PortMapper:
    """Port mappings at the default gateway; see the module docstring. METHOD forces one method
    ("auto": those of ORDER that FACTORIES has: PCP, NAT-PMP, then UPnP-IGD); GATEWAY overrides
    the default route's; FACTORIES lets tests put fake routers in place."""

    def __init__(
        self,
        *,
        method: Method = "auto",
        gateway: str | None = None,
        lease_s: int = LEASE_S,
        factories: Map[str, BackendFactory] | None = None,
    ) -> None:
        if method not in ("auto", *ORDER):
            raise ValueError(f"method {method!r}: auto, {', '.join(ORDER)}")
        if not 1 <= lease_s <= 7 * 24 * 3600:
            raise ValueError("lease_s: 1 s to a week")
        self._factories = dict(FACTORIES if factories is None else factories)
        self.order: tuple[str, ...] = (
            tuple(m for m in ORDER if m in self._factories) if method == "auto" else (method,)
        )
        self.lease_s = lease_s
        self.on_change: list[OnChange] = []
        self.renewals = 0
        self.failures = 0
        self.last_error: str | None = None
        self._gateway = gateway
        self._tasks = TaskOwner("portmap")
        self._backend: Backend | None = None
        self._method: str | None = None
        self._mappings: list[Mapping] = []
        self._state = "idle"  # idle, mapped, lost, stopped
        self._due = 0.0  # loop time of the next renewal
        self._valid_until = 0.0  # loop time the first lease runs out

    # -- starting ---------------------------------------------------------------------------
    async def start(self, ports: Sequence[tuple[str, int]]) -> list[Mapping]:
        """Map each (proto, internal port); the external (ip, port) of each, in that order.
        ReachError PORTMAP_UNAVAILABLE (no method answered) or PORTMAP_REFUSED (a router
        answered but refused); the message has one reason per method tried."""
        if self._state in ("mapped", "lost"):
            raise RuntimeError("the port mapper is already started")
        wanted = _wanted(ports)
        if self._gateway is None:
            self._gateway = await default_gateway()
        started = time.monotonic()
        try:
            await self._establish_first(wanted)
        except ReachError as exc:
            log.info("no port mapping: %s", exc)
            raise
        took = time.monotonic() - started
        log.info("port mapping by %s: %s (%.2f s)", self._method, self._describe(), took)
        self._tasks.keep_running(self._maintain, name="portmap-renew", backoff=Backoff())
        return list(self._mappings)

    async def _establish_first(self, wanted: list[tuple[Proto, int]]) -> None:
        """The first method of the order that maps WANTED; else ReachError PORTMAP_REFUSED (a
        router answered but refused) or PORTMAP_UNAVAILABLE, one reason per method."""
        reasons: list[str] = []
        refused_by_router = False
        skip: dict[str, str] = {}
        for method in self.order:
            if method in skip:
                reasons.append(f"{method}: not tried ({skip[method]} got no answer on its port)")
                continue
            try:
                await self._establish(method, wanted)
                return
            except ReachError as exc:
                reasons.append(clean(str(exc), 200))
                refused_by_router |= exc.code == Code.PORTMAP_REFUSED
                if isinstance(exc, NoAnswer) and method in SKIP_AFTER_SILENCE:
                    skip[SKIP_AFTER_SILENCE[method]] = method
        code = Code.PORTMAP_REFUSED if refused_by_router else Code.PORTMAP_UNAVAILABLE
        raise ReachError("; ".join(reasons) or "no mapping method", code=code)

    async def _establish(self, method: str, wanted: list[tuple[Proto, int]]) -> None:
        """Open METHOD's backend and map WANTED, all within its timeout; on failure nothing
        stays mapped (best effort, bounded) and the backend is closed."""
        timeout = TIMEOUTS_S.get(method, max(TIMEOUTS_S.values()))
        backend: Backend | None = None
        made: list[Mapping] = []
        try:
            async with asyncio.timeout(timeout):
                backend = await self._factories[method](self._gateway)
                await self._map_all(backend, [(p, i, i) for p, i in wanted], made)
        except BaseException as exc:
            if backend is not None:
                await _release(backend, made)
            if isinstance(exc, TimeoutError):
                raise NoAnswer(f"{method}: no answer within {timeout:g} s") from None
            if isinstance(exc, OSError):
                raise unavailable(f"{method}: {describe(exc)}") from None
            raise
        self._adopt(backend, made)

    async def _map_all(
        self, backend: Backend, ports: list[tuple[Proto, int, int]], made: list[Mapping]
    ) -> None:
        """Map PORTS, appending each mapping to MADE as soon as it exists (so that a failure
        midway leaves the caller what to remove). The external address is asked for first, or
        (ADDRESS_IN_ANSWER) comes with each mapping; either way it must be public."""
        method = backend.method
        ip: str | None = None
        if method not in ADDRESS_IN_ANSWER:
            ip = check_public(await backend.external_address(), method)
        now = time.time()
        for proto, internal, external in ports:
            granted = await backend.map(proto, internal, external, self.lease_s)
            expires = now + granted.lifetime_s if granted.lifetime_s else math.inf
            mapping = Mapping(
                proto,
                internal,
                granted.external_ip or ip or "",
                granted.external_port,
                granted.lifetime_s,
                expires,
                method,
            )
            made.append(mapping)
            check_public(mapping.external_ip, method)

    def _adopt(self, backend: Backend, made: list[Mapping]) -> None:
        loop = asyncio.get_running_loop()
        self._backend, self._method, self._mappings = backend, backend.method, made
        self._state = "mapped"
        lease = min((m.lifetime_s for m in made if m.lifetime_s), default=self.lease_s)
        self._valid_until = loop.time() + lease
        self._due = loop.time() + max(MIN_RENEW_S, lease / 2)

    # -- keeping the leases -------------------------------------------------------------------
    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(initial_s=RETRY_INITIAL_S, cap_s=RETRY_CAP_S)
        while True:
            await asyncio.sleep(max(0.0, self._due - loop.time()))
            try:
                await self._renew()
            except ReachError as exc:
                self.failures += 1
                self.last_error = clean(str(exc), 200)
                log.warning("port mapping renewal failed: %s", self.last_error)
                now = loop.time()
                if self._state == "mapped" and now >= self._valid_until:
                    await self._lose()
                self._due = now + backoff.next()
                if self._state == "mapped":  # try once more right when the lease runs out
                    self._due = min(self._due, self._valid_until)
                continue
            backoff.reset()

    async def _renew(self) -> None:
        """Renew every mapping (re-opening a backend after a loss); emit changed/restored."""
        old, was_lost = list(self._mappings), self._state == "lost"
        if self._backend is None:
            await self._establish_first([(m.proto, m.internal_port) for m in old])
        else:
            backend = self._backend
            made: list[Mapping] = []
            try:
                async with asyncio.timeout(TIMEOUTS_S.get(backend.method, STOP_TIMEOUT_S)):
                    await self._map_all(
                        backend, [(m.proto, m.internal_port, m.external_port) for m in old], made
                    )
            except TimeoutError:
                raise unavailable(f"{backend.method}: no answer to the renewal") from None
            except OSError as exc:
                raise unavailable(f"{backend.method}: {describe(exc)}") from None
            self._adopt(backend, made)
        self.renewals += 1
        if was_lost:
            self._emit("restored", "mapped again")
        elif [m.external for m in old] != [m.external for m in self._mappings]:
            self._emit("changed", "the external address or a port changed")

    async def _lose(self) -> None:
        self._state = "lost"
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()
        self._emit("lost", self.last_error or "the lease ran out")

    def _emit(self, kind: EventKind, reason: str) -> None:
        event = PortmapEvent(kind, tuple(self._mappings), reason)
        log.info("port mapping %s: %s (%s)", kind, self._describe(), reason)
        for callback in list(self.on_change):
            try:
                callback(event)
            except Exception:  # one broken listener must not stop the renewals
                log.exception("port mapping: an on_change callback failed")

    # -- stopping and ops --------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop renewing and remove the mappings (bounded: STOP_TIMEOUT_S). Never raises."""
        await self._tasks.close()
        backend, made = self._backend, self._mappings
        self._backend, self._state = None, "stopped"
        if backend is not None:
            await _release(backend, made)

    def status(self) -> dict[str, Any]:
        """For ops pages: method, state, external addresses, leases (seconds left)."""
        now = time.time()
        maps = []
        for m in self._mappings:
            row = m.as_dict()
            row["expires_in_s"] = (
                None if math.isinf(m.expires_at) else round(max(0.0, m.expires_at - now), 1)
            )
            maps.append(row)
        return {
            "method": self._method,
            "state": self._state,
            "gateway": self._gateway,
            "external_ip": self._mappings[0].external_ip if self._mappings else None,
            "mappings": maps,
            "renewals": self.renewals,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    @property
    def mappings(self) -> list[Mapping]:
        return list(self._mappings)

    def _describe(self) -> str:
        return ", ".join(f"{m.proto}/{m.internal_port} -> {m.external}" for m in self._mappings)


def _wanted(ports: Sequence[tuple[str, int]]) -> list[tuple[Proto, int]]:
    wanted: list[tuple[Proto, int]] = []
    for proto, port in ports:
        lower = proto.lower() if isinstance(proto, str) else ""
        match = next((p for p in PROTOS if p == lower), None)
        if match is None:
            raise ValueError(f"a protocol is tcp or udp, not {proto!r}")
        item = (match, check_port(port))
        if item not in wanted:
            wanted.append(item)
    if not 1 <= len(wanted) <= MAX_PORTS:
        raise ValueError(f"1 to {MAX_PORTS} ports")
    return wanted


async def _release(backend: Backend, made: Sequence[Mapping]) -> None:
    """Remove MADE and close BACKEND within STOP_TIMEOUT_S; failures are logged."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            for m in made:
                try:
                    await backend.unmap(m.proto, m.internal_port, m.external_port)
                except (ReachError, OSError) as exc:
                    log.warning(
                        "port mapping %s/%d not removed: %s",
                        m.proto,
                        m.internal_port,
                        describe(exc),
                    )
    except TimeoutError:
        log.warning("port mappings not all removed within %g s", STOP_TIMEOUT_S)
    finally:
        await backend.close()
