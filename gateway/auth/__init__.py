"""Bearer-token authentication for the HTTP binding (self-issued ES256 JWTs)."""

from gateway.auth.tokens import MAX_TOKEN_BYTES, Principal, TokenVerifier, issue_token

__all__ = ["MAX_TOKEN_BYTES", "Principal", "TokenVerifier", "issue_token"]
