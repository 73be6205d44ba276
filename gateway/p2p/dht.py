"""The validating DHT node: signed records, honest counts, republish, owned maintenance.

`DhtNode` is the typed API the gateway and the peer client use::

    node = DhtNode("127.0.0.1", 0, bootstrap=[("127.0.0.1", 4000)])
    await node.start()
    record, stored = await node.publish_contact(kp, addrs=["ws://..."], td_digest=td)
    found = await node.get(some_id)        # a verified Record (highest seq) or None
    await node.stop()

Only records signed by the key whose id is the DHT key are stored, served or returned; a higher
sequence number replaces a lower one; `publish` counts the nodes that really stored the record.
The node runs two owned background tasks, both cancelled by `stop()`: the republisher (the
owner re-stores its records every `republish_interval` and re-signs contact records at half
their lifetime, so they never expire while the owner runs) and the maintainer (bootstrap retry
with capped jittered backoff, bucket refresh, hourly re-replication of held records).

Reachability (wire version 2, `gateway.p2p.reach`): `check_reachability` learns the observed
address and whether peers can dial back; a node that is not reachable runs in client mode
(`client_mode=True` or `set_client_mode`): it asks, and peers never add it to their routing
tables. `services` are advertised to `info` requests; `find_services` collects other nodes'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from device_drivers.backoff import Backoff
from gateway.errors import P2PError
from gateway.identity import KeyPair
from gateway.p2p.crawl import find_nodes
from gateway.p2p.node import ID_BITS, ID_LEN, Address
from gateway.p2p.protocol import ValidatingProtocol
from gateway.p2p.reach import DEFAULT_ASKED, Reachability, check_reachability, find_services
from gateway.p2p.reachwire import validate_services
from gateway.p2p.records import (
    DEFAULT_TTL,
    Record,
    make_contact_record,
    verify_record,
    verify_unbound,
)
from gateway.p2p.server import ValidatingServer
from gateway.p2p.settings import DhtSettings
from gateway.p2p.storage import RecordStorage
from gateway.tasks import TaskOwner

__all__ = ["DhtNode", "Reachability"]

log = logging.getLogger(__name__)


@dataclass
class _Owned:
    """A record this node publishes and keeps alive."""

    record: Record
    signer: KeyPair | None
    ttl: int
    last_stored: float  # monotonic
    last_count: int = 0


class DhtNode:
    """A validating DHT node on one UDP socket (127.0.0.1 unless told otherwise)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bootstrap: Iterable[Address] = (),
        rpc_timeout: float = 1.0,
        ksize: int = 20,
        alpha: int = 3,
        get_quorum: int = 2,
        republish_interval: float = 600.0,
        refresh_interval: float = 3600.0,
        bootstrap_retry: float = 10.0,
        node_id: bytes | None = None,
        settings: DhtSettings | None = None,
        client_mode: bool = False,
    ) -> None:
        """`settings`, when given, replaces the individual settings arguments. `client_mode`:
        query the DHT without being added to other nodes' routing tables (an unreachable
        node, a short-lived peer command)."""
        self.host = host
        self._requested_port = port
        self.bootstrap_addrs: list[Address] = [(str(h), int(p)) for h, p in bootstrap]
        self.settings = settings or DhtSettings(
            ksize=ksize,
            alpha=alpha,
            rpc_timeout=rpc_timeout,
            get_quorum=get_quorum,
            republish_interval=republish_interval,
            refresh_interval=refresh_interval,
            bootstrap_retry=bootstrap_retry,
        )
        self._server = ValidatingServer(self.settings, node_id)
        self._owned: dict[str, _Owned] = {}
        self._tasks = TaskOwner("dht", logger=log)
        self._wake = asyncio.Event()
        self._port: int | None = None
        self._client_mode = client_mode
        self._services: dict[str, str] = {}
        self.republished = 0  # republish stores done (metrics, tests)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise P2PError("the DHT node is not started", code="not_started")
        return self._port

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    @property
    def node_id(self) -> bytes:
        return self._server.node.id

    @property
    def protocol(self) -> ValidatingProtocol:
        return self._server.proto

    @property
    def storage(self) -> RecordStorage:
        return self._server.records

    @property
    def server(self) -> ValidatingServer:
        return self._server

    @property
    def running(self) -> bool:
        return self._port is not None

    async def start(self) -> None:
        """Listen, bootstrap (if contacts were given) and start the background tasks."""
        if self._port is not None:
            return
        self._port = await self._server.listen(self._requested_port, interface=self.host)
        self.protocol.client_mode = self._client_mode
        self.protocol.reach.services = dict(self._services)
        self._tasks.owner = f"dht {self._port}"
        self._tasks.spawn(self.protocol.run_handover(), name=f"dht-handover:{self._port}")
        if self.bootstrap_addrs:
            try:
                await self.bootstrap(self.bootstrap_addrs)
            except BaseException:
                await self.stop()
                raise
        self._tasks.keep_running(self._republish_loop, name=f"dht-republish:{self._port}")
        self._tasks.keep_running(self._maintain_loop, name=f"dht-maintain:{self._port}")

    async def stop(self) -> None:
        """Cancel the background tasks, fail outstanding RPCs and close the socket."""
        await self._tasks.close()  # raises CancelledError only if stop() itself is cancelled
        self._server.stop()
        self._port = None

    async def __aenter__(self) -> DhtNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def bootstrap(self, addrs: Sequence[Address]) -> int:
        """Join through `addrs`; returns the routing table size afterwards."""
        await self._server.bootstrap(addrs)
        return self.routing_size()

    # -- reachability ---------------------------------------------------------------------------

    @property
    def client_mode(self) -> bool:
        return self._client_mode

    def set_client_mode(self, client: bool) -> None:
        """Switch between client mode (ask only; peers do not add this node to their routing
        tables, and drop it if they had it) and full mode, e.g. after `check_reachability`."""
        self._client_mode = client
        if self._server.protocol is not None:
            self._server.protocol.client_mode = client

    @property
    def services(self) -> dict[str, str]:
        """Services advertised to `info` requests (a copy: assign a new dict to change them)."""
        return dict(self._services)

    @services.setter
    def services(self, services: dict[str, str]) -> None:
        """At most 8, each name [a-z0-9_-] (1-32) and an http(s)/ws(s) URL (at most 256
        characters) whose host is this node's public IP literal; `ReachError` if not."""
        self._services = validate_services(services)
        if self._server.protocol is not None:
            self._server.protocol.reach.services = dict(self._services)

    async def check_reachability(
        self, tcp_port: int | None = None, *, asked: int = DEFAULT_ASKED
    ) -> Reachability:
        """Ask up to `asked` peers at distinct IPs to dial back (UDP, and TCP to `tcp_port` if
        given); `ReachError` if fewer than 2 answered. See `gateway.p2p.reach`."""
        return await check_reachability(self.protocol, tcp_port, asked=asked)

    async def find_services(self, name: str, want: int = 3) -> list[str]:
        """Up to `want` distinct URLs of service `name` (e.g. "relay") advertised by full-mode
        nodes, each at the address the node answers from."""
        return await find_services(self.protocol, name, want)

    def routing_size(self) -> int:
        """Contacts in the routing table."""
        return self.protocol.router.size() if self._server.protocol is not None else 0

    # -- records --------------------------------------------------------------------------------

    async def publish(self, record: str | bytes, *, keep_alive: bool = True) -> int:
        """Store a signed record on the k closest nodes; returns the nodes that accepted it.

        Raises `P2PError` (with the record's refusal code) for an invalid record. This node
        counts if it is among the k closest and stored it. With `keep_alive` the node re-stores
        the record every `republish_interval` until it expires.
        """
        rec = verify_unbound(record)
        count = await self._server.store_record(rec)
        if keep_alive:
            self._own(rec, None, rec.exp - rec.iat, count)
        return count

    async def publish_contact(
        self,
        kp: KeyPair,
        *,
        addrs: Sequence[str],
        td_digest: str,
        ttl: int = DEFAULT_TTL,
        seq: int | None = None,
    ) -> tuple[Record, int]:
        """Sign and publish this gateway's contact record; it is re-signed before it expires.

        `seq` defaults to the wall clock in milliseconds (and always above the previous one),
        so a restarted publisher supersedes its old record without keeping state.
        """
        prev = self._owned.get(kp.id)
        if seq is None:
            seq = int(time.time() * 1000)
            if prev is not None:
                seq = max(seq, prev.record.seq + 1)
        text = make_contact_record(kp, seq=seq, addrs=list(addrs), td_digest=td_digest, ttl=ttl)
        rec = verify_record(text, key=kp.id)
        count = await self._server.store_record(rec)
        self._own(rec, kp, ttl, count)
        return rec, count

    def withdraw(self, record_id: str) -> bool:
        """Stop republishing a record (it stays in the DHT until it expires)."""
        return self._owned.pop(record_id, None) is not None

    def owned(self) -> list[Record]:
        return [o.record for o in self._owned.values()]

    def _own(self, rec: Record, signer: KeyPair | None, ttl: int, count: int) -> None:
        current = self._owned.get(rec.id)
        if current is not None and current.record.newer_than(rec):
            return
        self._owned[rec.id] = _Owned(rec, signer, ttl, time.monotonic(), count)
        self._wake.set()

    async def get(self, record_id: str) -> Record | None:
        """The verified record with the highest seq under `record_id`, or None."""
        return await self._server.find_record(record_id)

    # -- background tasks -----------------------------------------------------------------------

    def _due_in(self, owned: _Owned, now_mono: float, now_wall: float) -> float:
        due = owned.last_stored + self.settings.republish_interval - now_mono
        if owned.signer is not None:
            renew_at = owned.record.iat + owned.ttl / 2
            due = min(due, renew_at - now_wall)
        return due

    async def _republish_once(self, owned: _Owned) -> None:
        rec = owned.record
        if owned.signer is not None and time.time() >= rec.iat + owned.ttl / 2:
            text = make_contact_record(
                owned.signer,
                seq=max(rec.seq + 1, int(time.time() * 1000)),
                addrs=list(rec.addrs),
                td_digest=rec.td,
                ttl=owned.ttl,
            )
            rec = verify_record(text, key=rec.id)
        count = await self._server.store_record(rec)
        self.republished += 1
        if self._owned.get(rec.id) is owned:
            owned.record, owned.last_stored, owned.last_count = rec, time.monotonic(), count
        log.debug("republished %s seq %d on %d nodes", rec.id, rec.seq, count)

    async def _republish_loop(self) -> None:
        while True:
            now_mono, now_wall = time.monotonic(), time.time()
            for rid, owned in list(self._owned.items()):
                if owned.signer is None and owned.record.exp <= now_wall:
                    del self._owned[rid]  # expired and nobody to re-sign it
            delays = [self._due_in(o, now_mono, now_wall) for o in self._owned.values()]
            due = [o for o, d in zip(list(self._owned.values()), delays, strict=True) if d <= 0]
            for owned in due:
                try:
                    await self._republish_once(owned)
                except P2PError as exc:
                    log.warning("republish of %s failed: %s", owned.record.id, exc)
            if due:
                continue
            self._wake.clear()
            wait = min(delays, default=self.settings.republish_interval)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # races with the event being set, and then stop() would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _lonely(self) -> bool:
        """No contact left (or none yet) while bootstrap contacts are known: join again."""
        return self.routing_size() == 0 and bool(self.bootstrap_addrs)

    async def _maintain_loop(self) -> None:
        s = self.settings
        retry = Backoff(
            initial_s=min(s.bootstrap_retry_min, s.bootstrap_retry), cap_s=s.bootstrap_retry
        )
        last_refresh = time.monotonic()
        while True:
            if self._lonely():
                wait = retry.next()  # jittered: a fleet that lost its seed does not retry in step
            else:
                retry.reset()
                wait = s.bootstrap_retry  # how often a joined node checks it still has contacts
            next_refresh = last_refresh + s.refresh_interval - time.monotonic()
            await asyncio.sleep(max(0.0, min(wait, next_refresh)))
            if self._lonely():
                await self.bootstrap(self.bootstrap_addrs)
            if time.monotonic() - last_refresh >= self.settings.refresh_interval:
                last_refresh = time.monotonic()
                await self._refresh()

    async def _refresh(self) -> None:
        """Refresh lonely buckets and re-replicate records held longer than the interval."""
        router = self.protocol.router
        lonely = [
            b
            for b in router.buckets
            if b.last_updated < time.monotonic() - self.settings.refresh_interval
        ]
        for bucket in lonely:
            low, high = bucket.range
            target = random.randint(low, min(high, 2**ID_BITS - 1)).to_bytes(ID_LEN, "big")
            await find_nodes(self.protocol, target)
        for _dkey, text in self.storage.iter_older_than(self.settings.refresh_interval):
            try:
                await self._server.store_record(text)
            except P2PError as exc:
                log.debug("re-replication skipped: %s", exc)

    def stats(self) -> dict[str, Any]:
        proto = self._server.protocol
        return {
            "routing": self.routing_size(),
            "records": len(self.storage),
            "refused": self.storage.refused,
            "served": proto.served if proto else 0,
            "dropped": proto.dropped if proto else 0,
            "refusals": dict(self.storage.refusals),
            "evicted": self.storage.evicted,
            "handed_over": proto.handed_over if proto else 0,
            "contacts_refused": proto.router.refused if proto else 0,
            "rpc_timeout": proto.timeouts.reply_timeout if proto else None,
            "dialbacks": proto.reach.dialled if proto else 0,
            "dialbacks_refused": proto.reach.refused if proto else 0,
        }
