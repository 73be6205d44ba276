"""The Streembit P2P binding: sealed messages (docs/protocol.md) over a WebSocket."""

from gateway.bindings.p2p.context import DEFAULT_BURST, DEFAULT_RATE_PER_S, Limits
from gateway.bindings.p2p.server import P2PBinding

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE_PER_S", "Limits", "P2PBinding"]
