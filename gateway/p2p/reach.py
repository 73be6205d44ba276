"""Reachability, the asking side: observed address and dial-back checks, advertised services.

`check_reachability` asks up to 3 peers at distinct IP addresses for a ``dialback``
(docs/dht-records.md, "Reachability"): each reply names the address the peer saw the request
come from, each peer sends a nonce datagram from a fresh UDP port (and, if asked, connects to a
TCP port). One peer's word is not enough: the observed address is the one at least
`MIN_AGREEMENT` peers report, and the node counts as reachable over UDP (or TCP) when that many
peers' dial-backs got through. A peer that lies can add at most one vote.

`find_services` asks contacts for their ``info`` and keeps the URLs of a service whose host is
the address the contact answered from (a node cannot send others to a third party).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import Final

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.p2p.crawl import find_nodes
from gateway.p2p.dialback import TCP_DIAL_TIMEOUT_S
from gateway.p2p.node import Address, Node, random_id
from gateway.p2p.protocol import ValidatingProtocol
from gateway.p2p.reachwire import NONCE_LEN, parse_dialback_reply, parse_info_reply, service_host

__all__ = ["MIN_AGREEMENT", "Reachability", "check_reachability", "find_services", "pick_peers"]

MIN_AGREEMENT: Final = 2  # peers at distinct IP addresses that must agree (one may lie)
DEFAULT_ASKED: Final = 3  # peers asked by a check: one may be silent, refuse or lie
REPLY_MARGIN_S: Final = 1.0  # a dial-back reply waits for the TCP dial, plus a slow round trip
NONCE_GRACE_S: Final = 0.5  # a nonce datagram overtaken by its reply still counts this long
MAX_INFO_QUERIES: Final = 64  # info RPCs one find_services sends at most
INFO_PARALLEL: Final = 8  # info RPCs in flight at once


@dataclass(frozen=True)
class Reachability:
    """What a check learnt. `observed`: the (ip, udp port) at least 2 peers saw (None if they
    disagree: a NAT that maps per destination); `udp_reachable`: the nonce datagrams of at
    least 2 peers arrived; `tcp_reachable`: at least 2 peers connected (None: not asked);
    `confirmations`: peers whose datagram arrived; `asked` / `answered`: peers asked / that
    answered without refusing."""

    observed: Address | None
    udp_reachable: bool
    tcp_reachable: bool | None
    confirmations: int
    asked: int
    answered: int


def _ip(text: str | None) -> str:
    try:
        return str(ipaddress.ip_address(text or ""))
    except ValueError:
        return text or ""


def pick_peers(
    proto: ValidatingProtocol, count: int, extra: list[Node] | None = None
) -> list[Node]:
    """Up to `count` live contacts (routing table first, then `extra`) at distinct IPs."""
    contacts = proto.router.contacts()
    random.shuffle(contacts)
    out: list[Node] = []
    seen: set[str] = set()
    for node in [*contacts, *(extra or [])]:
        ip = _ip(node.ip)
        if ip in seen or proto.is_dead(node) or node.id == proto.source_node.id:
            continue
        seen.add(ip)
        out.append(node)
        if len(out) == count:
            break
    return out


async def _peers(proto: ValidatingProtocol, count: int) -> list[Node]:
    peers = pick_peers(proto, count)
    if len(peers) < count:  # too few distinct addresses known: walk toward a random id
        peers = pick_peers(proto, count, await find_nodes(proto, random_id()))
    return peers


async def check_reachability(
    proto: ValidatingProtocol, tcp_port: int | None = None, *, asked: int = DEFAULT_ASKED
) -> Reachability:
    """Ask up to `asked` peers at distinct IPs to dial back (see module doc).

    Raises `ReachError` when fewer than 2 peers answered (`dialback_refused` if some refused
    by their rate limits, `reach` otherwise): nothing can be decided then."""
    peers = await _peers(proto, max(asked, MIN_AGREEMENT))
    timeout = proto.settings.rpc_timeout
    if tcp_port is not None:
        timeout += TCP_DIAL_TIMEOUT_S + REPLY_MARGIN_S
    nonces = [os.urandom(NONCE_LEN) for _ in peers]
    arrivals: list[asyncio.Future[Address]] = []
    try:
        for nonce in nonces:
            arrivals.append(proto.nonces.expect(nonce))
        args = [[proto.source_node.id, n, tcp_port] for n in nonces]
        replies = await asyncio.gather(
            *(
                proto.request(p.address, "dialback", a, timeout=timeout, liveness=False)
                for p, a in zip(peers, args, strict=True)
            )
        )
        waiting = [a for a in arrivals if not a.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=NONCE_GRACE_S)
    finally:
        for nonce in nonces:
            proto.nonces.forget(nonce)
    votes: Counter[Address] = Counter()
    answered = refused = tcp_ok = 0
    for ok, value in replies:
        if not ok:
            continue
        try:
            reply = parse_dialback_reply(value)
        except ReachError:
            continue
        if reply.refused is not None:
            refused += 1
            continue
        answered += 1
        votes[reply.observed] += 1
        tcp_ok += reply.tcp is True
    if answered < MIN_AGREEMENT:
        code = Code.DIALBACK_REFUSED if refused else Code.REACH
        raise ReachError(
            f"{answered} of {len(peers)} peers at distinct addresses answered the dial-back "
            f"({refused} refused); {MIN_AGREEMENT} needed",
            code=code,
        )
    confirmations = sum(
        1
        for peer, arrival in zip(peers, arrivals, strict=True)
        # from the peer's own DHT port it tests nothing: only a fresh port counts
        if arrival.done() and not arrival.cancelled() and arrival.result() != peer.address
    )
    best = votes.most_common(1)
    observed = best[0][0] if best and best[0][1] >= MIN_AGREEMENT else None
    return Reachability(
        observed=observed,
        udp_reachable=confirmations >= MIN_AGREEMENT,
        tcp_reachable=None if tcp_port is None else tcp_ok >= MIN_AGREEMENT,
        confirmations=confirmations,
        asked=len(peers),
        answered=answered,
    )


async def _service_of(proto: ValidatingProtocol, node: Node, name: str) -> str | None:
    ok, value = await proto.request(node.address, "info", [proto.source_node.id], liveness=False)
    if not ok:
        return None
    try:
        info = parse_info_reply(value)
    except ReachError:
        return None
    url = info.services.get(name)
    if info.client or url is None or service_host(url) != _ip(node.ip):
        return None  # a client's, or another host's address: not offered by this node
    return url


async def find_services(proto: ValidatingProtocol, name: str, want: int) -> list[str]:
    """Up to `want` distinct URLs of service `name` advertised by full-mode nodes: the routing
    table's contacts first, then those a walk toward a random id finds."""
    found: list[str] = []
    asked: set[bytes] = {proto.source_node.id}

    async def ask(nodes: list[Node]) -> None:
        todo = [n for n in nodes if n.id not in asked and not proto.is_dead(n)]
        while todo and len(found) < want and (room := MAX_INFO_QUERIES + 1 - len(asked)) > 0:
            size = min(INFO_PARALLEL, room)
            batch, todo = todo[:size], todo[size:]
            asked.update(n.id for n in batch)
            for url in await asyncio.gather(*(_service_of(proto, n, name) for n in batch)):
                if url is not None and url not in found:
                    found.append(url)

    contacts = proto.router.contacts()
    random.shuffle(contacts)
    await ask(contacts)
    if len(found) < want:
        await ask(await find_nodes(proto, random_id()))
    return found[:want]
