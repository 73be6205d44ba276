"""The one factory of audit records: requests of every binding, system events, local commands.

The audit log strips control characters and caps every field itself, so the values here are
taken as they come (many from peers).
"""

from __future__ import annotations

import time
from typing import Final

from gateway.audit import AuditRecord
from gateway.codes import Code
from gateway.requests.model import Outcome, Request

SYSTEM: Final = "system"  # subject and rule of the gateway's own events
LOCAL: Final = "local"  # binding of events on the device itself (the gateway, a command)


def audit_record(
    *,
    subject: str,
    binding: str,
    op: str,
    allowed: bool,
    rule: str,
    reason: str,
    thing: str = "",
    affordance: str = "",
    detail: str = "",
    request_id: str = "",
) -> AuditRecord:
    """An audit record stamped now."""
    return AuditRecord(
        ts=time.time(),
        subject=subject,
        binding=binding,
        op=op,
        thing=thing,
        affordance=affordance,
        allowed=allowed,
        rule=rule,
        reason=reason,
        detail=detail,
        request_id=request_id,
    )


def request_record(
    req: Request, outcome: Outcome, *, allowed: bool, detail: str = ""
) -> AuditRecord:
    """The record of REQ: its reason is the outcome's code, with the refusal's reason."""
    return audit_record(
        subject=req.subject,
        binding=req.binding,
        op=req.op,
        thing=req.thing,
        affordance=req.name,
        allowed=allowed,
        rule=outcome.rule,
        reason=outcome.code if outcome.ok else f"{outcome.code}: {outcome.reason}",
        detail=detail,
        request_id=req.request_id,
    )


def system_record(
    op: str, detail: str, *, thing: str = "", affordance: str = "", reason: str = Code.OK
) -> AuditRecord:
    """The record of an event of the gateway itself (start, stop, a fault, an ACL reload)."""
    return audit_record(
        subject=SYSTEM,
        binding=LOCAL,
        op=op,
        thing=thing,
        affordance=affordance,
        allowed=True,
        rule=SYSTEM,
        reason=reason,
        detail=detail,
    )
