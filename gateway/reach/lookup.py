"""DHT lookups over WebSocket, for peers that cannot speak UDP (browsers): docs/reach.md,
"DHT lookups over WebSocket".

    LookupService(dht).mount(app)        # GET /dht/v1/lookup (WebSocket)

One JSON object per text frame. The client asks ``{"type": "get", "id": GW_ID, "req": N}``;
the service answers ``{"type": "record", "req": N, "record": COMPACT_JWS}`` (the record's text
exactly as signed, from `DhtNode.get`, which only returns verified records) or
``{"type": "error", "req": N, "error": CODE, "reason": TEXT}``. The service is not trusted:
the client verifies every record itself (signature, id = thumbprint, time), so a lying lookup
peer can only withhold a record, never forge one.

`dht` may be set after mounting (the gateway starts its DHT node after its P2P listener):
until then every lookup is answered ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import Counter
from typing import Any, Final, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.codes import Code
from gateway.errors import P2PError
from gateway.identity.keys import is_id
from gateway.messages.ratelimit import RateLimiter
from gateway.p2p.records import Record
from gateway.text import clean

log = logging.getLogger(__name__)

__all__ = [
    "LOOKUP_CODES",
    "LOOKUP_PATH",
    "LookupService",
]

LOOKUP_PATH: Final = "/dht/v1/lookup"

#: A request is ~80 bytes; anything much larger is not one (the socket is closed, 1009).
MAX_REQUEST_BYTES: Final = 512
#: `req` is an integer in [0, 2**53): exact in JavaScript.
MAX_REQ: Final = 2**53 - 1
#: One iterative DHT lookup takes well under a second on a healthy network (1 s RPC cap).
LOOKUP_TIMEOUT_S: Final = 10.0
#: Writing one answer (< 5 KiB) to a live socket; a stuck one is treated as gone.
SEND_TIMEOUT_S: Final = 5.0
#: A socket that sends nothing for this long is closed (it holds a connection slot).
IDLE_TIMEOUT_S: Final = 60.0
#: WebSocket pings: dead sockets are found.
HEARTBEAT_S: Final = 30.0
#: Waiting for the client's close frame after ours.
CLOSE_TIMEOUT_S: Final = 2.0
#: Open lookup sockets in all, and per source IP.
MAX_CONNECTIONS: Final = 64
MAX_CONNECTIONS_PER_IP: Final = 8
#: Lookups per connection: a token bucket (a browser asks once per start, a few retries).
CONN_RATE_PER_S: Final = 1.0
CONN_BURST: Final = 5
#: Lookups per source IP, all its connections together (each lookup costs DHT traffic).
IP_RATE_PER_S: Final = 2.0
IP_BURST: Final = 10
#: Source IPs tracked by the per-IP limiter (LRU; fail closed when all are busy).
RATE_MAX_KEYS: Final = 4096
#: Lookups running at once on one connection, and in the whole service.
MAX_INFLIGHT_PER_CONN: Final = 4
MAX_INFLIGHT: Final = 16
#: Malformed requests tolerated on one connection before it is closed (1008).
MAX_BAD_REQUESTS: Final = 8


#: The `error` codes of a lookup answer (docs/reach.md), from the registry.
LOOKUP_CODES: Final = (
    Code.BAD_REQUEST,  # not a JSON object, unknown type, bad req
    Code.BAD_ID,  # id not a gateway id (43 base64url characters)
    Code.NOT_FOUND,  # no valid record under that id
    Code.RATE_LIMITED,  # over a rate or concurrency limit
    Code.TIMEOUT,  # the DHT lookup did not end in time
    Code.UNAVAILABLE,  # no DHT node (yet), or the lookup failed
)


class DhtGetter(Protocol):
    async def get(self, record_id: str) -> Record | None: ...


def _peer_ip(request: web.BaseRequest) -> str:
    transport = request.transport
    name = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(name, tuple) and name:
        return str(name[0])
    return "-"


class _Refusal(Exception):
    def __init__(self, code: str, reason: str, req: int | None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.req = code, reason, req


def _parse(text: str) -> tuple[int, str]:
    """(req, id) of a get request, or _Refusal."""
    try:
        msg: Any = json.loads(text)
    except ValueError:
        raise _Refusal(Code.BAD_REQUEST, "not JSON", None) from None
    if not isinstance(msg, dict):
        raise _Refusal(Code.BAD_REQUEST, "not a JSON object", None)
    req = msg.get("req")
    if isinstance(req, bool) or not isinstance(req, int) or not 0 <= req <= MAX_REQ:
        raise _Refusal(Code.BAD_REQUEST, "req must be an integer in [0, 2**53)", None)
    if msg.get("type") != "get":
        raise _Refusal(Code.BAD_REQUEST, "type must be get", req)
    if set(msg) != {"type", "id", "req"}:
        raise _Refusal(Code.BAD_REQUEST, "members must be type, id, req", req)
    gw_id = msg["id"]
    if not isinstance(gw_id, str) or not is_id(gw_id):
        raise _Refusal(Code.BAD_ID, "id must be 43 base64url characters", req)
    return req, gw_id


class _Conn:
    """One lookup socket's state."""

    def __init__(self, ws: web.WebSocketResponse, ip: str) -> None:
        self.ws = ws
        self.ip = ip
        self.rate = RateLimiter(CONN_RATE_PER_S, CONN_BURST, max_keys=1)
        self.inflight: set[asyncio.Task[None]] = set()
        self.bad = 0
        self.send_lock = asyncio.Lock()


