"""How the gateway makes itself reachable (docs/reach.md, "What the gateway does").

At start, after the DHT has joined, `Reach.settle()`:

1. asks several DHT peers to dial back (`DhtNode.check_reachability`): if they reach the P2P
   port, the gateway is **public**: its DHT runs in full mode, it publishes its observed
   address and (unless `relay = false`) serves as a relay for others;
2. otherwise, if the router maps a port (PCP, NAT-PMP, UPnP-IGD), the gateway is **mapped**: it
   publishes the mapped address and renews the lease;
3. otherwise it is **relayed**: the DHT runs in client mode (nobody adds an address that no one
   can reach), and it keeps reservations at `relays` relays found through the DHT, publishing
   their connect URLs. Peers that arrive through a relay may upgrade to a direct hole-punched
   link (gateway/reach/punch.py).

Whatever the outcome, the contact record lists the addresses in the order peers should prefer
them: configured and advertised ones, the observed public or mapped address, then relays.
Every change of those addresses re-publishes the record. The check is repeated every
`RECHECK_S`, and at once when a mapping or all relays are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from gateway.bindings.p2p import P2PBinding
from gateway.config.model import P2pConfig, url_host
from gateway.errors import P2PError
from gateway.identity import KeyPair
from gateway.p2p import DhtNode
from gateway.reach.link import WsLink
from gateway.reach.observe import Address
from gateway.reach.portmap import PortMapper
from gateway.reach.relay import RelayReservations, RelayService
from gateway.reach.upgrade import UpgradeResponder, observer_of
from gateway.tasks import TaskOwner
from gateway.text import clean

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S: Final = 15.0  # dial-backs (~1 s), a mapping (<= 6 s) and 2 reservations
FIRST_RESERVATION_S: Final = 6.0  # the ready line waits this long for the relayed addresses
RECHECK_S: Final = 600.0  # routers reboot, leases and public addresses change


@dataclass
class ReachState:
    """What ops shows: `mode` is public, mapped, relayed or local (no DHT peers to ask)."""

    mode: str = "local"
    observed: str | None = None  # ip:port the DHT peers see
    mapped: str | None = None  # the router's external ip:port for the P2P port
    method: str | None = None  # pcp, natpmp or upnp
    relays: list[str] = field(default_factory=list)  # relayed connect URLs
    confirmations: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "observed": self.observed,
            "mapped": self.mapped,
            "method": self.method,
            "relays": list(self.relays),
            "confirmations": self.confirmations,
            "error": self.error,
        }


Republish = Callable[[], Awaitable[object]]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Reach:
    """Owns the gateway's reachability: the dial-back check, the port mapper, the relay
    reservations and relay service, and the direct-upgrade responder (module docstring)."""

    def __init__(
        self,
        *,
        identity: KeyPair,
        binding: P2PBinding,
        dht: DhtNode,
        config: P2pConfig,
        republish: Republish,
        relay: RelayService,
    ) -> None:
        self.identity = identity
        self.binding = binding
        self.dht = dht
        self.config = config
        self.relay = relay
        self.state = ReachState()
        self._republish = republish
        self._mapper: PortMapper | None = None
        self._reservations: RelayReservations | None = None
        self.upgrades = UpgradeResponder(binding.serve_link, self._observers)
        binding.ctx.punch = self.upgrades
        self._tasks = TaskOwner("reach", logger=log)
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()

    # ------------------------------------------------------------------ public
    @property
    def addrs(self) -> list[str]:
        """Addresses reach adds to the contact record, most preferred first."""
        out: list[str] = []
        path = self.binding.path
        if self.state.mode == "public" and self.state.observed:
            out.append(f"ws://{url_host(self.state.observed.rsplit(':', 1)[0])}:"
                       f"{self.binding.bound_port}{path}")  # fmt: skip
        if self.state.mapped:
            host, port = self.state.mapped.rsplit(":", 1)
            out.append(f"ws://{url_host(host)}:{port}{path}")
        out += self.state.relays
        return out

    async def start(self) -> None:
        """Settle how peers reach us (bounded by SETTLE_TIMEOUT_S), then keep it up to date."""
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT_S):
                await self._settle()
        except TimeoutError:
            self.state.error = f"reachability not settled within {SETTLE_TIMEOUT_S:g} s"
            log.warning("%s", self.state.error)
        self._tasks.keep_running(self._upkeep, name="reach-upkeep")

    async def stop(self) -> None:
        await self._tasks.close()
        await self.upgrades.close()
        self.binding.ctx.punch = None
        if self._reservations is not None:
            await self._reservations.stop()
            self._reservations = None
        if self._mapper is not None:
            await self._mapper.stop()
            self._mapper = None

    def status(self) -> dict[str, Any]:
        out = self.state.as_dict()
        out["dht_client_mode"] = self.dht.client_mode
        out["relay_service"] = self.relay.stats()
        out["reservations"] = None if self._reservations is None else self._reservations.status()
        out["portmap"] = None if self._mapper is None else self._mapper.status()
        out["upgrades"] = self.upgrades.status()
        return out

    # ------------------------------------------------------------------ settling
    async def _settle(self) -> None:
        state = self.state
        if _loopback(self.binding.host):
            state.mode, state.error = "local", "the P2P listener is on a loopback address"
            return
        if self.dht.routing_size() == 0:
            state.mode, state.error = "local", "no DHT peers to ask (first node)"
            return
        port = self.binding.bound_port
        try:
            found = await self.dht.check_reachability(tcp_port=port)
        except P2PError as exc:
            state.error = clean(str(exc), 200)
            found = None
        if found is not None:
            state.confirmations = found.confirmations
            if found.observed is not None:
                state.observed = f"{found.observed[0]}:{found.observed[1]}"
        if found is not None and found.tcp_reachable:
            await self._be_public(found.udp_reachable)
            return
        self.dht.set_client_mode(found is None or not found.udp_reachable)
        self.relay.enabled = False
        self.dht.services = {}
        if self.config.portmap and await self._map(port):
            return
        await self._be_relayed()

    async def _be_public(self, udp_reachable: bool) -> None:
        state = self.state
        state.mode, state.error = "public", None
        self.dht.set_client_mode(not udp_reachable)
        if self.config.relay and state.observed:
            host = state.observed.rsplit(":", 1)[0]
            self.relay.enabled = True
            try:
                self.dht.services = {"relay": f"http://{url_host(host)}:{self.binding.bound_port}"}
            except P2PError as exc:
                log.warning("not advertising the relay: %s", clean(str(exc), 200))
        await self._drop_reservations()

    async def _map(self, port: int) -> bool:
        mapper = PortMapper()
        try:
            made = await mapper.start([("tcp", port)])
        except P2PError as exc:
            self.state.error = clean(str(exc), 200)
            await mapper.stop()
            return False
        self._mapper = mapper
        mapper.on_change.append(lambda _event: self._changed.set())
        m = made[0]
        self.state.mode, self.state.mapped, self.state.method = "mapped", m.external, m.method
        self.state.error = None
        await self._drop_reservations()
        return True

    async def _be_relayed(self) -> None:
        self.state.mode = "relayed"
        if self._reservations is None:
            res = RelayReservations(
                self.identity, self._find_relays, self._on_circuit, want=self.config.relays
            )
            res.on_change.append(self._on_relays)
            self._reservations = res
            await res.start()
        if not await self._find_relays():
            self.state.error = "no relay found through the DHT yet"
            return
        try:  # all the wanted reservations if they come in time, else at least one
            async with asyncio.timeout(FIRST_RESERVATION_S):
                while len(self._reservations.addrs) < self.config.relays:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            if not self._reservations.addrs:
                self.state.error = f"no relay reservation within {FIRST_RESERVATION_S:g} s"
        self.state.relays = list(self._reservations.addrs)

    async def _drop_reservations(self) -> None:
        res, self._reservations = self._reservations, None
        if res is not None:
            await res.stop()
        self.state.relays = []

    # ------------------------------------------------------------------ relays
    async def _find_relays(self) -> list[str]:
        return await self.dht.find_services("relay", want=2 * self.config.relays + 2)

    async def _on_circuit(self, ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        await self.binding.serve_link(WsLink(ws), label.rsplit(" from ", 1)[-1].rsplit(":", 1)[0])

    def _on_relays(self) -> None:
        self._changed.set()

    def _observers(self) -> list[Address]:
        found = [observer_of(url) for url in self.state.relays]
        return [a for a in found if a is not None]

    # ------------------------------------------------------------------ upkeep
    async def _upkeep(self) -> None:
        """Republish on every address change; settle again every RECHECK_S or when a
        mapping is lost."""
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + RECHECK_S
        published = self.addrs
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, recheck_at - loop.time())):
                    self._changed.clear()
                    await self._changed.wait()
            lost = self._mapper is not None and self._mapper.status()["state"] == "lost"
            if lost or loop.time() >= recheck_at:
                if self._mapper is not None:
                    await self._mapper.stop()
                    self._mapper = None
                    self.state.mapped = self.state.method = None
                async with asyncio.timeout(SETTLE_TIMEOUT_S):
                    await self._settle()
                recheck_at = loop.time() + RECHECK_S
            if self._reservations is not None:
                self.state.relays = list(self._reservations.addrs)
            if self.addrs != published:
                published = self.addrs
                log.info("reachable as %s: %s", self.state.mode, ", ".join(published) or "-")
                await self._republish()
