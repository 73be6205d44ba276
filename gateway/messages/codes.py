"""The stable `MessageError.code` values raised when a sealed message is refused.

Each refusal has its own code so a peer (and the audit log) can tell why a message was dropped.
They are members of the one registry (gateway/codes.py, `Scope.MESSAGE`), which also says each
code's status and whether the refusal is answered sealed or plain; the names here are short
aliases for the modules of this package. Their meanings: docs/protocol.md §3.1.
"""

from __future__ import annotations

from typing import Final

from gateway.codes import Code, Scope

TOO_LARGE: Final = Code.TOO_LARGE
BAD_FORMAT: Final = Code.BAD_FORMAT
BAD_ALG: Final = Code.BAD_ALG
BAD_KEY: Final = Code.BAD_KEY
DECRYPT_FAILED: Final = Code.DECRYPT_FAILED
BAD_SIGNATURE: Final = Code.BAD_SIGNATURE
ISSUER_MISMATCH: Final = Code.ISSUER_MISMATCH
WRONG_AUDIENCE: Final = Code.WRONG_AUDIENCE
EXPIRED: Final = Code.EXPIRED
NOT_YET_VALID: Final = Code.NOT_YET_VALID
TOO_LONG_LIVED: Final = Code.TOO_LONG_LIVED
MISSING_CLAIM: Final = Code.MISSING_CLAIM
REPLAYED: Final = Code.REPLAYED
BAD_TYPE: Final = Code.BAD_TYPE
REPLAY_CACHE_FULL: Final = Code.REPLAY_CACHE_FULL
UNKNOWN_SESSION: Final = Code.UNKNOWN_SESSION
SESSION_EXPIRED: Final = Code.SESSION_EXPIRED
NEEDS_SIGNATURE: Final = Code.NEEDS_SIGNATURE

ALL_CODES: Final = Code.in_scope(Scope.MESSAGE)
