"""The ACL as an owner-signed compact JWS: build and sign (peer side), verify (gateway side).

Wire format: a compact JWS, protected header ``{"alg": "ES256", "typ": "streembit-acl+jws",
"kid": OWNER_ID}``, payload the JSON described in `gateway.acl.model`. Signing and
verification are joserfc's; this module only adds the policy (which alg, which key, which
gateway, which version) and maps every refusal to a distinct `AclError` code.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Final

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jws import JWSRegistry

from gateway.acl.model import ACL_TYP, MAX_ACL_BYTES, Acl, Grant
from gateway.b64 import b64url_decode
from gateway.compact import peek_header
from gateway.errors import AclError
from gateway.identity import KeyPair, PublicIdentity
from gateway.jsonsafe import JsonInputError, JsonLimits, loads

# An ACL payload nests 4 levels (acl > grants > grant > jwk); its header is flat.
ACL_JSON_LIMITS: Final = JsonLimits(max_bytes=MAX_ACL_BYTES, max_depth=8)

ACL_ALG = "ES256"  # the only signature algorithm an ACL may use (P-256 owner keys)


class _AclRegistry(JWSRegistry):
    """joserfc registry allowing ES256 only, with room for a full-size ACL payload."""

    max_payload_length = MAX_ACL_BYTES


_REGISTRY = _AclRegistry(algorithms=[ACL_ALG])


# ------------------------------------------------------------------------- peer side
def new_acl(gateway_id: str, *, tz: str | None = None, now: int | None = None) -> Acl:
    """An empty ACL (version 0) for GATEWAY_ID; schedules are read in TZ (None: gateway local)."""
    return Acl(gateway=gateway_id, version=0, iat=_now(now), tz=tz)


def with_grant(acl: Acl, grant: Grant, *, now: int | None = None) -> Acl:
    """A new version with GRANT added, replacing (in place) any grant for the same subject.

    Re-granting a revoked subject takes it off the revoked list.
    """
    hit = acl.by_subject.get(grant.subject)
    grant = _with_since(grant, hit[1] if hit is not None else None, _now(now))
    grants = list(acl.grants)
    if hit is None:
        grants.append(grant)
    else:
        grants[hit[0]] = grant
    return dataclasses.replace(
        acl,
        version=acl.version + 1,
        iat=_now(now),
        grants=tuple(grants),
        revoked=acl.revoked - {grant.subject},
    )


def _with_since(grant: Grant, old: Grant | None, now: int) -> Grant:
    """GRANT with its `since`: kept from the grant it replaces while that one could delegate
    too, else now (a new grant, a re-grant after a revocation, delegation switched on)."""
    if not grant.delegate or grant.since is not None:
        return grant
    if old is not None and old.delegate and old.since is not None:
        return dataclasses.replace(grant, since=old.since)
    return dataclasses.replace(grant, since=now)


def without_subject(acl: Acl, subject_id: str, *, now: int | None = None) -> Acl:
    """A new version without SUBJECT_ID's grant and with SUBJECT_ID on the revoked list."""
    return dataclasses.replace(
        acl,
        version=acl.version + 1,
        iat=_now(now),
        grants=tuple(g for g in acl.grants if g.subject != subject_id),
        revoked=acl.revoked | {subject_id},
    )


def without_link(acl: Acl, jti: str, *, now: int | None = None) -> Acl:
    """A new version with delegation link JTI revoked: every chain through it ends."""
    return dataclasses.replace(
        acl,
        version=acl.version + 1,
        iat=_now(now),
        revoked_delegations=acl.revoked_delegations | {jti},
    )


