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
    """A node whose routing table is empty retries its bootstrap contacts this often."""
    max_records: int = DEFAULT_MAX_RECORDS
    """Records one node keeps at most (memory bound whatever peers send)."""

    def __post_init__(self) -> None:
        if self.ksize < 1 or self.alpha < 1 or self.get_quorum < 1 or self.max_records < 1:
            raise ValueError("ksize, alpha, get_quorum and max_records must be >= 1")
        for name in (
            "rpc_timeout",
            "rpc_timeout_min",
            "stall_after_min",
            "dead_contact_ttl",
            "republish_interval",
            "refresh_interval",
            "bootstrap_retry",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def reply_floor(self) -> float:
        """The adaptive timeout's floor, never above the cap."""
        return min(self.rpc_timeout_min, self.rpc_timeout)
