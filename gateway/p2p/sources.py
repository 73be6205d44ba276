"""Who a datagram or a contact counts as: the "source" that quotas and diversity limits key on.

Node ids and record keys are free to mint, addresses are not: one host gets one IPv4 address,
a small network a /24, an IPv6 site a /48. So every per-sender limit of the DHT (records in
storage, STORE rate, contacts in the routing table, candidates in a lookup) keys on the sender's
address prefix (`DhtSettings.prefix_v4` / `prefix_v6`). Loopback and private addresses count
per address:port when `local_by_port` is set (the default), as libp2p's diversity filter lets
private addresses through: a LAN, or one test host, runs many honest nodes on one address.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from gateway.p2p.node import Node
from gateway.p2p.settings import DhtSettings

__all__ = ["Diversity", "address_prefix", "source_key"]

# Addresses counted per address:port when `local_by_port` is set.
_LOCAL_V4 = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
)
_LOCAL_V6 = tuple(ipaddress.ip_network(n) for n in ("::1/128", "fc00::/7", "fe80::/10"))


@lru_cache(maxsize=4096)
def _prefix(ip: str, v4: int, v6: int, by_port: bool) -> str | None:
    """The source prefix of `ip`, or None when it is local and counted per port."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"?{ip}"  # not an IP literal (never from a socket): its own source
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        if by_port and any(addr in net for net in _LOCAL_V4):
            return None
        return str(ipaddress.ip_network(f"{addr}/{v4}", strict=False))
    if by_port and any(addr in net for net in _LOCAL_V6):
        return None
    return str(ipaddress.ip_network(f"{addr}/{v6}", strict=False))


def source_key(ip: str, port: int, settings: DhtSettings) -> str:
    """The source an address counts as: its prefix, or ip:port for a local address."""
    prefix = _prefix(ip, settings.prefix_v4, settings.prefix_v6, settings.local_by_port)
    return f"{ip}:{port}" if prefix is None else prefix


def address_prefix(ip: str, settings: DhtSettings) -> str:
    """The prefix of `ip` whatever `local_by_port` says: what a datagram sent to `ip` lands
    on (the dial-back rate limits key on it, as a reflected flood targets an address)."""
    prefix = _prefix(ip, settings.prefix_v4, settings.prefix_v6, False)
    return ip if prefix is None else prefix


class Diversity:
    """Counts contacts per source against a limit (routing buckets, tables, lookup windows)."""

    def __init__(self, settings: DhtSettings, limit: int, nodes: Iterable[Node] = ()) -> None:
        self.settings = settings
        self.limit = limit
        self.counts: Counter[str] = Counter(self.key(n) for n in nodes)

    def key(self, node: Node) -> str:
        if node.ip is None or node.port is None:
            return f"id:{node.id.hex()}"  # an id without an address (a lookup target)
        return source_key(str(node.ip), int(node.port), self.settings)

    def room_for(self, node: Node) -> bool:
        return self.counts[self.key(node)] < self.limit

    def add(self, node: Node) -> None:
        self.counts[self.key(node)] += 1
