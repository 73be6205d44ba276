"""Find a gateway by its id alone: a DHT lookup of its signed contact record, then connect.

The record is verified by the DHT layer (signature by the key whose id it is filed under, expiry,
highest sequence number), so the gateway's public key comes from the record itself: nobody can
answer for a gateway without its private key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from device_drivers.backoff import Backoff
from gateway.errors import P2PError
from gateway.identity import PublicIdentity, public_from_jwk
from gateway.p2p.records import Record
from gateway.peer.client import PeerClient, PeerConnection
from gateway.peer.errors import PeerConnectionError

if TYPE_CHECKING:
    from gateway.p2p.dht import DhtNode

Address = tuple[str, int]

RELAY_CONNECT_PATH = "/relay/v1/connect/"  # a relayed address (gateway/reach/relay, docs/reach.md)
# Happy Eyeballs step: the next address is tried when the previous one has not connected in
# this long (RFC 8305's 250 ms: an Internet connect takes tens of ms; a dead address never) ...
STAGGER_S = 0.25
# ... or this long after a private (LAN) address: on the gateway's own LAN it connects in about
# a millisecond, and from anywhere else it never does (measured: the 250 ms step was the whole
# cost of finding a relayed gateway from another network).
LAN_STAGGER_S = 0.05
_LAN_NETS = tuple(  # RFC 1918, loopback, link-local, IPv6 ULA (not "is_private": TEST-NETs)
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)

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


def path_of(url: str) -> str:
    """How a contact address reaches the gateway: "relayed" (a relay's connect URL) or "direct"
    (the gateway's own listener, possibly through a port its router maps)."""
    return "relayed" if RELAY_CONNECT_PATH in urlsplit(url).path else "direct"


def _stagger(url: str) -> float:
    """How long the attempt at URL leads before the next one starts (STAGGER_S, or
    LAN_STAGGER_S for a private or loopback IP literal)."""
    try:
        ip = ipaddress.ip_address((urlsplit(url).hostname or "").strip("[]"))
    except ValueError:
        return STAGGER_S
    return LAN_STAGGER_S if any(ip in net for net in _LAN_NETS) else STAGGER_S


def preferred(addrs: Sequence[str]) -> list[str]:
    """ADDRS in the order a peer tries them: direct (and mapped) addresses as the gateway
    listed them, then relayed ones (docs/reach.md, "How a peer connects")."""
    return sorted(addrs, key=lambda url: path_of(url) == "relayed")


async def connect(
    client: PeerClient, contact: Contact, *, timeout_s: float | None = None
) -> PeerConnection:
    """Connect to the contact's addresses in preference order (`preferred`), starting the next
    attempt every STAGGER_S while earlier ones are still pending (Happy Eyeballs, RFC 8305: an
    unreachable LAN address costs STAGGER_S, not a whole timeout); the first connection made
    wins and the others are cancelled or closed. Each attempt is bounded by TIMEOUT_S (None:
    the client's CONNECT_TIMEOUT_S). `PeerConnection.path` says which path won."""
    addrs = preferred(contact.addrs)
    errors: list[str] = []
    if not addrs:
        raise PeerConnectionError(f"no address of {contact.identity.id} answered: none published")

    async def attempt(url: str) -> PeerConnection:
        return await client.connect(url, contact.identity, timeout_s=timeout_s, path=path_of(url))

    pending: set[asyncio.Task[PeerConnection]] = set()
    names: dict[asyncio.Task[PeerConnection], str] = {}
    winner: PeerConnection | None = None
    queue = list(addrs)
    try:
        while winner is None and (queue or pending):
            if queue:
                url = queue.pop(0)
                task = asyncio.create_task(attempt(url), name=f"peer-connect-{len(names)}")
                pending.add(task)
                names[task] = url
            done, pending = await asyncio.wait(
                pending,
                timeout=_stagger(url) if queue else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                exc = task.exception()
                if exc is None and winner is None:
                    winner = task.result()
                elif exc is None:
                    await task.result().close()
                else:
                    errors.append(f"{names[task]}: {exc}")
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                late = await task
                await late.close()
    if winner is None:
        raise PeerConnectionError(
            f"no address of {contact.identity.id} answered: {'; '.join(errors)}"
        )
    return winner


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
    from gateway.p2p.dht import DhtNode  # only when the DHT is asked (start-up time)

    node = DhtNode(host, 0, bootstrap=bootstrap, client_mode=True)  # never in others' tables
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
