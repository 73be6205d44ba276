"""GET /audit/checkpoint: the newest signed audit checkpoint, for the owner (docs/audit.md).

Answers {"checkpoint": "<compact JWS>" | null} (null: none signed yet). The owner keeps it and
later runs `streembit-gateway audit verify --checkpoint FILE` (the saved JSON answer or the bare
JWS): a database or state folder replaced by an older copy no longer matches it. Owner-only,
refused and audited like GET /audit (ownerview.py); an allowed read is audited once
(op `readauditcheckpoint`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.bindings.http.ownerview import NO_STORE
from gateway.requests import Outcome, Request
from gateway.requests.processor import OWNER_RULE

if TYPE_CHECKING:
    from gateway.bindings.http.server import HttpBinding

OP = "readauditcheckpoint"


class AuditCheckpointView:
    def __init__(self, binding: HttpBinding) -> None:
        self.binding = binding
        binding.app.router.add_get("/audit/checkpoint", self.get)

    async def get(self, request: web.Request) -> web.Response:
        from gateway.bindings.http.server import _error

        processor = self.binding.processor
        who = await self.binding._principal(request, OP, "audit")
        if isinstance(who, Outcome):
            return _error(who)
        req = Request(who.id, OP, "", "audit", None, "http", who.jti)

        async def view() -> tuple[Any, str]:
            jws = await asyncio.to_thread(processor.audit.latest_checkpoint)
            return {"checkpoint": jws}, "audit checkpoint read"

        owner_only = "read the audit checkpoint"
        outcome = await processor.admin(req, view, rule=OWNER_RULE, owner_only=owner_only)
        if not outcome.ok:
            return _error(outcome)
        return web.json_response(outcome.output, headers=NO_STORE)


def mount(binding: HttpBinding) -> AuditCheckpointView:
    """GET /audit/checkpoint (owner only)."""
    return AuditCheckpointView(binding)
