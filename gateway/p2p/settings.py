"""Tunable DHT settings, each with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.p2p.storage import DEFAULT_MAX_RECORDS

__all__ = ["DhtSettings"]


@dataclass(frozen=True)
class DhtSettings:
    """Settings shared by the protocol, the lookups and the node's background tasks."""

    ksize: int = 20
    """Replicas per key and contacts per bucket (kademlia's k)."""
    alpha: int = 3
    """Queries a lookup keeps in flight; stalled queries do not count (see `stall_after_min`)."""
    rpc_timeout: float = 1.0
    """Longest wait for any RPC reply: kademlia's 5 s made each lookup round wait out dead peers."""
    rpc_timeout_min: float = 0.25
    """Floor of the adaptive reply timeout: spares live peers on a busy event loop or link."""
    stall_after_min: float = 0.05
    """A lookup asks another peer once a query is silent for max(this, estimated RTO)."""
    dead_contact_ttl: float = 60.0
    """A peer that missed a reply is skipped by lookups this long, unless it talks to us first."""
    get_quorum: int = 2
    """Valid answers a value lookup collects before it stops; it keeps the highest seq.

    2, not 1: one stale copy cannot hide a newer one; not more: each answer costs a round trip
    and a signature check per lookup, and read repair plus republish refresh stale copies."""
    republish_interval: float = 600.0
    """The owner re-stores its records this often, so nodes that became closest get them."""
    refresh_interval: float = 3600.0
    """Bucket refresh and re-replication of held records (kademlia's hourly republish)."""
    bootstrap_retry: float = 10.0
    """Longest wait between retries of the bootstrap contacts while the routing table is empty
    (and how often a joined node checks that it still has contacts)."""
    bootstrap_retry_min: float = 1.0
    """First wait before such a retry; it doubles, jittered, up to `bootstrap_retry`, so a node
    that started before its seed joins soon and a fleet that lost its seed does not retry in
    step."""
    max_records: int = DEFAULT_MAX_RECORDS
    """Records one node keeps at most (memory bound whatever peers send)."""
    max_records_per_source: int = DEFAULT_MAX_RECORDS // 10
    """Records one source (address prefix, see `prefix_v4`) may have introduced into storage:
    one sender fills at most a tenth of a node, whatever number of keys it mints."""
    prefix_v4: int = 24
    """IPv4 prefix length that counts as one source (storage quota, store rate, routing and
    lookup diversity): a /24 is what one host or small network cheaply gets (IPFS, BEP 42)."""
    prefix_v6: int = 48
    """IPv6 prefix length that counts as one source (a site's usual allocation)."""
    local_by_port: bool = True
    """Loopback and private (RFC 1918, ULA, link-local) addresses count per address:port, as
    libp2p's diversity filter lets private addresses through: a LAN or one test host runs many
    honest nodes on one address. Tests of the prefix policy set False."""
    store_rate: float = 50.0
    """STORE requests per second one source gets verified (token bucket, see `store_burst`)."""
    store_burst: int = 200
    """Burst of STORE requests one source may send before `store_rate` applies."""
    max_per_prefix_bucket: int = 2
    """Routing-table contacts from one source per bucket (IPFS kad-dht: 2 per CPL)."""
    max_per_prefix_table: int = 8
    """Routing-table contacts from one source in the whole table."""
    max_per_prefix_lookup: int = 3
    """Candidates from one source in one lookup: Sybils near a key cannot fill its k-window."""
    lookup_paths: int = 2
    """Disjoint paths per lookup (S/Kademlia's d): no node is asked by two paths."""
    handover_max: int = 32
    """Records handed to one newly seen contact at most (the closest to it first)."""
    handover_rate: float = 100.0
    """Hand-over STOREs per second this node sends at most, all newcomers together."""
    handover_batch: int = 8
    """Hand-over STOREs sent back to back before the hand-over task yields to the rate."""
    dialback_rate: float = 0.1
    """Dial-backs per second served to one source prefix (whatever `local_by_port` says): a
    node checks its reachability at start and when its address changes, asking each peer once;
    a responder must not become a reflector aimed at one address."""
    dialback_burst: int = 8
    """Dial-backs one source prefix may ask back to back: a few gateways behind one NAT."""
    dialback_global_rate: float = 10.0
    """Dial-backs per second served to all sources together (each costs a datagram from a
    fresh socket and maybe a TCP connect)."""
    dialback_global_burst: int = 40
    """Dial-backs served back to back before `dialback_global_rate` applies."""

    def __post_init__(self) -> None:
        for name in (
            "ksize",
            "alpha",
            "get_quorum",
            "max_records",
            "max_records_per_source",
            "store_burst",
            "max_per_prefix_bucket",
            "max_per_prefix_table",
            "max_per_prefix_lookup",
            "lookup_paths",
            "handover_max",
            "handover_batch",
            "dialback_burst",
            "dialback_global_burst",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not (0 <= self.prefix_v4 <= 32 and 0 <= self.prefix_v6 <= 128):
            raise ValueError("prefix_v4 must be in [0, 32] and prefix_v6 in [0, 128]")
        for name in (
            "rpc_timeout",
            "rpc_timeout_min",
            "stall_after_min",
            "dead_contact_ttl",
            "republish_interval",
            "refresh_interval",
            "bootstrap_retry",
            "bootstrap_retry_min",
            "store_rate",
            "handover_rate",
            "dialback_rate",
            "dialback_global_rate",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def reply_floor(self) -> float:
        """The adaptive timeout's floor, never above the cap."""
        return min(self.rpc_timeout_min, self.rpc_timeout)
