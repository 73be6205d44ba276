"""One peer connection of the P2P binding (a `Link`: WebSocket, relay circuit or punched TCP):
admission of every frame, answers, owned tasks.

Per text frame, cheapest check first:
1. rate limit by connection and by remote address (before any parsing: garbage is cheap);
2. `open_sealed` (size, format, headers, decryption, signature, claims, replay), or for a
   session frame the session's own opening (`keyring.Keyring`, docs/protocol.md §8);
3. only requests are served; a verified reply/event/error is refused without an answer (two
   gateways never bounce errors at each other);
4. rate limit by the verified sender (ids are free to mint, so this comes after the signature);
5. the operation (`ops.Operations`): one-shot reads, writes and actions run as tasks (answers may
   come in any order, matched by `re`), everything else in frame order.

Every refusal is audited through `RequestProcessor.reject`, except repeated rate-limit refusals
(at most one record per second per connection: a flood must not turn into audit writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any, Final

from aiohttp import WSCloseCode

from gateway.bindings.p2p import admission
from gateway.bindings.p2p.context import P2PContext
from gateway.bindings.p2p.keyring import Keyring
from gateway.bindings.p2p.ops import ONE_SHOT, Operations
from gateway.bindings.p2p.streams import EventPush, StreamKey
from gateway.codes import Code
from gateway.errors import MessageError
from gateway.identity import PublicIdentity
from gateway.messages import Opened, codes
from gateway.peer import wire
from gateway.reach.link import Link, LinkFrameError
from gateway.requests import Outcome, Request
from gateway.tasks import TaskOwner
from gateway.text import clean

log = logging.getLogger(__name__)

LIMIT_AUDIT_INTERVAL_S: Final = 1.0  # at most one audit record per second for rate refusals
CLOSE_TIMEOUT_S: Final = 2.0  # a peer that does not answer our close frame is cut off
MAX_MESSAGE_TEXT: Final = 500  # characters of a reason sent back in an error message


class PeerSession:
    """Serves one link until it closes; owns its request and subscription tasks."""

    def __init__(self, ctx: P2PContext, link: Link, addr: str, serial: int) -> None:
        self.ctx = ctx
        self.link = link
        self.addr = addr
        self.serial = serial
        self.label = f"p2p-{serial}"
        self.streams: dict[StreamKey, EventPush] = {}
        self.closing = False
        self._inflight: set[asyncio.Task[None]] = set()  # one-shot requests (for the limits)
        self.tasks = TaskOwner(self.label, logger=log)  # requests and event pushes
        self._send_lock = asyncio.Lock()
        self._flood_run = 0  # consecutive frames refused by the connection/address limit
        self._last_limit_audit = -LIMIT_AUDIT_INTERVAL_S
        self._ops = Operations(self)
        self.keyring = Keyring(ctx.identity)

    # ------------------------------------------------------------------ life cycle
    async def run(self) -> None:
        """Read frames until the peer or the gateway closes the connection."""
        while True:
            try:
                frame = await self.link.recv()
            except LinkFrameError as exc:
                await self._audit_unopened(exc.code, exc.reason)
                if exc.close_code is not None:
                    await self.close(exc.close_code)
                break
            if frame is None or not await self._on_frame(frame):
                break

    async def close(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        """Close the link (bounded: a silent peer is cut off)."""
        self.closing = True
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.link.close(code=code)

    async def shutdown(self) -> None:
        """Cancel this connection's subscription tasks and close its subscriptions.

        Its one-shot requests are left to finish (see `P2PContext.requests`); their answers
        are dropped.
        """
        self.closing = True
        tasks: set[asyncio.Task[None]] = set()
        pushes = list(self.streams.values())
        self.streams.clear()
        for push in pushes:
            push.sub.close()
            if push.task is not None:
                tasks.add(push.task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # raises CancelledError if *we* are cancelled

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> bool:
        """Run CORO as a named task owned by this connection; False if too many are running."""
        lim = self.ctx.limits
        busy = len(self._inflight) >= lim.max_inflight or len(self.ctx.requests) >= lim.max_requests
        if busy or self.closing:
            coro.close()
            return False
        task = self.tasks.spawn(coro, name=f"{self.label}-{what}")
        self._inflight.add(task)
        self.ctx.requests.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(self.ctx.requests.discard)
        return True

    def wake_streams(self) -> None:
        """Make every subscription re-check the ACL now (called when the ACL changes)."""
        for push in list(self.streams.values()):
            push.wake()

    # -------------------------------------------------------------------- frames
    async def _on_frame(self, frame: str) -> bool:
        """Handle one text frame; False when the connection must be closed."""
        ctx = self.ctx
        if not (ctx.conn_limiter.allow(self.serial) and ctx.addr_limiter.allow(self.addr)):
            return await self._flooded(frame)
        self._flood_run = 0
        try:
            msg = self.keyring.open(frame, ctx.replay)
        except MessageError as exc:
            await self._refused(frame, exc)
            return True
        if msg.typ != "request":
            reason = f"a {msg.typ} message is not a request; dropped"
            await ctx.processor.reject(
                admission.request_of(msg), Outcome(codes.BAD_TYPE, reason=reason)
            )
            return True
        self.keyring.accept(msg)
        if not ctx.peer_limiter.allow(msg.sender.id):
            await self._audit_limited(admission.request_of(msg), "peer over its message rate")
            await self.send_error(
                msg.sender, Code.RATE_LIMITED, "too many messages from this peer", re=msg.jti
            )
            return True
        await self._serve(msg)
        return True

    async def _serve(self, msg: Opened) -> None:
        op = msg.claims["op"]
        if op in ONE_SHOT:
            if not self.spawn(self._ops.dispatch(msg), f"{op}-{msg.jti[:8]}"):
                await self._audit_limited(admission.request_of(msg), "too many requests in flight")
                await self.send_error(
                    msg.sender, Code.RATE_LIMITED, "too many requests in flight", re=msg.jti
                )
            return
        await self._ops.dispatch(msg)

    async def _flooded(self, frame: str) -> bool:
        self._flood_run += 1
        await self._audit_limited(admission.unopened_request(), "connection over its frame rate")
        if self._flood_run >= self.ctx.limits.flood_disconnect:
            log.warning("%s from %s: flooding, disconnected", self.label, self.addr)
            await self.close(WSCloseCode.POLICY_VIOLATION)
            return False
        await self.send_text(wire.plain_error(Code.RATE_LIMITED, frame))
        return True

    async def _refused(self, frame: str, exc: MessageError) -> None:
        reason = admission.reason_of(exc)
        origin = admission.verified_origin(frame, exc, self.keyring)
        log.info("%s from %s: refused a frame: %s (%s)", self.label, self.addr, exc.code, reason)
        if origin is None:  # attributed to the sender when it was authenticated (exc.sender)
            await self._audit_unopened(exc.code, reason, exc.sender)
            await self.send_text(wire.plain_error(exc.code, frame))
            return
        await self.ctx.processor.reject(
            admission.request_of(origin), Outcome(exc.code, reason=reason)
        )
        if origin.typ == "request":
            await self.send_error(origin.sender, exc.code, reason, re=origin.jti)

    async def _audit_unopened(
        self, code: str, reason: str, sender: PublicIdentity | None = None
    ) -> None:
        req = admission.unopened_request(sender)
        await self.ctx.processor.reject(req, Outcome(code, reason=reason))

    async def _audit_limited(self, req: Request, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_limit_audit < LIMIT_AUDIT_INTERVAL_S:
            return
        self._last_limit_audit = now
        await self.ctx.processor.reject(req, Outcome(Code.RATE_LIMITED, reason=reason))

    # ------------------------------------------------------------------- sending
    async def send_text(self, text: str) -> bool:
        """Send one frame; False if the connection is gone (a stuck peer is disconnected)."""
        if self.link.closed:
            return False
        try:
            async with self._send_lock, asyncio.timeout(self.ctx.limits.send_timeout_s):
                await self.link.send(text)
        except TimeoutError:
            log.warning("%s: peer does not read; disconnecting", self.label)
            await self.close(WSCloseCode.POLICY_VIOLATION)
            return False
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def send_sealed(self, to: PublicIdentity, typ: str, body: dict[str, Any]) -> bool:
        """Seal BODY to TO (a session frame once TO has a session here) and send it. False if
        the connection is gone.

        A body that cannot be sealed (too large, not JSON) is logged and replaced, for a reply,
        by an error; for an event it is skipped (the subscriber sees a gap in `seq`).
        """
        try:
            token, announced = self.keyring.outgoing(to, typ, body)
        except (MessageError, TypeError, ValueError) as exc:
            log.error("%s: cannot seal a %s: %s", self.label, typ, clean(str(exc), 200))
            if typ != "reply":
                return True
            code = exc.code if isinstance(exc, MessageError) else Code.INTERNAL
            return await self.send_error(to, code, "the answer could not be sealed", re=body["re"])
        ok = await self.send_text(token)
        if ok and announced is not None:
            self.keyring.sent(announced)
        return ok

    async def send_error(
        self, to: PublicIdentity, code: str, message: str, *, re: str, status: int | None = None
    ) -> bool:
        """Send a sealed error about request RE."""
        status = wire.refusal_status(code) if status is None else status
        body: dict[str, Any] = {
            "re": re,
            "code": clean(code, 64),
            "status": status if 400 <= status <= 599 else 500,
            "message": clean(message, MAX_MESSAGE_TEXT),
        }
        return await self.send_sealed(to, "error", body)

    async def answer(self, msg: Opened, outcome: Outcome, status: int | None = None) -> bool:
        """Answer request MSG with OUTCOME: a reply (STATUS, default 200/204) or an error."""
        if not outcome.ok:
            return await self.send_error(
                msg.sender, outcome.code, outcome.reason, re=msg.jti, status=outcome.http_status
            )
        if status is None:
            status = wire.NO_CONTENT if outcome.output is None else wire.OK
        body: dict[str, Any] = {"re": msg.jti, "status": status}
        if status != wire.NO_CONTENT and outcome.output is not None:
            body["output"] = outcome.output
        return await self.send_sealed(msg.sender, "reply", body)
