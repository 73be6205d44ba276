"""The peer side of the Streembit P2P binding: `PeerClient` and its errors.

Usage and a complete example: docs/python-api.md.
"""

from gateway.peer.client import (
    CONNECT_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    PeerClient,
    PeerConnection,
    Reply,
)
from gateway.peer.errors import (
    PeerConnectionError,
    PeerError,
    PeerRequestError,
    PeerTimeoutError,
)
from gateway.peer.streams import PeerEvent, PeerStream

__all__ = [
    "CONNECT_TIMEOUT_S",
    "REQUEST_TIMEOUT_S",
    "PeerClient",
    "PeerConnection",
    "PeerConnectionError",
    "PeerError",
    "PeerEvent",
    "PeerRequestError",
    "PeerStream",
    "PeerTimeoutError",
    "Reply",
]
