"""What a relay donates, bounded (`RelayLimits`), and the relay's paths and timeouts.

A relay is an ordinary public peer lending its bandwidth to gateways behind NAT; every default
is conservative so that lending costs little and cannot be turned into an open proxy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from gateway.messages import MAX_MESSAGE_BYTES

__all__ = [
    "ACCEPT_PATH",
    "ACCEPT_TIMEOUT_S",
    "CLOSE_TIMEOUT_S",
    "CONNECT_PATH",
    "HANDSHAKE_TIMEOUT_S",
    "MAX_FRAME_BYTES",
    "OBSERVE_PATH",
    "PREFIX",
    "RESERVE_PATH",
    "SEND_TIMEOUT_S",
    "RelayLimits",
]

PREFIX: Final = "/relay/v1"
RESERVE_PATH: Final = PREFIX + "/reserve"
CONNECT_PATH: Final = PREFIX + "/connect/"  # + id
ACCEPT_PATH: Final = PREFIX + "/accept/"  # + circuit token
OBSERVE_PATH: Final = PREFIX + "/observe"

#: gateway.peer.wire.HARD_FRAME_BYTES (not imported: gateway.peer imports gateway.reach):
#: the P2P binding reads frames this large to refuse them in-band (too_large); same relayed.
MAX_FRAME_BYTES: Final = 2 * MAX_MESSAGE_BYTES

#: The reserving node opens /accept within this time after "incoming": one round trip on a live
#: control socket plus a WebSocket upgrade is well under a second even over a slow uplink.
ACCEPT_TIMEOUT_S: Final = 5.0
#: A challenge is answered within this time (one ES256 signature and a round trip); a socket
#: that does not answer holds a handshake slot, so this is short.
HANDSHAKE_TIMEOUT_S: Final = 10.0
#: Writing one control message (tiny) to a live socket; a stuck one is treated as gone.
SEND_TIMEOUT_S: Final = 5.0
#: Waiting for the peer's close frame after ours (aiohttp's `timeout`), then the TCP is cut.
CLOSE_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True)
class RelayLimits:
    """The relay's bounds; `refusal code` in docs/reach.md says how each one is refused."""

    #: Idle reservations cost < 20 KB each (bench/bench_relay.py): 128 is ~2.5 MB on a Pi.
    max_reservations: int = 128
    #: Unverified sockets (challenge not yet answered) are bounded tighter than verified ones.
    max_handshakes: int = 32
    #: ... and per source IP, so that a few addresses cannot hold every handshake slot.
    handshakes_per_ip: int = 4
    #: A home gateway serves a few peers at once; relays are a fallback, not the main path.
    circuits_per_reservation: int = 4
    #: Relay-wide concurrent circuits (waiting for accept included): bounds sockets and CPU.
    max_circuits: int = 64
    #: Sealed commands and replies are < 1 KiB: 1 MiB is a long session, not a file transfer.
    circuit_bytes: int = 1 << 20
    #: Relayed sessions are short; peers then reconnect (or upgrade to a direct path).
    circuit_duration_s: float = 600.0
    #: The largest frame piped (MAX_FRAME_BYTES, as the P2P binding reads); larger ends it.
    frame_bytes: int = MAX_FRAME_BYTES
    #: Unrenewed reservations end after this; the node renews at half-life on the same socket.
    reservation_ttl_s: int = 600
    #: Per source IP, reserve + connect + observe: one a second, bursts of 10 (a NATed office).
    rate_per_s: float = 1.0
    rate_burst: int = 10
    #: Source IPs tracked by the rate limiter (LRU, fail closed when all are busy).
    rate_max_keys: int = 4096
    #: WebSocket ping interval: finds dead control sockets and keeps NAT mappings open.
    heartbeat_s: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"RelayLimits.{f.name} must be a positive number")
