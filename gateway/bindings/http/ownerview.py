"""Owner-only reads for the web app: the audit log and the installed ACL.

  GET /audit?subject=&thing=&allowed=&limit=   the newest audit records, filtered (JSON)
  GET /acl                                     the installed ACL: payload and its JWS (JSON)
  (and, mounted with them, GET /acl/mine: any key's own rights, rightsview.py)

Both take the owner's bearer token. A missing or refused token is 401, any other key 403
(`forbidden`, rule `owner-only`), a bad query 400 (`bad_request`): every refusal is audited
like any other. An allowed read runs through `RequestProcessor.admin` (fail closed while the
audit log fails) and is audited once (ops `readaudit`, `readacl`).

/audit answers {"records": [...newest first], "limit": N, "scanned": M | null}. With a Thing
filter the newest AUDIT_SCAN_ROWS records (of the subject, if given) are searched, so a Thing
used long ago may show fewer rows than LIMIT; `scanned` says how many were searched.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from gateway.acl import ACL_FILE, MAX_ACL_BYTES, read_acl_unverified
from gateway.audit import AuditLog
from gateway.codes import Code
from gateway.errors import AclError, BindingError
from gateway.requests import Outcome, Request
from gateway.requests.processor import OWNER_RULE

if TYPE_CHECKING:
    from gateway.bindings.http.server import HttpBinding

AUDIT_DEFAULT_LIMIT: Final = 100
AUDIT_MAX_LIMIT: Final = 500
AUDIT_SCAN_ROWS: Final = 5000  # newest records searched for a Thing filter (bounded work)
AUDIT_PARAMS: Final = frozenset({"subject", "thing", "allowed", "limit"})
SUBJECT_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # thumbprints, "system", "-"
THING_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
NO_STORE: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class AuditQuery:
    subject: str | None
    thing: str | None
    allowed: bool | None
    limit: int


def parse_audit_query(query: Mapping[str, str]) -> AuditQuery | str:
    """The query of GET /audit, or why it is refused."""
    unknown = sorted(k for k in query if k not in AUDIT_PARAMS)
    if unknown:
        return f"unknown parameter {unknown[0][:32]!r}; known: {', '.join(sorted(AUDIT_PARAMS))}"
    if len(query) != len(set(query)):
        return "a parameter is given twice"
    subject = query.get("subject") or None
    if subject is not None and not SUBJECT_RE.match(subject):
        return "subject must be a key id (letters, digits, '-', '_', at most 128 characters)"
    thing = query.get("thing") or None
    if thing is not None and not THING_RE.match(thing):
        return "thing must be a Thing name (letters, digits, '-', at most 128 characters)"
    allowed_s = query.get("allowed", "")
    if allowed_s not in ("", "true", "false"):
        return "allowed must be true or false"
    allowed = None if not allowed_s else allowed_s == "true"
    limit_s = query.get("limit", "")
    if not limit_s:
        limit = AUDIT_DEFAULT_LIMIT
    elif len(limit_s) > 4 or not limit_s.isdigit() or not 1 <= int(limit_s) <= AUDIT_MAX_LIMIT:
        return f"limit must be a whole number from 1 to {AUDIT_MAX_LIMIT}"
    else:
        limit = int(limit_s)
    return AuditQuery(subject, thing, allowed, limit)


def run_audit_query(log: AuditLog, q: AuditQuery) -> dict[str, Any]:
    """The answer of GET /audit (blocking: run it in a worker thread)."""
    if q.thing is None:
        recs = log.query(q.limit, q.subject, q.allowed)
        return {"records": [r.as_dict() for r in recs], "limit": q.limit, "scanned": None}
    recs = log.query(AUDIT_SCAN_ROWS, q.subject, q.allowed)
    hits = [r.as_dict() for r in recs if r.thing == q.thing][: q.limit]
    return {"records": hits, "limit": q.limit, "scanned": len(recs)}


def read_jws(state_dir: Path, version: int) -> str | None:
    """The installed acl.jws if it is VERSION (the one the gateway verified), else None."""
    try:
        with (state_dir / ACL_FILE).open("rb") as fh:
            text = fh.read(MAX_ACL_BYTES + 1).decode("utf-8").strip()
        if len(text) > MAX_ACL_BYTES or read_acl_unverified(text).version != version:
            return None
    except (OSError, UnicodeDecodeError, AclError):
        return None
    return text


class OwnerViews:
    def __init__(self, binding: HttpBinding) -> None:
        self.binding = binding
        binding.app.router.add_get("/audit", self.audit)
        binding.app.router.add_get("/acl", self.acl)

    async def _request(self, request: web.Request, op: str, what: str) -> Request | web.Response:
        """The authenticated request, or the audited refusal (401) as a response; the owner
        check is `RequestProcessor.admin`'s (403)."""
        from gateway.bindings.http.server import _error

        who = await self.binding._principal(request, op, what)
        if isinstance(who, Outcome):
            return _error(who)
        return Request(who.id, op, "", what, None, "http", who.jti)

    @staticmethod
    def _answer(outcome: Outcome) -> web.Response:
        from gateway.bindings.http.server import _error

        if not outcome.ok:
            return _error(outcome)
        return web.json_response(outcome.output, headers=NO_STORE)

    async def audit(self, request: web.Request) -> web.Response:
        req = await self._request(request, "readaudit", "audit")
        if isinstance(req, web.Response):
            return req
        processor = self.binding.processor

        async def view() -> tuple[Any, str]:
            q = parse_audit_query(request.query)  # after the owner check: 403 comes first
            if isinstance(q, str):
                raise BindingError(q, code=Code.BAD_REQUEST)
            out = await asyncio.to_thread(run_audit_query, processor.audit, q)
            shown = f"subject={q.subject or '*'} thing={q.thing or '*'}"
            return out, f"audit viewed ({shown}, {len(out['records'])} records)"

        outcome = await processor.admin(req, view, rule=OWNER_RULE, owner_only="read the audit")
        return self._answer(outcome)

    async def acl(self, request: web.Request) -> web.Response:
        req = await self._request(request, "readacl", "acl")
        if isinstance(req, web.Response):
            return req
        store = self.binding.acl

        async def view() -> tuple[Any, str]:
            current = store.current
            if current is None:
                return {"version": None, "acl": None, "jws": None}, "no ACL installed"
            jws = await asyncio.to_thread(read_jws, store.state_dir, current.version)
            out = {"version": current.version, "acl": current.to_json(), "jws": jws}
            return out, f"ACL version {current.version} read"

        processor = self.binding.processor
        return self._answer(
            await processor.admin(req, view, rule=OWNER_RULE, owner_only="read the acl")
        )


def mount(binding: HttpBinding) -> OwnerViews:
    """GET /audit and GET /acl (owner only), and GET /acl/mine (any key: its own rights)."""
    from gateway.bindings.http.rightsview import RightsView

    RightsView(binding)
    return OwnerViews(binding)
