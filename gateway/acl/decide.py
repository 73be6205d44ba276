"""The access decision: who may do which operation on which affordance of which Thing, now.

Order of checks for a subject other than the owner (the first failing one is the reason):
no ACL installed -> revoked -> no grant for this subject -> grant not yet valid / grant
expired (nbf/exp) -> outside the grant's schedule -> [role admin: allowed] -> thing not
granted -> affordance not granted -> operation not granted.

An admin grant widens the Things, affordances and operations to everything; its validity
window and schedule still apply. Schedules are evaluated in the ACL's "tz" or, without
one, in the gateway's local time zone; a naive NOW is taken as gateway local time.
Reasons are fixed phrases: they tell the requester which rule failed without revealing
anything else about the ACL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.acl.model import IMPLIED_OPS, WILDCARD, Acl

RULE_ID_PREFIX = 8  # characters of the subject id in a rule name: enough to find it, short

NO_ACL = "no ACL installed"
REVOKED = "revoked"
NO_GRANT = "no grant for this subject"
NOT_YET_VALID = "grant not yet valid"
EXPIRED = "grant expired"
OFF_SCHEDULE = "outside the grant's schedule"
OP_DENIED = "operation not granted"
THING_DENIED = "thing not granted"
AFFORDANCE_DENIED = "affordance not granted"


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`: allowed or not, the rule that decided, and why."""

    allowed: bool
    rule: str
    reason: str
    code: str = "forbidden"  # the refusal's code (a delegation chain's own delegation_* code)


_OWNER = Decision(True, "owner", "owner")


def _deny(rule: str, reason: str) -> Decision:
    return Decision(False, rule, reason)


def decide(
    acl: Acl | None,
    owner_id: str | None,
    subject_id: str,
    thing: str,
    affordance: str,
    op: str,
    now: datetime,
) -> Decision:
    """Decide one request. Pure and cheap: a dict lookup and a few comparisons."""
    if owner_id is not None and subject_id == owner_id:
        return _OWNER
    if acl is None:
        return _deny("none", NO_ACL)
    if subject_id in acl.revoked:
        return _deny("revoked", REVOKED)
    hit = acl.by_subject.get(subject_id)
    if hit is None:
        return _deny("none", NO_GRANT)
    index, grant = hit
    rule = f"grant:{subject_id[:RULE_ID_PREFIX]}#{index}"
    if grant.nbf is not None or grant.exp is not None:
        ts = now.timestamp()
        if grant.nbf is not None and ts < grant.nbf:
            return _deny(rule, NOT_YET_VALID)
        if grant.exp is not None and ts >= grant.exp:
            return _deny(rule, EXPIRED)
    if grant.schedule is not None:
        local = now.astimezone(acl.zone)
        if not grant.schedule.allows(local.weekday(), local.hour * 60 + local.minute):
            return _deny(rule, OFF_SCHEDULE)
    if grant.role == "admin":
        return Decision(True, rule, "admin")
    if WILDCARD not in grant.things and thing not in grant.things:
        return _deny(rule, THING_DENIED)
    if WILDCARD not in grant.affordances and affordance not in grant.affordances:
        return _deny(rule, AFFORDANCE_DENIED)
    if IMPLIED_OPS.get(op, op) not in grant.ops:
        return _deny(rule, OP_DENIED)
    return Decision(True, rule, "granted")
