"""`RelayService`: a circuit relay any public node can run (docs/reach.md, "Relays").

Routes (mounted on any aiohttp application, or on the service's own listener):

- ``GET /relay/v1/reserve``: the control WebSocket. Challenge, signed answer
  (gateway/reach/relay/reservation.py), then ``reserved`` or ``refused``; the reservation lives
  while the socket is open, up to the TTL, and is renewed on the same socket (``renew``).
- ``GET /relay/v1/connect/{id}``: a peer's WebSocket to the reserving node: announced as
  ``incoming`` on the control socket, piped once the node opens ``/relay/v1/accept/{token}``.
- ``GET /relay/v1/observe``: the caller's address as this node sees it.

Refusals before an upgrade are plain JSON bodies ``{"error": code, "reason": ...}`` with the
code's HTTP status; after it, a ``refused`` control message and a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.messages.ratelimit import RateLimiter
from gateway.reach.relay.circuit import Circuit, Counters, ws_close
from gateway.reach.relay.limits import (
    ACCEPT_PATH,
    ACCEPT_TIMEOUT_S,
    CLOSE_TIMEOUT_S,
    CONNECT_PATH,
    HANDSHAKE_TIMEOUT_S,
    OBSERVE_PATH,
    RESERVE_PATH,
    SEND_TIMEOUT_S,
    RelayLimits,
)
from gateway.reach.relay.reservation import (
    MAX_CONTROL_BYTES,
    challenge,
    new_nonce,
    parse_control,
    verify_reservation,
)
from gateway.tasks import TaskOwner
from gateway.text import clean

log = logging.getLogger(__name__)

__all__ = ["RelayService"]

SHUTDOWN_TIMEOUT_S: Final = 5.0  # aiohttp waits this long for handlers at cleanup
CIRCUIT_TOKEN_BYTES: Final = 16  # 128 bits: a circuit token is unguessable


class _Gone(Exception):
    """The control socket closed."""


@dataclass(eq=False, slots=True)
class _Held:
    """A live reservation: the verified id, its control socket and its end (Unix time)."""

    id: str
    ws: web.WebSocketResponse
    expires: float


def _peer(request: web.BaseRequest) -> tuple[str, int]:
    """The TCP peer of REQUEST: (ip, port); ("-", 0) if unknown."""
    transport = request.transport
    name = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(name, tuple) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return "-", 0


def _abandon(circuit: Circuit) -> None:
    """Wake the connect handler waiting for CIRCUIT's accept: no accept will come."""
    if not circuit.accepted.done():
        circuit.accepted.set_exception(_Gone())


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class RelayService:
    """A relay; see the module docstring. `stats()` for ops."""

    def __init__(
        self,
        limits: RelayLimits | None = None,
        *,
        relay_id: str = "",
        public_url: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.limits = limits or RelayLimits()
        self.relay_id = relay_id
        self.public_url = public_url.rstrip("/") if public_url else None
        self.enabled = enabled
        self.url = ""
        self._held: dict[str, _Held] = {}
        self._controls: set[web.WebSocketResponse] = set()
        self._handshakes = 0
        self._handshakes_by_ip: Counter[str] = Counter()
        self._pending: dict[str, Circuit] = {}
        self._circuits: set[Circuit] = set()
        self._circuits_by_id: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self._counters = Counters()
        lim = self.limits
        self._rate = RateLimiter(lim.rate_per_s, lim.rate_burst, max_keys=lim.rate_max_keys)
        self._tasks = TaskOwner("relay", logger=log)
        self._serial = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._accepting = True
        #: More routes for the relay's own listener (`start`): each is called with its app
        #: before it starts, e.g. `LookupService.mount` (gateway/reach/lookup.py).
        self.extra_mounts: list[Callable[[web.Application], None]] = []

    # ------------------------------------------------------------------ life cycle
    def mount(self, app: web.Application) -> None:
        """Add the relay's routes to APP (before it starts) and close them at its shutdown."""
        app.router.add_get(RESERVE_PATH, self._reserve)
        app.router.add_get(CONNECT_PATH + "{id}", self._connect)
        app.router.add_get(ACCEPT_PATH + "{token}", self._accept)
        app.router.add_get(OBSERVE_PATH, self._observe)
        app.on_shutdown.append(self._on_shutdown)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on a listener of its own; `url` is ``http://HOST:PORT`` once bound."""
        if self._runner is not None:
            raise RuntimeError("RelayService already started")
        app = web.Application()
        self.mount(app)
        for hook in self.extra_mounts:
            hook(app)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = int(runner.addresses[0][1]) if runner.addresses else port
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
        self._accepting = True
        log.info("relay listening on %s", self.url)

    async def stop(self) -> None:
        """Close every reservation and circuit, then the listener (if any). Idempotent."""
        await self.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        """Refuse new work and close every socket (a mounted relay's part of `stop`)."""
        self._accepting = False
        for c in list(self._pending.values()):
            _abandon(c)
        socks = [*self._controls, *(ws for c in self._circuits for ws in c.sockets)]
        await asyncio.gather(*(ws_close(ws, WSCloseCode.GOING_AWAY) for ws in socks))
        await self._tasks.close()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    # ------------------------------------------------------------------ ops
    def stats(self) -> dict[str, Any]:
        c = self._counters
        return {
            "enabled": self.enabled,
            "reservations": len(self._held),
            "reservations_total": c.reservations_total,
            "handshakes": self._handshakes,
            "circuits_active": len(self._circuits),
            "circuits_pending": len(self._pending),
            "circuits_total": c.circuits_total,
            "bytes_relayed": c.bytes_relayed,
            "frames_relayed": c.frames_relayed,
            "refusals": dict(self._refusals),
        }

    def base_url(self, request: web.BaseRequest) -> str:
        """The URL peers use for this relay: `public_url`, the own listener's, or the request's."""
        return self.public_url or self.url or str(request.url.origin())

    # ------------------------------------------------------------------ refusals
    def _refuse(self, code: Code, reason: str, who: str = "-") -> web.Response:
        self._refusals[code] += 1
        log.debug("relay refused %s: %s [%s]", clean(who), reason, code)
        return web.json_response({"error": code, "reason": reason}, status=code.status)

    def _gate(self, ip: str) -> web.Response | None:
        """A refusal for a new reserve/connect/observe from IP, or None."""
        if not self.enabled or not self._accepting:
            why = "this node does not relay" if not self.enabled else "shutting down"
            return self._refuse(Code.RELAY_DISABLED, why, ip)
        if not self._rate.allow(ip):
            return self._refuse(Code.RELAY_RATE_LIMITED, "too many requests from this address", ip)
        return None

    def _socket(self, frame_bytes: int) -> web.WebSocketResponse:
        return web.WebSocketResponse(
            max_msg_size=frame_bytes,
            heartbeat=self.limits.heartbeat_s,
            compress=False,  # sealed messages do not compress; no inflate bombs
            timeout=CLOSE_TIMEOUT_S,
        )

    def _upgrade_refusal(self, ip: str) -> web.Response:
        return self._refuse(Code.RELAY_BAD_RESERVATION, "a WebSocket upgrade is required", ip)

    # ------------------------------------------------------------------ observe
    async def _observe(self, request: web.Request) -> web.Response:
        ip, port = _peer(request)
        if not self._rate.allow(ip):
            return self._refuse(Code.RELAY_RATE_LIMITED, "too many requests from this address", ip)
        return web.json_response({"ip": ip, "port": port})

    # ------------------------------------------------------------------ control socket
    async def _send(self, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        try:
            await asyncio.wait_for(ws.send_str(json.dumps(msg)), SEND_TIMEOUT_S)
        except (ConnectionError, RuntimeError, TimeoutError):
            raise _Gone from None

    async def _recv(self, ws: web.WebSocketResponse, wait_s: float) -> dict[str, Any]:
        """The next control message; TimeoutError, _Gone, or ReachError (malformed)."""
        msg = await ws.receive(timeout=max(wait_s, 0.001))  # 0 would mean "no timeout"
        if msg.type is WSMsgType.TEXT:
            return parse_control(msg.data)
        if msg.type is WSMsgType.BINARY:
            raise ReachError("binary control frame", code=Code.RELAY_BAD_RESERVATION)
        raise _Gone

    async def _verify_answer(self, ws: web.WebSocketResponse, wait_s: float) -> str:
        """Challenge WS and return the verified id of its answer (ReachError otherwise)."""
        nonce = new_nonce()
        await self._send(ws, challenge(nonce, self.relay_id))
        try:
            msg = await self._recv(ws, wait_s)
        except TimeoutError:
            raise ReachError(
                "no answer to the challenge in time", code=Code.RELAY_BAD_RESERVATION
            ) from None
        if msg["type"] != "reserve":
            raise ReachError("expected a reserve message", code=Code.RELAY_BAD_RESERVATION)
        return verify_reservation(msg.get("jws"), nonce=nonce).id

    async def _refuse_ws(self, ws: web.WebSocketResponse, code: Code, reason: str) -> None:
        self._refusals[code] += 1
        with contextlib.suppress(_Gone):
            await self._send(ws, {"type": "refused", "error": code, "reason": reason})
        await ws_close(ws, WSCloseCode.POLICY_VIOLATION)

    async def _reserve(self, request: web.Request) -> web.StreamResponse:
        ip, _ = _peer(request)
        refusal = self._gate(ip)
        if refusal is not None:
            return refusal
        if self._handshakes >= self.limits.max_handshakes:
            return self._refuse(Code.RELAY_FULL, "too many reservation handshakes", ip)
        if self._handshakes_by_ip[ip] >= self.limits.handshakes_per_ip:
            why = "too many reservation handshakes from this address"
            return self._refuse(Code.RELAY_FULL, why, ip)
        ws = self._socket(MAX_CONTROL_BYTES)
        if not ws.can_prepare(request).ok:
            return self._upgrade_refusal(ip)
        self._handshakes += 1
        self._handshakes_by_ip[ip] += 1
        self._controls.add(ws)
        held: _Held | None = None
        try:
            try:
                await ws.prepare(request)
                rid = await self._verify_answer(ws, HANDSHAKE_TIMEOUT_S)
            finally:
                self._handshakes -= 1
                self._handshakes_by_ip[ip] -= 1
                if self._handshakes_by_ip[ip] <= 0:
                    del self._handshakes_by_ip[ip]
            held = self._admit(rid, ws)
            if held is None:
                reason = f"the relay holds its maximum of {self.limits.max_reservations}"
                await self._refuse_ws(ws, Code.RELAY_FULL, reason)
                return ws
            await self._send(ws, self._reserved(held, request))
            await self._hold(held, request, ip)
        except ReachError as exc:
            code = Code.lookup(exc.code) or Code.RELAY_BAD_RESERVATION
            await self._refuse_ws(ws, code, str(exc))
        except (_Gone, ConnectionError):
            pass
        finally:
            self._controls.discard(ws)
            if held is not None and self._held.get(held.id) is held:
                del self._held[held.id]
            await ws_close(ws, WSCloseCode.GOING_AWAY)
        return ws

    def _admit(self, rid: str, ws: web.WebSocketResponse) -> _Held | None:
        old = self._held.get(rid)
        if old is None and len(self._held) >= self.limits.max_reservations:
            return None
        held = _Held(rid, ws, time.time() + self.limits.reservation_ttl_s)
        self._held[rid] = held
        self._counters.reservations_total += 1
        if old is not None:  # a second reservation for the same id replaces the first
            self._tasks.spawn(
                ws_close(old.ws, WSCloseCode.GOING_AWAY, b"replaced"),
                name=f"relay-replace-{next(self._serial)}",
            )
        log.debug("relay: reserved for %s", clean(rid))
        return held

    def _reserved(self, held: _Held, request: web.BaseRequest) -> dict[str, Any]:
        return {
            "type": "reserved",
            "id": held.id,
            "expires": int(held.expires),
            "ttl": self.limits.reservation_ttl_s,
            "connect": f"{self.base_url(request)}{CONNECT_PATH}{held.id}",
        }

    async def _hold(self, held: _Held, request: web.BaseRequest, ip: str) -> None:
        """Serve the control socket until it closes, expires or misbehaves."""
        ws = held.ws
        while True:
            left = held.expires - time.time()
            if left <= 0:
                raise ReachError("the reservation expired", code=Code.RELAY_NO_RESERVATION)
            try:
                msg = await self._recv(ws, left)
            except TimeoutError:
                continue  # expiry is checked at the top
            if msg["type"] != "renew":
                raise ReachError("expected a renew message", code=Code.RELAY_BAD_RESERVATION)
            if not self._rate.allow(ip):  # each renewal costs a signature check
                raise ReachError("renewing too often", code=Code.RELAY_RATE_LIMITED)
            rid = await self._verify_answer(ws, min(HANDSHAKE_TIMEOUT_S, left))
            if rid != held.id:
                raise ReachError("renewed under another id", code=Code.RELAY_BAD_RESERVATION)
            held.expires = time.time() + self.limits.reservation_ttl_s
            await self._send(ws, self._reserved(held, request))

    # ------------------------------------------------------------------ circuits
    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ip, port = _peer(request)
        refusal = self._gate(ip)
        if refusal is not None:
            return refusal
        rid = request.match_info["id"]
        held = self._held.get(rid)
        if held is None:
            return self._refuse(Code.RELAY_NO_RESERVATION, "no reservation for this id", ip)
        lim = self.limits
        if self._circuits_by_id[rid] >= lim.circuits_per_reservation:
            why = f"this reservation has its {lim.circuits_per_reservation} circuits"
            return self._refuse(Code.RELAY_CIRCUIT_LIMIT, why, ip)
        if len(self._circuits) >= lim.max_circuits:
            return self._refuse(Code.RELAY_CIRCUIT_LIMIT, "the relay is at its circuits", ip)
        ws = self._socket(lim.frame_bytes)
        if not ws.can_prepare(request).ok:
            return self._upgrade_refusal(ip)
        token = secrets.token_urlsafe(CIRCUIT_TOKEN_BYTES)
        circuit = Circuit(token, rid, asyncio.get_running_loop().create_future())
        self._pending[token] = circuit
        self._circuits.add(circuit)
        self._circuits_by_id[rid] += 1
        try:
            other = await self._await_accept(circuit, held, _hostport(ip, port))
            if other is None:
                why = "the reserving node did not accept the circuit in time"
                return self._refuse(Code.RELAY_UNREACHABLE, why, ip)
            circuit.sockets = [other]
            try:
                await ws.prepare(request)
            except ConnectionError:  # the peer left while the node accepted
                return ws
            self._counters.circuits_total += 1
            await circuit.run(
                ws,
                other,
                max_bytes=lim.circuit_bytes,
                max_duration_s=lim.circuit_duration_s,
                tasks=self._tasks,
                counters=self._counters,
            )
            log.debug("relay: circuit to %s ended: %s", clean(rid), circuit.why)
        finally:
            self._pending.pop(token, None)
            self._circuits.discard(circuit)
            self._circuits_by_id[rid] -= 1
            if self._circuits_by_id[rid] <= 0:
                del self._circuits_by_id[rid]
            circuit.accepted.cancel()
            await circuit.close(WSCloseCode.GOING_AWAY)
            circuit.done.set()
        return ws

    async def _await_accept(
        self, circuit: Circuit, held: _Held, source: str
    ) -> web.WebSocketResponse | None:
        """Announce CIRCUIT on HELD's control socket; the accepted socket, or None in time."""
        incoming = {"type": "incoming", "circuit": circuit.token, "from": source}
        try:
            await self._send(held.ws, incoming)
            return await asyncio.wait_for(asyncio.shield(circuit.accepted), ACCEPT_TIMEOUT_S)
        except (_Gone, TimeoutError):
            return None
        finally:
            self._pending.pop(circuit.token, None)  # one-time, used or not

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        ip, _ = _peer(request)
        circuit = self._pending.pop(request.match_info["token"], None)
        if circuit is None or circuit.accepted.done():
            return self._refuse(Code.RELAY_NO_RESERVATION, "unknown or used circuit", ip)
        ws = self._socket(self.limits.frame_bytes)
        if not ws.can_prepare(request).ok:
            _abandon(circuit)
            return self._upgrade_refusal(ip)
        try:
            await ws.prepare(request)
        except ConnectionError:
            _abandon(circuit)
            return ws
        if circuit.accepted.done():  # the connector gave up while we upgraded
            await ws_close(ws, WSCloseCode.GOING_AWAY)
            return ws
        circuit.accepted.set_result(ws)
        await circuit.done.wait()  # the connect handler pipes both ways and closes both
        await ws_close(ws, WSCloseCode.GOING_AWAY)
        return ws