class LookupService:
    """The lookup route; see the module docstring. `stats()` for ops."""

    def __init__(self, dht: DhtGetter | None = None) -> None:
        self.dht = dht
        self._ip_rate = RateLimiter(IP_RATE_PER_S, IP_BURST, max_keys=RATE_MAX_KEYS)
        self._per_ip: Counter[str] = Counter()
        self._sockets: set[web.WebSocketResponse] = set()
        self._inflight = 0
        self._accepting = True
        self.lookups = 0
        self.found = 0
        self.refusals: Counter[str] = Counter()

    def mount(self, app: web.Application) -> None:
        """Add GET /dht/v1/lookup to APP (before it starts); sockets close at its shutdown."""
        app.router.add_get(LOOKUP_PATH, self._handle)
        app.on_shutdown.append(self._on_shutdown)

    def stats(self) -> dict[str, Any]:
        return {
            "available": self.dht is not None,
            "connections": len(self._sockets),
            "inflight": self._inflight,
            "lookups": self.lookups,
            "found": self.found,
            "refusals": dict(self.refusals),
        }

    async def close(self) -> None:
        """Refuse new sockets and close the open ones."""
        self._accepting = False
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    # ------------------------------------------------------------------ the socket
    def _refuse_http(self, code: str, reason: str, status: int) -> web.Response:
        self.refusals[code] += 1
        return web.json_response({"error": code, "reason": reason}, status=status)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ip = _peer_ip(request)
        if not self._accepting:
            return self._refuse_http(Code.UNAVAILABLE, "shutting down", 503)
        if len(self._sockets) >= MAX_CONNECTIONS or self._per_ip[ip] >= MAX_CONNECTIONS_PER_IP:
            return self._refuse_http(Code.RATE_LIMITED, "too many lookup connections", 429)
        ws = web.WebSocketResponse(
            max_msg_size=MAX_REQUEST_BYTES,
            heartbeat=HEARTBEAT_S,
            compress=False,
            timeout=CLOSE_TIMEOUT_S,
        )
        if not ws.can_prepare(request).ok:
            return self._refuse_http(Code.BAD_REQUEST, "a WebSocket upgrade is required", 400)
        self._sockets.add(ws)
        self._per_ip[ip] += 1
        conn = _Conn(ws, ip)
        try:
            await ws.prepare(request)
            await self._serve(conn)
        except ConnectionError:
            pass
        finally:
            for task in list(conn.inflight):
                task.cancel()
            if conn.inflight:
                await asyncio.wait(conn.inflight)
            self._sockets.discard(ws)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    async def _serve(self, conn: _Conn) -> None:
        ws = conn.ws
        while True:
            try:
                msg = await ws.receive(timeout=IDLE_TIMEOUT_S)
            except TimeoutError:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"idle")
                return
            if msg.type is WSMsgType.BINARY:
                self.refusals[Code.BAD_REQUEST] += 1
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
                return
            if msg.type is not WSMsgType.TEXT:  # close, error (a frame too large: 1009)
                return
            try:
                req, gw_id = _parse(msg.data)
                self._admit(conn, req)
            except _Refusal as r:
                if r.code in (Code.BAD_REQUEST, Code.BAD_ID):
                    conn.bad += 1
                await self._error(conn, r.req, r.code, r.reason)
                if conn.bad >= MAX_BAD_REQUESTS:
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"bad requests")
                    return
                continue
            self._inflight += 1
            task = asyncio.create_task(self._lookup(conn, req, gw_id))
            conn.inflight.add(task)
            task.add_done_callback(functools.partial(self._done, conn))

    def _done(self, conn: _Conn, task: asyncio.Task[None]) -> None:
        conn.inflight.discard(task)
        self._inflight -= 1
        if not task.cancelled() and (exc := task.exception()) is not None:  # a bug: never silent
            log.error("a DHT lookup task died: %s", type(exc).__name__, exc_info=exc)

    def _admit(self, conn: _Conn, req: int) -> None:
        if len(conn.inflight) >= MAX_INFLIGHT_PER_CONN or self._inflight >= MAX_INFLIGHT:
            raise _Refusal(Code.RATE_LIMITED, "too many lookups at once", req)
        if not conn.rate.allow(0):
            raise _Refusal(Code.RATE_LIMITED, "too many lookups on this connection", req)
        if not self._ip_rate.allow(conn.ip):
            raise _Refusal(Code.RATE_LIMITED, "too many lookups from this address", req)

    async def _lookup(self, conn: _Conn, req: int, gw_id: str) -> None:
        self.lookups += 1
        dht = self.dht
        if dht is None:
            await self._error(conn, req, Code.UNAVAILABLE, "no DHT node yet")
            return
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                rec = await dht.get(gw_id)
        except TimeoutError:
            await self._error(conn, req, Code.TIMEOUT, "the DHT lookup took too long")
            return
        except (P2PError, OSError) as exc:
            log.info("a DHT lookup failed: %s", type(exc).__name__)
            await self._error(conn, req, Code.UNAVAILABLE, "the DHT lookup failed")
            return
        if rec is None:
            await self._error(conn, req, Code.NOT_FOUND, "no contact record")
            return
        self.found += 1
        await self._send(conn, {"type": "record", "req": req, "record": rec.text})

    async def _error(self, conn: _Conn, req: int | None, code: str, reason: str) -> None:
        self.refusals[code] += 1
        log.debug("lookup refused from %s: %s", clean(conn.ip, 64), code)
        await self._send(conn, {"type": "error", "req": req, "error": code, "reason": reason})

    async def _send(self, conn: _Conn, body: dict[str, Any]) -> None:
        try:
            async with conn.send_lock, asyncio.timeout(SEND_TIMEOUT_S):
                await conn.ws.send_str(json.dumps(body, separators=(",", ":")))
        except (ConnectionError, RuntimeError, TimeoutError):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY)
