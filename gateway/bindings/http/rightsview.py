"""What the caller's own key may do now: GET /acl/mine (any authenticated key).

  {"subject": ID, "role": "owner" | "admin" | "user" | null,
   "grant": {things, affordances, ops, nbf?, exp?, schedule?, role} | null,   (no key material)
   "things": {THING: {"type": "lock" | ..., "title": TEXT,
                      "properties": {NAME: [op, ...]}, "actions": {...}, "events": {...}}}}

`things` holds only what the ACL allows this very minute (validity window and schedule
included), each affordance with the operations it offers and the key may use: the web app
makes only those actionable. Nothing about other keys is told. The read is audited once
(op `readrights`, rule `self`) and fails closed while the audit log fails, like every request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from gateway.requests import Outcome, Request

if TYPE_CHECKING:
    from gateway.bindings.http.server import HttpBinding
    from gateway.things import Thing

SELF_RULE: Final = "self"
NO_STORE: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def offered_ops(thing: Thing) -> dict[str, dict[str, list[str]]]:
    """Per affordance kind and name, the operations the Thing offers."""
    props: dict[str, list[str]] = {}
    for name, spec in thing.properties.items():
        ops = ["readproperty"]
        if not getattr(spec, "read_only", False):
            ops.append("writeproperty")
        if getattr(spec, "observable", False):
            ops.append("observeproperty")
        props[name] = ops
    return {
        "properties": props,
        "actions": {name: ["invokeaction"] for name in thing.actions},
        "events": {name: ["subscribeevent"] for name in thing.events},
    }


class RightsView:
    def __init__(self, binding: HttpBinding) -> None:
        self.binding = binding
        binding.app.router.add_get("/acl/mine", self.mine)

    def _allowed(self, subject: str) -> dict[str, Any]:
        processor = self.binding.processor
        out: dict[str, Any] = {}
        for tname, thing in processor.things.items():
            kinds: dict[str, dict[str, list[str]]] = {}
            for kind, table in offered_ops(thing).items():
                allowed = {
                    name: [
                        op
                        for op in ops
                        if processor.decision(Request(subject, op, tname, name)).allowed
                    ]
                    for name, ops in table.items()
                }
                kinds[kind] = {name: ops for name, ops in allowed.items() if ops}
            if any(kinds.values()):
                out[tname] = {"type": thing.type_name, "title": thing.title, **kinds}
        return out

    def _role(self, subject: str) -> tuple[str | None, dict[str, Any] | None]:
        processor = self.binding.processor
        if processor.is_owner(subject):
            return "owner", None
        acl = processor.acl.current
        grant = acl.grant_for(subject) if acl else None
        if grant is None:
            return None, None
        public = grant.to_json()
        public.pop("jwk", None)
        public.pop("sub", None)
        return grant.role, public

    async def mine(self, request: web.Request) -> web.Response:
        from gateway.bindings.http.server import _error

        who = await self.binding._principal(request, "readrights", "acl")
        if isinstance(who, Outcome):
            return _error(who)
        req = Request(who.id, "readrights", "", "acl", None, "http", who.jti)

        async def view() -> tuple[Any, str]:
            role, grant = self._role(who.id)
            things = self._allowed(who.id)
            out = {"subject": who.id, "role": role, "grant": grant, "things": things}
            return out, f"own rights read ({len(things)} Things usable now)"

        outcome = await self.binding.processor.admin(req, view, rule=SELF_RULE)
        if not outcome.ok:
            return _error(outcome)
        return web.json_response(outcome.output, headers=NO_STORE)
