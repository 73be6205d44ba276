"""The status page, its JSON, and the Prometheus metrics of the HTTP binding.

  GET /status              the page (static HTML; no data in it, no auth)
  GET /status/{file}       its script and style sheet
  GET /status/id           {"id": gateway id}: the audience a viewer's token must name (public)
  GET /status.json         the status: bearer token of the owner or of a granted key (401/403)
  GET /metrics             Prometheus text; who may read it: `[gateway.http] metrics`

What a viewer sees (read-only; nothing on the page changes anything):
  the owner, and admins inside their grant's validity window: everything; the gateway's id,
  name, owner, version, addresses; every Thing with the live value of each property; the
  newest audit records; the QR codes.
  any other granted key: the same header, only the properties its grant lets it read, and
  only its own audit records (a cleaner does not see who else came in).
Each allowed view is audited once per token (op "readstatus"); refusals are audited like every
other refused request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from gateway.auth import Principal
from gateway.errors import StreembitError
from gateway.requests import Outcome, Request

if TYPE_CHECKING:
    from gateway.bindings.http.server import HttpBinding
    from gateway.ops.metrics import Family

log = logging.getLogger(__name__)

STATUS_AUDIT_ROWS: Final = 25  # newest audit records on the page
STATUS_READ_TIMEOUT_S: Final = 1.0  # one property read; a stuck driver shows as "timeout"
SEEN_TOKENS: Final = 1024  # jtis of tokens whose view was already audited (bounded memory)
STATIC_FILES: Final = {
    "status.js": "application/javascript",
    "status.css": "text/css",
}
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class OpsSource(Protocol):
    """What the gateway tells the status page and /metrics (gateway/ops/view.py)."""

    @property
    def gateway_id(self) -> str: ...

    @property
    def metrics_mode(self) -> str: ...

    def info(self) -> dict[str, Any]: ...

    def qr_codes(self) -> list[dict[str, str]]: ...

    def metric_families(self) -> list[Family]: ...


def _static(name: str) -> bytes:
    return resources.files("gateway.bindings.http").joinpath("static", name).read_bytes()


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StatusRoutes:
    def __init__(self, binding: HttpBinding, source: OpsSource) -> None:
        self.binding = binding
        self.source = source
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._files = {name: _static(name) for name in STATIC_FILES}
        self._page = _static("status.html")
        r = binding.app.router
        r.add_get("/status", self.page)
        r.add_get("/status/id", self.gateway_id)
        r.add_get("/status/{file}", self.static)
        r.add_get("/status.json", self.status)
        r.add_get("/metrics", self.metrics)

    # ------------------------------------------------------------------ static
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._page, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
        )

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in self._files:
            raise web.HTTPNotFound()
        return web.Response(
            body=self._files[name],
            content_type=STATIC_FILES[name],
            charset="utf-8",
            headers=SECURITY_HEADERS,
        )

    async def gateway_id(self, request: web.Request) -> web.Response:
        return web.json_response({"id": self.source.gateway_id}, headers=SECURITY_HEADERS)

    # ------------------------------------------------------------------ status
    async def _viewer(self, request: web.Request, op: str) -> Principal | web.Response:
        from gateway.bindings.http.server import _error

        who = await self.binding._principal(request, op, "status")
        if isinstance(who, Outcome):
            return _error(who)
        return who

    async def status(self, request: web.Request) -> web.Response:
        who = await self._viewer(request, "readstatus")
        if isinstance(who, web.Response):
            return who
        processor = self.binding.processor
        owner = processor.acl.owner
        role, full = self._role(who.id, owner.id if owner else None)
        req = Request(who.id, "readstatus", "", "status", None, "http", who.jti)
        if who.jti not in self._seen:
            try:
                await processor.audit_event(req, f"status page viewed ({role})")
            except StreembitError as exc:  # audit_event never raises today; stay closed anyway
                log.error("status view not audited: %s", exc)
                return web.json_response({"error": "audit_unavailable"}, status=503)
            if not processor.audit.healthy:
                return web.json_response(
                    {"error": "audit_unavailable", "reason": "audit log unavailable"}, status=503
                )
            self._seen[who.jti] = None
            while len(self._seen) > SEEN_TOKENS:
                self._seen.popitem(last=False)
        body = {
            "gateway": self.source.info(),
            "viewer": {"id": who.id, "role": role, "scope": "full" if full else "limited"},
            "things": await self._things(who.id, full),
            "audit": await self._audit(None if full else who.id),
            "qr": self.source.qr_codes(),
            "counters": dict(processor.counters),
        }
        return web.json_response(body, headers=SECURITY_HEADERS)

    def _role(self, subject: str, owner: str | None) -> tuple[str, bool]:
        if subject == owner:
            return "owner", True
        acl = self.binding.processor.acl.current
        grant = acl.grant_for(subject) if acl else None
        if grant is not None and grant.role == "admin":
            probe = Request(subject, "readproperty", "*", "*")
            d = self.binding.processor.decision(probe)
            return "admin", d.allowed
        return "user", False

    async def _things(self, subject: str, full: bool) -> list[dict[str, Any]]:
        processor = self.binding.processor
        tds = self.binding.tds()
        out: list[dict[str, Any]] = []
        for name, thing in processor.things.items():
            props: dict[str, Any] = {}
            for pname in thing.properties:
                if not full:
                    probe = Request(subject, "readproperty", name, pname)
                    if not processor.decision(probe).allowed:
                        continue
                props[pname] = await self._read(thing.read_property(pname))
            td = tds.get(name, {})
            out.append(
                {
                    "name": name,
                    "title": thing.title,
                    "type": thing.type_name,
                    "id": td.get("id"),
                    "properties": props,
                    "subscribers": thing.bus.subscriber_count,
                    "faults": thing.bus.faults,
                }
            )
        return out

    @staticmethod
    async def _read(coro: Any) -> dict[str, Any]:
        try:
            return {"value": await asyncio.wait_for(coro, STATUS_READ_TIMEOUT_S)}
        except TimeoutError:
            return {"error": "timeout"}
        except StreembitError as exc:
            return {"error": exc.code}

    async def _audit(self, subject: str | None) -> list[dict[str, Any]]:
        audit = self.binding.processor.audit
        try:
            recs = await asyncio.to_thread(audit.query, STATUS_AUDIT_ROWS, subject)
        except StreembitError as exc:
            log.error("status page: %s", exc)
            return []
        return [r.as_dict() for r in recs]

    # ----------------------------------------------------------------- metrics
    async def metrics(self, request: web.Request) -> web.Response:
        from gateway.ops.metrics import CONTENT_TYPE, render

        mode = self.source.metrics_mode
        if mode == "off":
            raise web.HTTPNotFound()
        if mode == "token" or not _is_loopback(request.remote):
            who = await self._viewer(request, "readmetrics")
            if isinstance(who, web.Response):
                return who
        text = render(self.source.metric_families())
        return web.Response(
            body=text.encode(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
        )
