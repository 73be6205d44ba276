"""What every connection of the P2P binding shares: keys, the request path, caches, limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.acl import AclStore
from gateway.config.model import P2pConfig
from gateway.identity import KeyPair
from gateway.messages import RateLimiter, ReplayCache
from gateway.requests import Outcome, RequestProcessor

log = logging.getLogger(__name__)

TdSource = Callable[[], dict[str, dict[str, Any]]]  # thing name -> TD
#: Serves one `punch` step (session label, sender id, the step): gateway/reach/upgrade.py.
PunchHook = Callable[[str, str, dict[str, Any]], Awaitable[Outcome]]

#: Sustained messages per second per peer, and the bucket a client opening a dashboard (a few
#: dozen reads at once) may spend: the defaults of `[gateway.p2p]` (gateway/config/model.py).
DEFAULT_RATE_PER_S: Final[float] = P2pConfig.rate_per_s
DEFAULT_BURST: Final[int] = P2pConfig.burst


@dataclass(frozen=True)
class Limits:
    """Tunable bounds of the binding. Every bound protects the gateway from one peer."""

    rate_per_s: float = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST
    #: One remote address may use this many peers' worth of rate (several peers behind a NAT).
    addr_share: int = 4
    max_connections: int = 256
    max_connections_per_addr: int = 32
    #: Requests being served at once per connection (reads and actions run concurrently).
    max_inflight: int = 16
    #: Requests being served at once in total (they outlive a disconnected peer).
    max_requests: int = 256
    #: Live subscriptions per connection.
    max_streams: int = 32
    #: Consecutive frames refused by the rate limit before the connection is closed.
    flood_disconnect: int = 200
    #: An idle subscription re-checks the ACL this often (grant windows and schedules end
    #: without an ACL change; an installed ACL wakes every subscription at once).
    recheck_s: float = 1.0
    #: A peer that does not take a frame within this time is disconnected.
    send_timeout_s: float = 10.0
    #: WebSocket ping interval: a dead peer is dropped after about this long.
    heartbeat_s: float = 30.0


@dataclass
class P2PContext:
    """Shared state handed to each connection (one per binding)."""

    identity: KeyPair
    processor: RequestProcessor
    acl: AclStore
    tds: TdSource
    limits: Limits
    replay: ReplayCache = field(default_factory=ReplayCache)
    #: One-shot requests being served, of every connection. They are not cancelled when their
    #: peer disconnects (a Thing operation is left to finish: cancelling an unlock half-way
    #: could leave a bolt open); `P2PBinding.stop` waits for them, then cancels what is left.
    requests: set[asyncio.Task[None]] = field(default_factory=set)
    #: Direct-link upgrades (None: refused as unsupported); set by the gateway's reach manager.
    punch: PunchHook | None = None
    conn_limiter: RateLimiter = field(init=False)
    addr_limiter: RateLimiter = field(init=False)
    peer_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        lim = self.limits
        self.conn_limiter = RateLimiter(lim.rate_per_s, lim.burst)
        self.addr_limiter = RateLimiter(lim.rate_per_s * lim.addr_share, lim.burst * lim.addr_share)
        self.peer_limiter = RateLimiter(lim.rate_per_s, lim.burst)
