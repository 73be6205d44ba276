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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.acl import AclStore, Decision, decide
from gateway.audit import AuditLog, AuditRecord
from gateway.errors import AuditError, StreembitError
from gateway.requests.model import (
    ACL_OP,
    ACTION_OPS,
    EVENT_OPS,
    PROPERTY_OPS,
    THING_OPS,
    Outcome,
    Request,
)
from gateway.text import clean
from gateway.things import Thing
from gateway.things.bus import Kind, Subscription

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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
        is readable; `_dispatch` then returns only the readable ones."""
        owner = self.acl.owner
        args = (self.acl.current, owner.id if owner else None, req.subject, req.thing)
        op = ACL_OP.get(req.op, req.op)
        now = self.clock()
        if req.op == "readallproperties" and name is None:
            thing = self.things[req.thing]
            first: Decision | None = None
            for prop in thing.properties:
                d = decide(*args, prop, op, now)
                if d.allowed:
                    return d
                first = first or d
            if first is not None:
                return first
        return decide(*args, req.name if name is None else name, op, now)

    @staticmethod
    def _refusal(d: Decision) -> Outcome | None:
        return None if d.allowed else Outcome("forbidden", reason=d.reason, rule=d.rule)

    # ----------------------------------------------------------------- handle
    async def handle(self, req: Request) -> Outcome:
        """Decide, dispatch and audit a one-shot request (not observe/subscribe)."""
        self.counters["requests"] += 1
        refusal = self._locate(req)
        d = self.decision(req) if refusal is None else None
        if refusal is None and d is not None:
            refusal = self._refusal(d)
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
            outcome = Outcome(exc.code, reason=str(exc), rule=d.rule)
        return await self._finish(req, outcome, allowed=True)

    async def open_stream(self, req: Request) -> tuple[Outcome, Subscription | None]:
        """Decide and audit an observe/subscribe request; on success return its subscription."""
        self.counters["requests"] += 1
        refusal = self._locate(req)
        d = self.decision(req) if refusal is None else None
        if refusal is None and d is not None:
            refusal = self._refusal(d)
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
        """Audit an allowed administrative request (e.g. an ACL push) that bypassed `handle`."""
        await self._finish(req, Outcome("ok", rule="owner"), allowed=True, detail=detail)

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
            self.counters["denied" if outcome.code == "forbidden" else "errors"] += 1
        # the audit log strips control characters and caps every field itself
        rec = AuditRecord(
            ts=time.time(),
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
        try:
            await self.audit.append(rec)
        except AuditError as exc:
            log.error("audit write failed, refusing request: %s", exc)
            return Outcome("audit_unavailable", reason="audit log unavailable")
        return outcome
