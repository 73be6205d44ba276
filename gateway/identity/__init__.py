"""Identities: P-256 keys; an id is the RFC 7638 JWK thumbprint (SHA-256, base64url)."""

from gateway.identity.keys import (
    KeyPair,
    PublicIdentity,
    generate_keypair,
    load_keypair,
    load_public,
    public_from_jwk,
    thumbprint,
    write_keypair,
)

__all__ = [
    "KeyPair",
    "PublicIdentity",
    "generate_keypair",
    "load_keypair",
    "load_public",
    "public_from_jwk",
    "thumbprint",
    "write_keypair",
]
