"""Turning a frame into something to act on, or into a refusal with the most useful answer.

A refused message is answered with a message sealed to its sender only when the sender is
verified. `open_sealed` refuses without saying who sent the message, so for the refusals that
can only happen after the signature was verified (time window, replay) the frame is opened once
more without the time and replay checks, purely to learn the verified sender and the request's
jti for the sealed error: nothing in it is acted on. Every other refusal gets a plain JSON error
(`gateway.peer.wire.plain_error`).
"""

from __future__ import annotations

from typing import Any, Final

from gateway.bindings.p2p.keyring import Keyring
from gateway.codes import Answer, Code, Scope
from gateway.errors import MessageError
from gateway.identity import PublicIdentity
from gateway.messages import Opened
from gateway.requests import Request
from gateway.text import clean

BINDING: Final = "p2p"
#: The audit op of a frame refused before its operation could be read.
UNOPENED_OP: Final = "message"
#: Refusals raised only after the signature and every other check passed (time window,
#: replay): the registry's message codes answered sealed.
_AFTER_SIGNATURE: Final = frozenset(
    c for c in Code.in_scope(Scope.MESSAGE) if c.answer is Answer.SEALED
)
#: Clock leeway of the second opening: wide enough to disable the time checks.
_NO_TIME_CHECK_S: Final = 100 * 365 * 86_400


def verified_origin(frame: str, exc: MessageError, keyring: Keyring) -> Opened | None:
    """The verified sender and claims of a message refused after its signature (or, for a
    session frame, after its decryption); else None.

    The result must only be used to address and audit the refusal.
    """
    if exc.code not in _AFTER_SIGNATURE:
        return None
    try:
        return keyring.open(frame, None, leeway=_NO_TIME_CHECK_S)
    except MessageError:
        return None


def _name(claims: dict[str, Any], key: str) -> str:
    value = claims.get(key, "")
    return value if isinstance(value, str) else ""


def request_of(msg: Opened) -> Request:
    """The transport-neutral request of a verified request message."""
    claims = msg.claims
    op = _name(claims, "op") or UNOPENED_OP
    if op == "aclpush":  # the ACL text itself is not copied into the request (or the audit)
        return Request(msg.sender.id, op, "", "acl", None, BINDING, msg.jti)
    if op in ("claim", "transfer"):  # nor a claim proof or a transfer statement
        return Request(msg.sender.id, op, "", "owner", None, BINDING, msg.jti)
    dlg = claims.get("dlg")  # shape checked by open_sealed; links verified by the processor
    return Request(
        subject=msg.sender.id,
        op=op,
        thing=_name(claims, "thing"),
        name=_name(claims, "name"),
        input=claims.get("input"),
        binding=BINDING,
        request_id=msg.jti,
        chain=tuple(dlg) if isinstance(dlg, list) else (),
    )


def unopened_request(sender: PublicIdentity | None = None) -> Request:
    """The audit request of a frame refused before its operation could be acted on: its
    subject is SENDER when that was authenticated (`MessageError.sender`), else "-"."""
    subject = "-" if sender is None else sender.id
    return Request(subject=subject, op=UNOPENED_OP, thing="", binding=BINDING)


def reason_of(exc: Exception) -> str:
    """A refusal reason safe to log, audit and send back."""
    return clean(str(exc), 200)
