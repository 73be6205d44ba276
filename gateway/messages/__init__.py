"""Sealed peer messages (JWS in JWE), replay protection and per-peer rate limiting.

Formats, error codes and test vectors: docs/protocol.md.
"""

from gateway.messages import codes
from gateway.messages.claims import ENVELOPE_CLAIMS, OPS, TYPES
from gateway.messages.ratelimit import RateLimiter
from gateway.messages.replay import CLOCK_LEEWAY_S, ReplayCache
from gateway.messages.seal import (
    DEFAULT_TTL_S,
    MAX_MESSAGE_BYTES,
    MAX_TTL_S,
    Opened,
    new_jti,
    open_sealed,
    seal,
)

__all__ = [
    "CLOCK_LEEWAY_S",
    "DEFAULT_TTL_S",
    "ENVELOPE_CLAIMS",
    "MAX_MESSAGE_BYTES",
    "MAX_TTL_S",
    "OPS",
    "TYPES",
    "Opened",
    "RateLimiter",
    "ReplayCache",
    "codes",
    "new_jti",
    "open_sealed",
    "seal",
]
