"""RequestProcessor: the single place where a request is decided, dispatched and audited.

Order for every request:
1. the binding has authenticated the subject (token or sealed message) and built a `Request`;
2. the Thing and affordance must exist and the op must fit the affordance (else 404 / 405);
3. the ACL decides (owner, grant, deny reason);
4. an allowed request is dispatched to the Thing; its result (value or refusal) is the outcome;
5. ONE audit record per request (who, what, allow or deny, which rule, outcome) is committed
   before the reply leaves. While the audit log is known to be failing, requests are refused
   (fail closed) and not attempted; if the write fails only after an action ran, the reply is
   503 audit_unavailable although the action happened (the failure is logged).

Administrative requests (an ACL install, a claim, a transfer) take `admin`: the owner check
(only the pinned owner may change the ACL: there are no admin keys), the same fail-closed rule
and one audit record (gateway.requests.records, the only maker of audit records).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.acl import AclStore, Decision, decide
from gateway.acl.dlg_verify import decide_chain
from gateway.acl.install import TRANSIENT_OUTCOMES
from gateway.audit import AuditLog
from gateway.codes import Code
from gateway.errors import AclError, AuditError, StreembitError
from gateway.requests.delegations import Delegations
from gateway.requests.model import (
    ACL_OP,
    ACTION_OPS,
    EVENT_OPS,
    PROPERTY_OPS,
    THING_OPS,
    Outcome,
    Request,
)
from gateway.requests.records import request_record
from gateway.text import clean
from gateway.things import Thing
from gateway.things.bus import Kind, Subscription

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: An administrative action: returns (reply output, audit detail) or raises StreembitError.
AdminAction = Callable[[], Awaitable[tuple[Any, str]]]
#: The audit rule of an allowed ACL install.
OWNER_RULE = "owner"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RequestProcessor:
    def __init__(
        self,
        things: Mapping[str, Thing],
        acl: AclStore,
        audit: AuditLog,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.things = things
        self.acl = acl
        self.audit = audit
        self.clock = clock
        self.counters: dict[str, int] = {"requests": 0, "denied": 0, "errors": 0}
        self.delegations = Delegations(acl.gateway_id, acl.state_dir)

    # ------------------------------------------------------------------ checks
    def _locate(self, req: Request) -> Outcome | None:
        """None when the Thing/affordance/op combination exists, else the refusal."""
        thing = self.things.get(req.thing)
        if thing is None:
            return Outcome("unknown_thing", reason=f"no Thing named {clean(req.thing, 64)!r}")
        if req.op in THING_OPS:
            return None
        if req.op in PROPERTY_OPS:
            table: Mapping[str, Any] = thing.properties
        elif req.op in ACTION_OPS:
            table = thing.actions
        elif req.op in EVENT_OPS:
            table = thing.events
        else:
            return Outcome("unsupported_op", reason=f"unknown operation {clean(req.op, 32)!r}")
        if req.name not in table:
            return Outcome(
                "unknown_affordance",
                reason=f"{req.thing} has no such affordance {clean(req.name, 64)!r}",
            )
        spec = table[req.name]
        if req.op == "writeproperty" and getattr(spec, "read_only", False):
            return Outcome("read_only", reason=f"property {req.name!r} is read-only")
        if req.op in ("observeproperty", "unobserveproperty") and not getattr(
            spec, "observable", False
        ):
            return Outcome("unsupported_op", reason=f"property {req.name!r} is not observable")
        return None

    def decision(self, req: Request, name: str | None = None) -> Decision:
        """The ACL decision (no audit). `readallproperties` is allowed when at least one property
        is readable; `_dispatch` then returns only the readable ones. A request with a
        delegation chain is decided by the chain (verified against the current ACL) alone."""
        now = self.clock()
        decide_one: Callable[[str], Decision]
        if req.chain:
            verified = self.delegations.verify(req, self.acl.current, now)
            if isinstance(verified, Decision):
                return verified
            chain, acl = verified
            op = ACL_OP.get(req.op, req.op)

            def decide_one(prop: str) -> Decision:
                return decide_chain(chain, acl, req.thing, prop, op, now)

        else:
            owner = self.acl.owner
            args = (self.acl.current, owner.id if owner else None, req.subject, req.thing)
            op = ACL_OP.get(req.op, req.op)

            def decide_one(prop: str) -> Decision:
                return decide(*args, prop, op, now)

        if req.op == "readallproperties" and name is None:
            thing = self.things[req.thing]
            first: Decision | None = None
            for prop in thing.properties:
                d = decide_one(prop)
                if d.allowed:
                    return d
                first = first or d
            if first is not None:
                return first
        return decide_one(req.name if name is None else name)

    @staticmethod
    def _refusal(d: Decision) -> Outcome | None:
        return None if d.allowed else Outcome(d.code, reason=d.reason, rule=d.rule)

    # ----------------------------------------------------------------- handle
    async def handle(self, req: Request) -> Outcome:
        """Decide, dispatch and audit a one-shot request (not observe/subscribe)."""
        self.counters["requests"] += 1
        refusal = self._locate(req)
        d = self.decision(req) if refusal is None else None
        if refusal is None and d is not None:
            refusal = self._refusal(d)
        if refusal is None and req.chain:
            refusal = await self.delegations.use(req, self.acl.current, self.clock())
        if refusal is not None or d is None:
            return await self._finish(req, refusal or Outcome("forbidden"), allowed=False)
        if not self.audit.healthy and not await self.audit.recover():
            return await self._finish(
                req, Outcome("audit_unavailable", reason="audit log unavailable"), allowed=False
            )
        try:
            output = await self._dispatch(req)
            outcome = Outcome("ok", output=output, rule=d.rule)
        except StreembitError as exc:
            outcome = Outcome.of_error(exc, rule=d.rule)
        return await self._finish(req, outcome, allowed=True)

    async def open_stream(self, req: Request) -> tuple[Outcome, Subscription | None]:
        """Decide and audit an observe/subscribe request; on success return its subscription."""
        self.counters["requests"] += 1
        refusal = self._locate(req)
        d = self.decision(req) if refusal is None else None
        if refusal is None and d is not None:
            refusal = self._refusal(d)
        if refusal is None and req.chain:
            refusal = await self.delegations.use(req, self.acl.current, self.clock())
        if refusal is not None or d is None:
            return await self._finish(req, refusal or Outcome("forbidden"), allowed=False), None
        thing = self.things[req.thing]
        kind: Kind = "property" if req.op == "observeproperty" else "event"
        sub = thing.bus.subscribe(kind, req.name)
        outcome = await self._finish(req, Outcome("ok", rule=d.rule), allowed=True)
        if not outcome.ok:
            sub.close()
            return outcome, None
        return outcome, sub

    async def still_allowed(self, req: Request) -> bool:
        """Re-check the ACL before each event is sent; a revoked stream is audited once."""
        refusal = self._refusal(self.decision(req))
        if refusal is None:
            return True
        await self._finish(req, refusal, allowed=False, detail="stream closed")
        return False

    async def reject(self, req: Request, outcome: Outcome) -> Outcome:
        """Audit a request refused by a binding before it could be decided (bad token, bad JSON)."""
        self.counters["requests"] += 1
        return await self._finish(req, outcome, allowed=False)

    async def audit_event(self, req: Request, detail: str) -> None:
        """Audit an allowed read that bypassed `handle` (a status page view)."""
        await self._finish(req, Outcome(Code.OK, rule=OWNER_RULE), allowed=True, detail=detail)

    # ------------------------------------------------------------------ admin
    def is_owner(self, subject: str) -> bool:
        """SUBJECT is the pinned owner (False while the gateway has none)."""
        owner = self.acl.owner
        return owner is not None and subject == owner.id

    async def admin(
        self, req: Request, action: AdminAction, *, rule: str, owner_only: str | None = None
    ) -> Outcome:
        """Run an administrative request: the owner check (if OWNER_ONLY, what only the owner
        may do: "change the ACL"; without it ACTION decides who may: a claim while unowned, a
        transfer by the current or the new owner), fail closed while the audit log fails,
        ACTION, then ONE audit record (allowed with RULE, or the refusal with ACTION's error
        code and message)."""
        self.counters["requests"] += 1
        if owner_only is not None and not self.is_owner(req.subject):
            reason = f"only the owner can {owner_only}"
            refusal = Outcome(Code.FORBIDDEN, reason=reason, rule="owner-only")
            return await self._finish(req, refusal, allowed=False)
        if not self.audit.healthy and not await self.audit.recover():
            refusal = Outcome(Code.AUDIT_UNAVAILABLE, reason="audit log unavailable")
            return await self._finish(req, refusal, allowed=False)
        try:
            output, detail = await action()
        except StreembitError as exc:
            return await self._finish(req, Outcome.of_error(exc), allowed=False)
        done = await self._finish(
            req, Outcome(Code.OK, output, rule=rule), allowed=True, detail=detail
        )
        if done.code == Code.AUDIT_UNAVAILABLE:
            return Outcome(Code.AUDIT_UNAVAILABLE, reason="done, but the audit log is unavailable")
        return done

    async def install_acl(self, req: Request, read: Callable[[], Awaitable[str]]) -> Outcome:
        """Install the ACL that READ returns (owner only; READ runs after the owner check and
        may refuse, e.g. `too_large`). Output: {"version", "grants"}."""

        async def install() -> tuple[Any, str]:
            text = await read()
            try:  # the install lock and fsyncs: in a worker thread, never in the event loop
                acl = await self.acl.install_async(text.strip())
            except AclError as exc:
                code = TRANSIENT_OUTCOMES.get(exc.code, Code.BAD_REQUEST)  # busy, disk: 503
                raise AclError(f"{exc.code}: {exc}", code=code) from None
            output = {"version": acl.version, "grants": len(acl.grants)}
            return output, f"ACL version {acl.version} installed"

        return await self.admin(req, install, rule=OWNER_RULE, owner_only="change the ACL")

    async def _dispatch(self, req: Request) -> Any:
        thing = self.things[req.thing]
        if req.op == "readproperty":
            return await thing.read_property(req.name)
        if req.op == "writeproperty":
            await thing.write_property(req.name, req.input, req.subject)
            return None
        if req.op == "invokeaction":
            return await thing.invoke_action(req.name, req.input, req.subject)
        if req.op == "readallproperties":
            values: dict[str, Any] = {}
            for name in thing.properties:
                if not self.decision(req, name).allowed:
                    continue
                try:
                    values[name] = await thing.read_property(name)
                except StreembitError:
                    values[name] = None
            return values
        raise StreembitError(f"operation {req.op} is not one-shot", code="unsupported_op")

    async def _finish(
        self, req: Request, outcome: Outcome, *, allowed: bool, detail: str = ""
    ) -> Outcome:
        if not outcome.ok:
            denied = outcome.code == "forbidden" or outcome.code.startswith("delegation_")
            self.counters["denied" if denied else "errors"] += 1
        rec = request_record(req, outcome, allowed=allowed, detail=detail)
        try:
            await self.audit.append(rec)
        except AuditError as exc:
            log.error("audit write failed, refusing request: %s", exc)
            return Outcome("audit_unavailable", reason="audit log unavailable")
        return outcome
