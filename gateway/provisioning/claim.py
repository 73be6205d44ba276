"""Claiming an unclaimed gateway with its one-time setup code (docs/provisioning.md, section 4).

The claimer sends a sealed request ``{"op": "claim", "input": {"v": 1, "mac": MAC}}`` to the
gateway's key (taken from the gateway's QR). The sealed sender (JWS signer) is the key to pin as
owner. MAC proves knowledge of the setup code without sending it::

    K   = HKDF-SHA256(ikm = setup code (10 bytes), salt = "streembit-setup-code-v1",
                      info = gateway id (ASCII), length = 32)
    MAC = base64url(HMAC-SHA256(K, "streembit-claim-v1." + gateway id + "." + claimer id
                                   + "." + jti of the request message))

The MAC binds the code to this gateway, this claimer's key and this one message (whose jti the
gateway's replay cache accepts once), so a MAC seen anywhere is useless for another key. The
whole message is encrypted to the gateway, so only the gateway sees the MAC at all.
All primitives are `cryptography`'s.
"""

from __future__ import annotations

from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.acl import AclStore
from gateway.errors import MessageError, ProvisioningError
from gateway.identity import PublicIdentity
from gateway.messages.codec import b64url_decode, b64url_encode
from gateway.provisioning.setup_code import SetupCodeStore

CLAIM_VERSION: Final = 1
HKDF_SALT: Final = b"streembit-setup-code-v1"
MAC_LABEL: Final = "streembit-claim-v1"
MAC_BYTES: Final = 32


def claim_key(code: bytes, gateway_id: str) -> bytes:
    """The MAC key derived from the setup code, bound to the gateway."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=gateway_id.encode("ascii")
    )
    return hkdf.derive(code)


def mac_input(gateway_id: str, claimer_id: str, jti: str) -> bytes:
    return f"{MAC_LABEL}.{gateway_id}.{claimer_id}.{jti}".encode("ascii")


def claim_mac(code: bytes, gateway_id: str, claimer_id: str, jti: str) -> str:
    """The claim MAC (base64url) for request JTI sent by CLAIMER_ID to GATEWAY_ID."""
    h = hmac.HMAC(claim_key(code, gateway_id), hashes.SHA256())
    h.update(mac_input(gateway_id, claimer_id, jti))
    return b64url_encode(h.finalize())


def claim_input(code: bytes, gateway_id: str, claimer_id: str, jti: str) -> dict[str, Any]:
    """The `input` of the claim request."""
    return {"v": CLAIM_VERSION, "mac": claim_mac(code, gateway_id, claimer_id, jti)}


def verify_mac(code: bytes, gateway_id: str, claimer_id: str, jti: str, mac: bytes) -> bool:
    """Constant-time check of MAC (raw bytes) against the setup code."""
    h = hmac.HMAC(claim_key(code, gateway_id), hashes.SHA256())
    h.update(mac_input(gateway_id, claimer_id, jti))
    try:
        h.verify(mac)
    except InvalidSignature:
        return False
    return True


def parse_claim_input(value: Any) -> bytes:
    """The raw MAC of a claim request's input; ProvisioningError("claim_malformed")."""
    if not isinstance(value, dict) or value.get("v") != CLAIM_VERSION:
        raise ProvisioningError(
            f'claim input must be {{"v": {CLAIM_VERSION}, "mac": ...}}', code="claim_malformed"
        )
    mac = value.get("mac")
    if not isinstance(mac, str) or len(mac) > 64:
        raise ProvisioningError("claim mac must be base64url text", code="claim_malformed")
    try:
        raw = b64url_decode(mac, "claim mac")
    except MessageError:
        raise ProvisioningError("claim mac is not base64url", code="claim_malformed") from None
    if len(raw) != MAC_BYTES:
        raise ProvisioningError(f"claim mac must be {MAC_BYTES} bytes", code="claim_malformed")
    return raw


def process_claim(
    acl: AclStore,
    setup: SetupCodeStore,
    *,
    gateway_id: str,
    claimer: PublicIdentity,
    jti: str,
    claim: Any,
) -> None:
    """Pin CLAIMER as owner if CLAIM proves the setup code. Raises ProvisioningError:
    `already_owned`, `claim_malformed`, `no_setup_code`, `setup_code_used`, `claim_locked`,
    `bad_setup_code` (counted). Nothing changes unless the claim succeeds."""
    if acl.owner is not None:
        raise ProvisioningError(
            "this gateway already has an owner; claiming is closed", code="already_owned"
        )
    mac = parse_claim_input(claim)
    setup.consume(
        lambda code: verify_mac(code, gateway_id, claimer.id, jti, mac),
        lambda: acl.pin_owner(claimer),
    )
