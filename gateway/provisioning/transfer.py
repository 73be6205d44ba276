"""Ownership transfer: a statement signed by the current owner naming the gateway and the new key.

The statement is a compact JWS (ES256, joserfc), protected header
``{"alg": "ES256", "typ": "streembit-transfer+jws", "kid": CURRENT_OWNER_ID}``, payload::

    {"typ": "streembit-transfer", "gw": GATEWAY_ID, "iss": CURRENT_OWNER_ID,
     "sub": NEW_OWNER_ID, "new_owner": NEW_OWNER_PUBLIC_JWK,
     "iat": <unix s>, "exp": <unix s, at most iat + 900>, "jti": <base64url, 128 bits>}

The gateway verifies it with the pinned owner key only (never with a key the statement brings),
checks gateway, times and the new key, and accepts each `jti` once (``transfers.json``, kept
until the statement expires). It travels as the sealed request ``{"op": "transfer", "input":
STATEMENT}`` from the current owner or from the new owner. On success the new key is pinned and
the old owner's ACL is removed (its grants were the old owner's decisions; the new owner signs
their own, starting again at version 1). The gateway key, the pairings and the audit log stay.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError

from gateway import jsonsafe
from gateway.acl import AclStore
from gateway.errors import IdentityError, MessageError, ProvisioningError
from gateway.identity import KeyPair, PublicIdentity, public_from_jwk
from gateway.messages.claims import JTI_PATTERN
from gateway.messages.codec import b64url_decode, header_object, json_object
from gateway.messages.seal import new_jti
from gateway.provisioning.locking import provisioning_lock
from gateway.storage import atomic_write_text

STATEMENT_TYP: Final = "streembit-transfer+jws"
PAYLOAD_TYP: Final = "streembit-transfer"
ALG: Final = "ES256"
DEFAULT_TTL_S: Final = 600  # long enough to hand the statement over, short against replay
MAX_TTL_S: Final = 900
CLOCK_LEEWAY_S: Final = 5
MAX_STATEMENT_BYTES: Final = 4096
LEDGER_FILE: Final = "transfers.json"
MAX_LEDGER_ENTRIES: Final = 1000

_REGISTRY: Final = jws.JWSRegistry(algorithms=[ALG])


def _err(code: str, message: str) -> ProvisioningError:
    return ProvisioningError(message, code=code)


@dataclass(frozen=True)
class TransferStatement:
    gateway: str
    previous: str
    new_owner: PublicIdentity
    iat: int
    exp: int
    jti: str


def sign_transfer(
    owner: KeyPair,
    gateway_id: str,
    new_owner: PublicIdentity,
    *,
    ttl: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """The transfer statement (compact JWS) by OWNER handing GATEWAY_ID to NEW_OWNER."""
    if not 1 <= ttl <= MAX_TTL_S:
        raise _err("transfer_invalid", f"ttl must be 1..{MAX_TTL_S} seconds")
    if new_owner.id == owner.id:
        raise _err("transfer_same_owner", "the new owner is the current owner")
    iat = int(time.time() if now is None else now)
    payload = {
        "typ": PAYLOAD_TYP,
        "gw": gateway_id,
        "iss": owner.id,
        "sub": new_owner.id,
        "new_owner": dict(new_owner.jwk),
        "iat": iat,
        "exp": iat + ttl,
        "jti": new_jti(),
    }
    header = {"alg": ALG, "typ": STATEMENT_TYP, "kid": owner.id}
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return jws.serialize_compact(header, body, owner.jose_key(), registry=_REGISTRY)


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err("transfer_invalid", f"statement claim {name!r} must be an integer")
    return value


def verify_transfer(
    statement: Any, *, owner: PublicIdentity, gateway_id: str, now: float | None = None
) -> TransferStatement:
    """Verify STATEMENT against the pinned OWNER; ProvisioningError with a `transfer_*` code."""
    if not isinstance(statement, str) or len(statement) > MAX_STATEMENT_BYTES:
        raise _err("transfer_invalid", "a transfer statement is a compact JWS of at most 4 KiB")
    statement = statement.strip()
    parts = statement.split(".")
    if len(parts) != 3 or not parts[2]:
        raise _err("transfer_invalid", "the transfer statement is not a signed compact JWS")
    try:
        header = header_object(statement, "statement header")
        payload = json_object(b64url_decode(parts[1], "payload"), "statement payload")
    except MessageError as exc:
        raise _err("transfer_invalid", f"the transfer statement is malformed: {exc}") from None
    if header.get("alg") != ALG or header.get("typ") != STATEMENT_TYP:
        raise _err("transfer_invalid", f"statement header must be alg {ALG}, typ {STATEMENT_TYP}")
    if header.get("kid") != owner.id:
        raise _err("transfer_not_owner", "the statement is not signed by this gateway's owner")
    try:
        jws.deserialize_compact(statement, owner.jose_key(), registry=_REGISTRY)
    except BadSignatureError:
        raise _err("transfer_bad_signature", "the statement signature does not verify") from None
    except JoseError as exc:
        raise _err("transfer_invalid", f"the statement JWS is malformed: {exc}") from None
    if payload.get("typ") != PAYLOAD_TYP:
        raise _err("transfer_invalid", f"statement typ must be {PAYLOAD_TYP!r}")
    if payload.get("gw") != gateway_id:
        raise _err("transfer_wrong_gateway", "the statement is for another gateway")
    if payload.get("iss") != owner.id:
        raise _err("transfer_not_owner", "the statement names another previous owner")
    try:
        new_owner = public_from_jwk(payload.get("new_owner"))
    except IdentityError as exc:
        raise _err("transfer_invalid", f"new owner key: {exc}") from None
    if payload.get("sub") != new_owner.id:
        raise _err("transfer_invalid", "statement sub is not the new owner key's id")
    if new_owner.id == owner.id:
        raise _err("transfer_same_owner", "the new owner is the current owner")
    iat, exp = _int(payload, "iat"), _int(payload, "exp")
    if not iat < exp <= iat + MAX_TTL_S:
        raise _err("transfer_invalid", f"statement must expire within {MAX_TTL_S} s of iat")
    t = time.time() if now is None else now
    if iat > t + CLOCK_LEEWAY_S:
        raise _err("transfer_not_yet_valid", "the statement is issued in the future")
    if t >= exp + CLOCK_LEEWAY_S:
        raise _err("transfer_expired", "the statement has expired; sign a new one")
    jti = payload.get("jti")
    if not isinstance(jti, str) or not JTI_PATTERN.fullmatch(jti):
        raise _err("transfer_invalid", "statement jti must be base64url of 128 to 512 bits")
    return TransferStatement(gateway_id, owner.id, new_owner, iat, exp, jti)


# ------------------------------------------------------------------- replay ledger
def _load_ledger(path: Path, now: float) -> dict[str, int]:
    try:
        doc: Any = jsonsafe.loads(path.read_bytes()[: 256 * 1024], jsonsafe.FILE_LIMITS)
        used = doc.get("used", {}) if isinstance(doc, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        used = {}  # damaged: statements are short-lived, so little is lost
    return {
        k: v
        for k, v in used.items()
        if isinstance(k, str) and isinstance(v, int) and v + CLOCK_LEEWAY_S > now
    }


def process_transfer(
    acl: AclStore,
    *,
    gateway_id: str,
    sender: PublicIdentity,
    statement: Any,
    now: float | None = None,
) -> TransferStatement:
    """Verify and apply a transfer sent by SENDER (the current or the new owner).

    Raises ProvisioningError: `not_owned`, `transfer_*`, `transfer_forbidden`,
    `transfer_replayed`, `owner_changed`. Nothing changes unless it succeeds."""
    owner = acl.owner
    if owner is None:
        raise _err("not_owned", "this gateway has no owner to transfer from; claim it instead")
    t = time.time() if now is None else now
    st = verify_transfer(statement, owner=owner, gateway_id=gateway_id, now=t)
    if sender.id not in (owner.id, st.new_owner.id):
        raise _err("transfer_forbidden", "only the current or the new owner may present a transfer")
    path = acl.state_dir / LEDGER_FILE
    with provisioning_lock(acl.state_dir):
        used = _load_ledger(path, t)
        if st.jti in used:
            raise _err("transfer_replayed", "this transfer statement was already used")
        if len(used) >= MAX_LEDGER_ENTRIES:
            raise _err("busy", "too many recent transfers; try again later")
        used[st.jti] = st.exp
        atomic_write_text(path, json.dumps({"v": 1, "used": used}) + "\n", mode=0o600)
        acl.transfer_owner(st.new_owner, from_owner_id=owner.id)
    return st