def sign_acl(acl: Acl, owner: KeyPair) -> str:
    """The ACL as a compact JWS signed by OWNER."""
    header = {"alg": ACL_ALG, "typ": ACL_TYP, "kid": owner.id}
    payload = json.dumps(acl.to_json(), separators=(",", ":"), sort_keys=True).encode()
    if len(payload) > MAX_ACL_BYTES:
        raise AclError(f"ACL larger than {MAX_ACL_BYTES} bytes", code="acl_too_large")
    text = jws.serialize_compact(header, payload, owner.jose_key(), registry=_REGISTRY)
    if len(text) > MAX_ACL_BYTES:
        raise AclError(f"signed ACL larger than {MAX_ACL_BYTES} bytes", code="acl_too_large")
    return text


def read_acl_unverified(text: str) -> Acl:
    """Parse an ACL WITHOUT checking its signature (for display only, e.g. `acl show`)."""
    _, payload, _ = _split(text)
    return _parse_payload(payload)


# ---------------------------------------------------------------------- gateway side
def verify_acl(
    text: str, *, owner: PublicIdentity, gateway_id: str, installed_version: int | None
) -> Acl:
    """Verify an ACL JWS and return it; AclError with a distinct code on any refusal.

    Codes: acl_too_large, acl_unsigned (not a JWS, alg none, no signature), acl_bad_alg,
    acl_foreign_signer (kid names another key), acl_bad_signature, acl_malformed,
    acl_wrong_gateway, acl_rollback (version not above INSTALLED_VERSION).
    """
    header, payload, signature = _split(text)
    text = text.strip()
    alg = header.get("alg")
    if alg == "none" or not signature:
        raise AclError("the ACL is not signed", code="acl_unsigned")
    if alg != ACL_ALG:
        raise AclError(f"ACL signature algorithm must be {ACL_ALG}", code="acl_bad_alg")
    if header.get("typ") != ACL_TYP:
        raise AclError(f"ACL header typ must be {ACL_TYP!r}", code="acl_malformed")
    try:
        jws.deserialize_compact(text, owner.jose_key(), registry=_REGISTRY)
    except BadSignatureError:
        kid = header.get("kid")
        if kid is not None and kid != owner.id:
            raise AclError(
                "the ACL is signed by a key other than the owner's", code="acl_foreign_signer"
            ) from None
        raise AclError("the ACL signature does not verify", code="acl_bad_signature") from None
    except JoseError as exc:
        raise AclError(f"the ACL JWS is malformed: {exc}", code="acl_malformed") from None
    acl = _parse_payload(payload)
    if acl.gateway != gateway_id:
        raise AclError("the ACL is for another gateway", code="acl_wrong_gateway")
    if installed_version is not None and acl.version <= installed_version:
        raise AclError(
            f"ACL version {acl.version} is not newer than the installed {installed_version}",
            code="acl_rollback",
        )
    return acl


# -------------------------------------------------------------------------- helpers
def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


def _split(text: str) -> tuple[dict[str, Any], bytes, str]:
    """(protected header, payload bytes, signature segment) of a compact JWS, unverified."""
    if not isinstance(text, str):
        raise AclError("an ACL is text (a compact JWS)", code="acl_malformed")
    if len(text) > MAX_ACL_BYTES:
        raise AclError(f"ACL larger than {MAX_ACL_BYTES} bytes", code="acl_too_large")
    if not text.isascii():  # a compact JWS is base64url and dots only
        raise AclError("the ACL is not a compact JWS", code="acl_unsigned")
    text = text.strip()
    parts = text.split(".")
    if len(parts) != 3:
        raise AclError("the ACL is not a compact JWS", code="acl_unsigned")
    try:
        header = peek_header(text, ACL_JSON_LIMITS, what="the ACL header")
        payload = b64url_decode(parts[1], "the ACL payload")
    except ValueError:  # Base64UrlError, JsonInputError
        raise AclError("the ACL is not a compact JWS", code="acl_unsigned") from None
    return header, payload, parts[2]


def _parse_payload(payload: bytes) -> Acl:
    try:
        obj = loads(payload, ACL_JSON_LIMITS, what="the ACL payload")
    except JsonInputError as exc:
        raise AclError(f"{exc} [{exc.problem}]", code="acl_malformed") from None
    return Acl.from_json(obj)
