"""Claim names, message types, operation names, and the shape check of each message body.

The same check runs when sealing (so we never emit what a peer would refuse) and when opening.
A missing field raises `missing_claim`, a field of the wrong type or value `bad_format`, an unknown
`typ` `bad_type`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from gateway.b64 import Base64UrlError, b64url_decode
from gateway.errors import MessageError
from gateway.messages import codes

#: Envelope claims every message carries; `seal` sets them, a body must not.
ENVELOPE_CLAIMS: Final = ("iss", "aud", "iat", "exp", "jti", "typ")

REQUEST: Final = "request"
REPLY: Final = "reply"
EVENT: Final = "event"
ERROR: Final = "error"
TYPES: Final = frozenset({REQUEST, REPLY, EVENT, ERROR})

#: Operation -> body fields it requires (besides `op`). WoT operation names, plus the
#: Streembit-specific `things` (list the Things), `td` (fetch one TD), `aclpush` (new ACL JWS),
#: `claim` (prove the setup code of an unclaimed gateway), `transfer` (an owner-signed
#: ownership transfer statement; docs/provisioning.md), `punch` (a step of a direct-link
#: upgrade; docs/reach.md), and, for the owner, `auditcheckpoint` (the latest signed audit
#: checkpoint) and `auditrecords` (a page of the hash-chained audit log, optional input
#: {"after", "limit"}; docs/audit.md).
OPS: Final[Mapping[str, tuple[str, ...]]] = {
    "things": (),
    "td": ("thing",),
    "readproperty": ("thing", "name"),
    "writeproperty": ("thing", "name", "input"),
    "invokeaction": ("thing", "name"),
    "observeproperty": ("thing", "name"),
    "unobserveproperty": ("thing", "name"),
    "subscribeevent": ("thing", "name"),
    "unsubscribeevent": ("thing", "name"),
    "aclpush": ("input",),
    "claim": ("input",),
    "transfer": ("input",),
    "punch": ("input",),
    "auditcheckpoint": (),
    "auditrecords": (),
}

JTI_BYTES: Final = 16  # 128 random bits: collisions are negligible within a message lifetime
#: base64url of at least 128 bits (22 chars) and at most 512 bits (86 chars).
JTI_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22,86}")
MAX_NAME_LEN: Final = 256  # Thing and affordance names are short identifiers, not payloads
#: Optional `dlg` claim of an affordance request: the delegation chain the sender presents
#: (docs/acl.md "Delegation"): 1..4 compact JWS links, first link first. Checked here for shape
#: only; the gateway verifies every link (gateway.acl.dlg_verify).
DLG_OPS: Final = frozenset(
    {
        "things",
        "td",
        "readproperty",
        "writeproperty",
        "invokeaction",
        "observeproperty",
        "unobserveproperty",
        "subscribeevent",
        "unsubscribeevent",
    }
)
#: `auditrecords`: the input members, and the cap of `limit` (records in one page).
AUDIT_PAGE_INPUT: Final = frozenset({"after", "limit"})
MAX_AUDIT_PAGE: Final = 500
MAX_AUDIT_ID: Final = 2**63 - 1  # SQLite's largest row id
MAX_DLG_LINKS: Final = 4
MAX_DLG_LINK_BYTES: Final = 4096
#: Optional `ses` claim of a sealed request: a session-key offer (docs/protocol.md §8),
#: `{"v": 1, "k": base64url of 32 random bytes}`; only on requests a session may carry.
SESSION_VERSION: Final = 1
SESSION_SECRET_B64_LEN: Final = 43  # base64url of 32 bytes, unpadded
SESSION_OFFER_MEMBERS: Final = frozenset({"v", "k"})
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise MessageError(f"claim {name!r} is missing", code=codes.MISSING_CLAIM)
    return body[name]


def _bad(name: str, expected: str) -> MessageError:
    return MessageError(f"claim {name!r} must be {expected}", code=codes.BAD_FORMAT)


def _check_name(body: Mapping[str, Any], field: str) -> None:
    value = _require(body, field)
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LEN:
        raise _bad(field, f"a non-empty string of at most {MAX_NAME_LEN} characters")


def check_jti(value: Any, field: str = "jti") -> str:
    """Return VALUE if it is a well-formed message id, else raise `bad_format`."""
    if not isinstance(value, str) or not JTI_PATTERN.fullmatch(value):
        raise _bad(field, "base64url of 128 to 512 bits")
    return value


def _check_request(body: Mapping[str, Any]) -> None:
    op = _require(body, "op")
    if not isinstance(op, str) or op not in OPS:
        raise _bad("op", "one of " + ", ".join(OPS))
    for field in OPS[op]:
        if field == "input":
            _require(body, "input")
        else:
            _check_name(body, field)
    if op == "aclpush" and not isinstance(body["input"], str):
        raise _bad("input", "the compact JWS of the ACL for op aclpush")
    if op == "transfer" and not isinstance(body["input"], str):
        raise _bad("input", "the compact JWS of the transfer statement for op transfer")
    if op == "punch" and not isinstance(body["input"], dict):
        raise _bad("input", "an object (a hole-punch step) for op punch")
    if op == "auditrecords" and "input" in body:
        _check_audit_page(body["input"])
    if "dlg" in body:
        _check_dlg(op, body["dlg"])
    if "ses" in body:
        _check_offer(op, body["ses"])


def _check_offer(op: str, offer: Any) -> None:
    if op not in DLG_OPS:
        raise _bad("ses", "absent: a session-key offer goes with Thing operations only")
    expected = f'{{"v": {SESSION_VERSION}, "k": base64url of 32 bytes}}'
    if not isinstance(offer, dict) or set(offer) != SESSION_OFFER_MEMBERS:
        raise _bad("ses", expected)
    key, version = offer["k"], offer["v"]
    if (
        type(version) is not int  # 1.0 and true are not the version
        or version != SESSION_VERSION
        or not isinstance(key, str)
        or len(key) != SESSION_SECRET_B64_LEN
        or not _B64URL.fullmatch(key)
    ):
        raise _bad("ses", expected)
    try:  # canonical form only: the gateway derives its keys from exactly these bytes
        b64url_decode(key, "session secret")
    except Base64UrlError:
        raise _bad("ses", expected) from None


def _check_audit_page(page: Any) -> None:
    expected = (
        f'{{"after": ROW_ID >= 0, "limit": 1..{MAX_AUDIT_PAGE}}} (both optional) for op '
        "auditrecords"
    )
    if not isinstance(page, dict) or not set(page) <= AUDIT_PAGE_INPUT:
        raise _bad("input", expected)
    after, limit = page.get("after", 0), page.get("limit", MAX_AUDIT_PAGE)
    if not _is_int(after) or not 0 <= after <= MAX_AUDIT_ID:
        raise _bad("input", expected)
    if not _is_int(limit) or not 1 <= limit <= MAX_AUDIT_PAGE:
        raise _bad("input", expected)


def _check_dlg(op: str, dlg: Any) -> None:
    if op not in DLG_OPS:
        raise _bad("dlg", "absent: a delegation chain goes with Thing operations only")
    if (
        not isinstance(dlg, list)
        or not 1 <= len(dlg) <= MAX_DLG_LINKS
        or not all(isinstance(x, str) and 0 < len(x) <= MAX_DLG_LINK_BYTES for x in dlg)
    ):
        raise _bad("dlg", f"a list of 1..{MAX_DLG_LINKS} delegation links (compact JWS)")


def _check_reply(body: Mapping[str, Any]) -> None:
    check_jti(_require(body, "re"), "re")
    status = _require(body, "status")
    if not _is_int(status) or not 200 <= status <= 299:
        raise _bad("status", "an integer 200-299 (failures are typ error)")


def _check_event(body: Mapping[str, Any]) -> None:
    _check_name(body, "thing")
    _check_name(body, "name")
    seq = _require(body, "seq")
    if not _is_int(seq) or seq < 0:
        raise _bad("seq", "a non-negative integer")
    if "re" in body:
        check_jti(body["re"], "re")


def _check_error(body: Mapping[str, Any]) -> None:
    code = _require(body, "code")
    if not isinstance(code, str) or not code or len(code) > MAX_NAME_LEN:
        raise _bad("code", "a short non-empty string")
    if "re" in body:
        check_jti(body["re"], "re")
    if "message" in body and not isinstance(body["message"], str):
        raise _bad("message", "a string")
    status = body.get("status", 400)
    if not _is_int(status) or not 400 <= status <= 599:
        raise _bad("status", "an integer 400-599")


_BODY_CHECKS: Final = {
    REQUEST: _check_request,
    REPLY: _check_reply,
    EVENT: _check_event,
    ERROR: _check_error,
}


def check_type(typ: Any) -> str:
    """Return TYP if it is a known message type, else raise `bad_type`."""
    if not isinstance(typ, str) or typ not in TYPES:
        raise MessageError(
            f"message typ {typ!r} is not one of {sorted(TYPES)}", code=codes.BAD_TYPE
        )
    return typ


def check_body(typ: str, body: Mapping[str, Any]) -> None:
    """Check the body fields required by message type TYP (already checked by `check_type`)."""
    _BODY_CHECKS[typ](body)
