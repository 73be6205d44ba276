"""HTTP binding: translates HTTP to `Request` objects and back; no decisions are taken here.

Routes (TD hrefs are relative to ``{base}/things/{name}/``):
  GET  /.well-known/wot                       the TD Directory's own TD (no auth)
  GET  /things                                 JSON array of every TD (no auth)
  GET  /things/{id-or-name}                    one TD (no auth)
  GET  /things/{t}/properties                  readallproperties
  GET  /things/{t}/properties/{p}              readproperty
  PUT  /things/{t}/properties/{p}              writeproperty (JSON body, chunked allowed)
  GET  /things/{t}/properties/{p}/observe      observeproperty, long-poll (HEAD answers at once)
  GET  /things/{t}/properties/{p}/sse          observeproperty, Server-Sent Events
  POST /things/{t}/actions/{a}                 invokeaction
  GET  /things/{t}/events/{e}                  subscribeevent, long-poll (HEAD answers at once)
  GET  /things/{t}/events/{e}/sse              subscribeevent, Server-Sent Events
  PUT  /acl                                    install a new owner-signed ACL (the owner only)
  GET  /status, /status.json, /metrics         status page and metrics (status.py), given `ops`

A Thing request may carry a delegation chain in the `Streembit-Delegation` header (links
separated by "~", docs/acl.md "Delegation"); its bearer token may then prove a key the ACL does
not know with a `jwk` header, and the chain alone decides (in the request processor).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import jsonsafe
from gateway.acl import AclStore
from gateway.acl.delegation import HTTP_HEADER as DELEGATION_HEADER
from gateway.acl.delegation import DelegationError, split_header
from gateway.auth import Principal, TokenVerifier
from gateway.bindings.http import auditcheck, ownerview, webapp
from gateway.bindings.http.cors import enable_cors
from gateway.bindings.http.streams import LONGPOLL_TIMEOUT_S, longpoll, sse
from gateway.codes import Code
from gateway.errors import AuthError, RequestError
from gateway.requests import Outcome, Request, RequestProcessor
from gateway.text import clean

if TYPE_CHECKING:
    from gateway.bindings.http.status import OpsSource

log = logging.getLogger(__name__)

JSON = "application/json"
TdSource = Callable[[], dict[str, dict[str, Any]]]  # thing name -> TD
ACL_MAX_BYTES = 256 * 1024  # an ACL JWS with hundreds of grants stays far below this
#: json.dumps(data, separators=(",", ":")) without building an encoder per reply
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(data).encode(), status=status, content_type=JSON)


def _error(outcome: Outcome) -> web.Response:
    resp = _json(outcome.error_body(), outcome.http_status)
    if outcome.http_status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return resp


class HttpBinding:
    def __init__(
        self,
        processor: RequestProcessor,
        verifier: TokenVerifier,
        acl: AclStore,
        tds: TdSource,
        directory_td: Callable[[], dict[str, Any]],
        *,
        max_body: int,
        ops: OpsSource | None = None,
    ) -> None:
        self.processor = processor
        self.verifier = verifier
        self.acl = acl
        self.tds = tds
        self.directory_td = directory_td
        self.max_body = max_body
        self.app = web.Application(client_max_size=max_body)
        enable_cors(self.app)  # API calls from pages of other origins (cors.py)
        self._streams: set[web.StreamResponse] = set()
        r = self.app.router
        # The router tries the routes under /things in this order (the patterns never overlap):
        # the hot one (a property read) first saves a regex match per request.
        r.add_get("/things/{thing}/properties/{name}", self.read_property)
        r.add_put("/things/{thing}/properties/{name}", self.write_property)
        r.add_get("/.well-known/wot", self.well_known)
        r.add_get("/things", self.list_things)
        r.add_get("/things/{thing}", self.get_td)
        r.add_get("/things/{thing}/properties", self.read_all)
        r.add_route("HEAD", "/things/{thing}/properties/{name}/observe", self.head_ok)
        r.add_get("/things/{thing}/properties/{name}/observe", self.observe, allow_head=False)
        r.add_get("/things/{thing}/properties/{name}/sse", self.observe_sse)
        r.add_post("/things/{thing}/actions/{name}", self.invoke)
        r.add_route("HEAD", "/things/{thing}/events/{name}", self.head_ok)
        r.add_get("/things/{thing}/events/{name}", self.subscribe, allow_head=False)
        r.add_get("/things/{thing}/events/{name}/sse", self.subscribe_sse)
        r.add_put("/acl", self.put_acl)
        ownerview.mount(self)  # GET /audit, /acl (owner), /acl/mine (ownerview.py)
        auditcheck.mount(self)  # GET /audit/checkpoint (owner; auditcheck.py)
        webapp.mount(self.app)  # the phone web app at /app (webapp.py)
        if ops is not None:
            from gateway.bindings.http.status import StatusRoutes

            StatusRoutes(self, ops)

    # ------------------------------------------------------------- discovery
    async def well_known(self, request: web.Request) -> web.Response:
        return _json(self.directory_td())

    async def list_things(self, request: web.Request) -> web.Response:
        return _json(list(self.tds().values()))

    async def get_td(self, request: web.Request) -> web.Response:
        key = request.match_info["thing"]
        tds = self.tds()
        td = tds.get(key) or next((t for t in tds.values() if t.get("id") == key), None)
        if td is None:
            return _error(Outcome("unknown_thing", reason=f"no Thing {clean(key, 64)!r}"))
        return _json(td)

    async def head_ok(self, request: web.Request) -> web.Response:
        # node-wot probes a long-poll address with HEAD and a 1 s timeout: answer at once.
        return web.Response(status=200)

    # ---------------------------------------------------------------- helpers
    async def _principal(
        self, request: web.Request, op: str, name: str, *, chain_route: bool = False
    ) -> Principal | Outcome:
        """The authenticated requester, or the audited refusal. CHAIN_ROUTE: a Thing route,
        where a request presenting a delegation chain may prove a key the ACL does not know
        with the token's own `jwk` (never on the owner, status or ACL routes)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            outcome = Outcome("unauthenticated", reason="a bearer token is required")
        else:
            try:
                embedded = chain_route and DELEGATION_HEADER in request.headers
                return self.verifier.verify(token.strip(), embedded_key=embedded)
            except AuthError as exc:
                outcome = Outcome("unauthenticated", reason=f"{exc.code}: {exc}")
        req = Request(
            subject="-", op=op, thing=request.match_info.get("thing", ""), name=name, binding="http"
        )
        return await self.processor.reject(req, outcome)

    @staticmethod
    def _chain(request: web.Request) -> tuple[str, ...] | Outcome:
        """The delegation chain presented in the header (() without one), or the refusal."""
        value = request.headers.get(DELEGATION_HEADER)
        if value is None:
            return ()
        try:
            return tuple(split_header(value))
        except DelegationError as exc:
            return Outcome.of_error(exc, rule="dlg")

    async def _body(self, request: web.Request) -> tuple[bool, Any]:
        """(True, value) for a JSON body (None when empty), (False, Outcome) when refused."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return False, Outcome("too_large", reason=f"body larger than {self.max_body} bytes")
        if not raw.strip():
            return True, None
        limits = jsonsafe.JsonLimits(max_bytes=self.max_body)  # and the policy's other bounds
        try:
            return True, jsonsafe.loads(raw, limits, what="body")
        except jsonsafe.JsonInputError as exc:
            return False, Outcome("bad_request", reason=f"{exc} [{exc.problem}]")

    async def _one_shot(self, request: web.Request, op: str, name: str, body: bool) -> web.Response:
        who = await self._principal(request, op, name, chain_route=True)
        if isinstance(who, Outcome):
            return _error(who)
        value: Any = None
        chain = self._chain(request)
        req = Request(
            subject=who.id,
            op=op,
            thing=request.match_info["thing"],
            name=name,
            binding="http",
            request_id=who.jti,
            chain=() if isinstance(chain, Outcome) else chain,
        )
        if isinstance(chain, Outcome):
            return _error(await self.processor.reject(req, chain))
        if body:
            ok, value = await self._body(request)
            if not ok:
                return _error(await self.processor.reject(req, value))
            if value is not None:  # an empty body: req.input is None already (replace is slow)
                req = replace(req, input=value)
        outcome = await self.processor.handle(req)
        if not outcome.ok:
            return _error(outcome)
        if op == "writeproperty" or (op == "invokeaction" and outcome.output is None):
            return web.Response(status=204)
        return _json(outcome.output)

    # ------------------------------------------------------------ affordances
    async def read_all(self, request: web.Request) -> web.Response:
        return await self._one_shot(request, "readallproperties", "", body=False)

    async def read_property(self, request: web.Request) -> web.Response:
        return await self._one_shot(request, "readproperty", request.match_info["name"], False)

    async def write_property(self, request: web.Request) -> web.Response:
        return await self._one_shot(request, "writeproperty", request.match_info["name"], True)

    async def invoke(self, request: web.Request) -> web.Response:
        return await self._one_shot(request, "invokeaction", request.match_info["name"], True)

    async def _stream(self, request: web.Request, op: str, mode: str) -> web.StreamResponse:
        name = request.match_info["name"]
        who = await self._principal(request, op, name, chain_route=True)
        if isinstance(who, Outcome):
            return _error(who)
        chain = self._chain(request)
        req = Request(who.id, op, request.match_info["thing"], name, None, "http", who.jti)
        if isinstance(chain, Outcome):
            return _error(await self.processor.reject(req, chain))
        req = replace(req, chain=chain)
        outcome, sub = await self.processor.open_stream(req)
        if sub is None:
            return _error(outcome)
        try:
            if mode == "sse":
                return await sse(request, sub, req, self.processor, who.exp)
            return await longpoll(request, sub, req, self.processor, LONGPOLL_TIMEOUT_S, who.exp)
        finally:
            sub.close()

    async def observe(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "observeproperty", "longpoll")

    async def observe_sse(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "observeproperty", "sse")

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "subscribeevent", "longpoll")

    async def subscribe_sse(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "subscribeevent", "sse")

    # -------------------------------------------------------------------- ACL
    async def put_acl(self, request: web.Request) -> web.Response:
        who = await self._principal(request, "aclpush", "")
        if isinstance(who, Outcome):
            return _error(who)
        req = Request(who.id, "aclpush", "", "acl", None, "http", who.jti)

        async def read() -> str:  # only once the processor has checked the owner
            raw = b""
            async for chunk in request.content.iter_any():  # bodies may arrive in pieces
                raw += chunk
                if len(raw) > ACL_MAX_BYTES:
                    raise RequestError("ACL too large", code=Code.TOO_LARGE)
            return raw.decode("utf-8", "replace")

        outcome = await self.processor.install_acl(req, read)
        return _json(outcome.output) if outcome.ok else _error(outcome)
