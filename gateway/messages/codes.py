"""The stable `MessageError.code` values raised when a sealed message is refused.

Each refusal has its own code so a peer (and the audit log) can tell why a message was dropped.
The table with the meaning of each code is in docs/protocol.md.
"""

from __future__ import annotations

from typing import Final

TOO_LARGE: Final = "too_large"
BAD_FORMAT: Final = "bad_format"
BAD_ALG: Final = "bad_alg"
BAD_KEY: Final = "bad_key"
DECRYPT_FAILED: Final = "decrypt_failed"
BAD_SIGNATURE: Final = "bad_signature"
ISSUER_MISMATCH: Final = "issuer_mismatch"
WRONG_AUDIENCE: Final = "wrong_audience"
EXPIRED: Final = "expired"
NOT_YET_VALID: Final = "not_yet_valid"
TOO_LONG_LIVED: Final = "too_long_lived"
MISSING_CLAIM: Final = "missing_claim"
REPLAYED: Final = "replayed"
BAD_TYPE: Final = "bad_type"
REPLAY_CACHE_FULL: Final = "replay_cache_full"

ALL_CODES: Final = (
    TOO_LARGE,
    BAD_FORMAT,
    BAD_ALG,
    BAD_KEY,
    DECRYPT_FAILED,
    BAD_SIGNATURE,
    ISSUER_MISMATCH,
    WRONG_AUDIENCE,
    EXPIRED,
    NOT_YET_VALID,
    TOO_LONG_LIVED,
    MISSING_CLAIM,
    REPLAYED,
    BAD_TYPE,
    REPLAY_CACHE_FULL,
)
