"""Find a gateway by its id alone: a DHT lookup of its signed contact record, then connect.

The record is verified by the DHT layer (signature by the key whose id it is filed under, expiry,
highest sequence number), so the gateway's public key comes from the record itself: nobody can
answer for a gateway without its private key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from gateway.errors import P2PError
from gateway.identity import PublicIdentity, public_from_jwk
from gateway.p2p import DhtNode, Record
from gateway.peer.client import PeerClient, PeerConnection
from gateway.peer.errors import PeerConnectionError

Address = tuple[str, int]


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
    ident = public_from_jwk(dict(rec.jwk))
    if ident.id != gateway_id:  # verify_record already checks this; never trust one layer alone
        raise P2PError("contact record signed by another key", code="record_wrong_key")
    return Contact(rec, ident)


async def connect(client: PeerClient, contact: Contact) -> PeerConnection:
    """Connect to the first address of the contact that answers."""
    errors: list[str] = []
    for url in contact.addrs:
        try:
            return await client.connect(url, contact.identity)
        except PeerConnectionError as exc:
            errors.append(f"{url}: {exc}")
    raise PeerConnectionError(
        f"no address of {contact.identity.id} answered: {'; '.join(errors) or 'none published'}"
    )


@contextlib.asynccontextmanager
async def ephemeral_dht(
    bootstrap: Sequence[Address], host: str = "127.0.0.1"
) -> AsyncIterator[DhtNode]:
    """A short-lived DHT node for a peer command: joins through BOOTSTRAP, stops afterwards."""
    if not bootstrap:
        raise P2PError(
            "a bootstrap node is needed to reach the network (--bootstrap HOST:PORT)",
            code="no_bootstrap",
        )
    node = DhtNode(host, 0, bootstrap=bootstrap)
    await node.start()
    try:
        if node.routing_size() == 0:
            raise P2PError(
                f"no DHT node answered at {', '.join(f'{h}:{p}' for h, p in bootstrap)}",
                code="unreachable",
            )
        yield node
    finally:
        await node.stop()
