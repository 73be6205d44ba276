"""The owner's audit operations of the P2P binding (docs/audit.md §6, docs/protocol.md):

- auditcheckpoint: the newest signed audit checkpoint, {"checkpoint": "<compact JWS>" | null},
  as `GET /audit/checkpoint` (gateway/bindings/http/auditcheck.py);
- auditrecords: a page of the hash-chained records after row id `after` (gateway/audit/remote.py),
  everything a peer needs to recompute the chain (`streembit-peer audit verify`).

Owner only: any other key is refused `forbidden` (rule `owner-only`). Both run through
`RequestProcessor.admin` (fail closed while the audit log fails) and every request, allowed or
refused, is audited once. The input's shape was checked when the message was opened
(gateway/messages/claims.py). The SQLite and file reads run in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from gateway.audit.remote import MAX_PAGE_RECORDS, read_page
from gateway.bindings.p2p.admission import BINDING
from gateway.peer import wire
from gateway.requests import Request
from gateway.requests.processor import OWNER_RULE, AdminAction

if TYPE_CHECKING:
    from gateway.bindings.p2p.session import PeerSession
    from gateway.messages import Opened

CHECKPOINT_OP: Final = "auditcheckpoint"
RECORDS_OP: Final = "auditrecords"
#: The audit record's affordance of both ops (as the HTTP binding's owner views).
WHAT: Final = "audit"


async def _owner_only(session: PeerSession, msg: Opened, action: AdminAction) -> None:
    processor = session.ctx.processor
    req = Request(msg.sender.id, msg.claims["op"], "", WHAT, None, BINDING, msg.jti)
    outcome = await processor.admin(req, action, rule=OWNER_RULE, owner_only="read the audit log")
    await session.answer(msg, outcome, wire.OK)


async def checkpoint(session: PeerSession, msg: Opened) -> None:
    """`auditcheckpoint`: {"checkpoint": the newest signed checkpoint or null}."""
    audit = session.ctx.processor.audit

    async def view() -> tuple[Any, str]:
        jws = await asyncio.to_thread(audit.latest_checkpoint)
        return {"checkpoint": jws}, "audit checkpoint read"

    await _owner_only(session, msg, view)


async def records(session: PeerSession, msg: Opened) -> None:
    """`auditrecords`: the page of records after `after` (at most `limit`)."""
    audit = session.ctx.processor.audit
    page: dict[str, Any] = msg.claims.get("input") or {}  # shape checked by open_sealed
    after, limit = int(page.get("after", 0)), int(page.get("limit", MAX_PAGE_RECORDS))

    async def view() -> tuple[Any, str]:
        out = await asyncio.to_thread(read_page, audit.path, after, limit)
        return out, f"audit records after {after} read ({len(out['records'])})"

    await _owner_only(session, msg, view)
