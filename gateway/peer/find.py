"""Find a gateway by its id alone: a DHT lookup of its signed contact record, then connect.

The record is verified by the DHT layer (signature by the key whose id it is filed under, expiry,
highest sequence number), so the gateway's public key comes from the record itself: nobody can
answer for a gateway without its private key.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from device_drivers.backoff import Backoff
from gateway.errors import P2PError
from gateway.identity import PublicIdentity, public_from_jwk
from gateway.p2p import DhtNode, Record
from gateway.peer.client import PeerClient, PeerConnection
from gateway.peer.errors import PeerConnectionError

Address = tuple[str, int]

# Joins a peer command tries before it reports the network unreachable (a lost datagram or a
# seed busy for a moment should not fail the command).
JOIN_ATTEMPTS = 3
# Waits between those joins: jittered, doubling from 0.25 s up to 1 s (device_drivers/backoff).
JOIN_RETRY_FIRST_S = 0.25
JOIN_RETRY_CAP_S = 1.0


@dataclass(frozen=True)
class Contact:
    record: Record
    identity: PublicIdentity

    @property
    def addrs(self) -> tuple[str, ...]:
        return self.record.addrs


async def find_contact(dht: DhtNode, gateway_id: str) -> Contact:
    """The verified contact record of GATEWAY_ID; P2PError(code "not_found") if none."""
    rec = await dht.get(gateway_id)
    if rec is None:
        raise P2PError(f"no contact record for {gateway_id} in the DHT", code="not_found")
    return contact_of(rec, gateway_id)


def contact_of(rec: Record, gateway_id: str) -> Contact:
    """The contact of a verified record REC of GATEWAY_ID (from the DHT or the cache)."""
    ident = public_from_jwk(dict(rec.jwk))
    if ident.id != gateway_id:  # verify_record already checks this; never trust one layer alone
        raise P2PError("contact record signed by another key", code="record_wrong_key")
    return Contact(rec, ident)


async def connect(
    client: PeerClient, contact: Contact, *, timeout_s: float | None = None
) -> PeerConnection:
    """Connect to the first address of the contact that answers (each within TIMEOUT_S;
    None: the client's CONNECT_TIMEOUT_S)."""
    errors: list[str] = []
    for url in contact.addrs:
        try:
            return await client.connect(url, contact.identity, timeout_s=timeout_s)
        except PeerConnectionError as exc:
            errors.append(f"{url}: {exc}")
    raise PeerConnectionError(
        f"no address of {contact.identity.id} answered: {'; '.join(errors) or 'none published'}"
    )


def source_address(bootstrap: Sequence[Address]) -> str:
    """The local address this machine's routes toward BOOTSTRAP leave from, to bind the peer's
    DHT node to: reachable by the nodes it queries, and listening nowhere else.

    Connecting a UDP socket only looks the route up; it sends nothing. When the routes leave from
    different addresses (say a loopback seed and a LAN one), or no route is known, the answer is
    the wildcard address of their family."""
    found: set[str] = set()
    families: set[int] = set()
    for host, port in bootstrap:
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            families.add(family)
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(sockaddr)
                found.add(str(s.getsockname()[0]))
        except OSError:  # unresolvable name or no route: the query reports it more clearly
            found.add("")
    if len(found) == 1 and "" not in found:
        return found.pop()
    return "::" if families == {socket.AF_INET6} else "0.0.0.0"  # noqa: S104 (see docstring)


@contextlib.asynccontextmanager
async def ephemeral_dht(
    bootstrap: Sequence[Address], host: str | None = None
) -> AsyncIterator[DhtNode]:
    """A short-lived DHT node for a peer command: joins through BOOTSTRAP, stops afterwards.

    HOST is the address its UDP socket binds to; None: the source address of the route toward
    the bootstrap nodes (`source_address`), so nodes on other hosts can answer it."""
    if not bootstrap:
        raise P2PError(
            "a bootstrap node is needed to reach the network (--bootstrap HOST:PORT)",
            code="no_bootstrap",
        )
    if host is None:
        host = await asyncio.to_thread(source_address, bootstrap)
    node = DhtNode(host, 0, bootstrap=bootstrap)
    try:
        try:
            await node.start()
        except OSError as exc:
            raise P2PError(
                f"cannot open a DHT socket on {host} ({exc.strerror or exc}); --host ADDR "
                "chooses the local address",
                code="bind_failed",
            ) from None
        retry = Backoff(initial_s=JOIN_RETRY_FIRST_S, cap_s=JOIN_RETRY_CAP_S)
        for _attempt in range(JOIN_ATTEMPTS - 1):
            if node.routing_size() > 0:
                break
            await asyncio.sleep(retry.next())
            await node.bootstrap(bootstrap)
        if node.routing_size() == 0:
            raise P2PError(
                f"no DHT node answered at {', '.join(f'{h}:{p}' for h, p in bootstrap)} "
                f"(from {host})",
                code="unreachable",
            )
        yield node
    finally:
        await node.stop()
