"""The Streembit P2P binding: sealed messages over a WebSocket (docs/protocol.md section 5).

`P2PBinding` runs an aiohttp WebSocket endpoint (default path `/p2p`). Each connection is a
`PeerSession`; this module owns the listener, the connection bounds (in total and per remote
address), the shared replay cache (purged every second) and the wake-up of every subscription
when an ACL is installed. `stop()` closes every connection, cancels every task it started and
closes every subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from dataclasses import replace
from typing import Final

from aiohttp import WSCloseCode, web

from gateway.acl import AclStore
from gateway.bindings.p2p.context import (
    Limits,
    P2PContext,
    TdSource,
)
from gateway.bindings.p2p.session import CLOSE_TIMEOUT_S, PeerSession
from gateway.codes import Code
from gateway.identity import KeyPair
from gateway.peer import wire
from gateway.reach.link import Link, WsLink
from gateway.requests import RequestProcessor
from gateway.tasks import TaskOwner

log = logging.getLogger(__name__)

REPLAY_PURGE_S: Final = 1.0  # free the replay cache's expired entries this often
SHUTDOWN_TIMEOUT_S: Final = 5.0  # aiohttp waits this long for handlers at cleanup
#: At stop, requests still running get this long to finish before they are cancelled: a lock
#: operation is bounded by its jam timeout and 5 s driver timeouts.
REQUEST_DRAIN_S: Final = 10.0


class P2PBinding:
    """Serves peers over `ws://HOST:PORT/p2p`; see the module docstring."""

    def __init__(
        self,
        identity: KeyPair,
        processor: RequestProcessor,
        acl: AclStore,
        tds: TdSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_per_s: float | None = None,  # None: LIMITS' (default DEFAULT_RATE_PER_S)
        burst: int | None = None,  # None: LIMITS' (default DEFAULT_BURST)
        path: str = wire.DEFAULT_PATH,
        limits: Limits | None = None,
    ) -> None:
        lim = limits or Limits()
        if rate_per_s is not None:
            lim = replace(lim, rate_per_s=rate_per_s)
        if burst is not None:
            lim = replace(lim, burst=burst)
        self.ctx = P2PContext(identity, processor, acl, tds, lim)
        self.host = host
        self.port = port
        self.path = path
        self.url = ""
        self.bound_port = 0  # the listening port, once started
        self.app = web.Application()
        self.app.router.add_get(path, self._handle)
        self.app.on_shutdown.append(self._on_shutdown)
        self.sessions: set[PeerSession] = set()
        self._per_addr: Counter[str] = Counter()
        self._serial = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._tasks = TaskOwner("p2p binding", logger=log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Listen; `url` is set once the port is known."""
        if self._runner is not None:
            raise RuntimeError("P2PBinding already started")
        self._loop = asyncio.get_running_loop()
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = int(runner.addresses[0][1]) if runner.addresses else self.port
        self.bound_port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"ws://{host}:{port}{self.path}"
        self.ctx.acl.on_change.append(self._on_acl_change)
        self._tasks.keep_running(self._purge_replay, name="p2p-replay-purge")
        self._accepting = True
        log.info("P2P binding listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection and task, then the listener. Idempotent."""
        self._accepting = False
        with contextlib.suppress(ValueError):
            self.ctx.acl.on_change.remove(self._on_acl_change)
        await self._tasks.close()
        await self._close_sessions()
        await self._drain_requests()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self._close_sessions()

    async def _close_sessions(self) -> None:
        sessions = list(self.sessions)
        if sessions:  # each close is bounded by CLOSE_TIMEOUT_S
            await asyncio.gather(*(s.close(WSCloseCode.GOING_AWAY) for s in sessions))

    async def _drain_requests(self) -> None:
        requests = set(self.ctx.requests)
        if not requests:
            return
        _, late = await asyncio.wait(requests, timeout=REQUEST_DRAIN_S)
        for task in late:
            log.warning("P2P request %s still running at stop: cancelled", task.get_name())
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def _purge_replay(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_PURGE_S)
            self.ctx.replay.purge()

    # ------------------------------------------------------------------ ACL wake
    def _on_acl_change(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_streams)

    def _wake_streams(self) -> None:
        for session in list(self.sessions):
            session.wake_streams()

    # ---------------------------------------------------------------- connections
    def _admit(self, addr: str) -> str | None:
        """None if a new connection from ADDR is allowed, else why not."""
        lim = self.ctx.limits
        if not self._accepting:
            return "shutting down"
        if len(self.sessions) >= lim.max_connections:
            return "too many connections"
        if self._per_addr[addr] >= lim.max_connections_per_addr:
            return "too many connections from this address"
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        addr = request.remote or "-"
        refusal = self._admit(addr)
        if refusal is not None:
            log.warning("P2P connection from %s refused: %s", addr, refusal)
            return web.json_response({"error": Code.RATE_LIMITED, "reason": refusal}, status=503)
        ws = web.WebSocketResponse(
            max_msg_size=wire.HARD_FRAME_BYTES,
            heartbeat=self.ctx.limits.heartbeat_s,
            compress=False,  # sealed messages do not compress; no inflate bombs
            timeout=CLOSE_TIMEOUT_S,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response(
                {"error": "bad_request", "reason": "a WebSocket upgrade is required"}, status=400
            )
        await ws.prepare(request)
        await self._serve(WsLink(ws), addr)
        return ws

    async def serve_link(self, link: Link, addr: str) -> None:
        """Serve a link that did not come through this listener (a relay circuit, a punched
        TCP connection) like any other connection, until it closes; refused (closed at once)
        when the connection limits are reached."""
        refusal = self._admit(addr)
        if refusal is not None:
            log.warning("P2P link from %s refused: %s", addr, refusal)
            await link.close(WSCloseCode.TRY_AGAIN_LATER)
            return
        await self._serve(link, addr)

    async def _serve(self, link: Link, addr: str) -> None:
        session = PeerSession(self.ctx, link, addr, next(self._serial))
        self.sessions.add(session)
        self._per_addr[addr] += 1
        log.debug("%s: connected from %s over %s", session.label, addr, link.kind)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._per_addr[addr] -= 1
            if self._per_addr[addr] <= 0:
                del self._per_addr[addr]
            await session.shutdown()
            if not link.closed:
                await session.close(WSCloseCode.GOING_AWAY)
            log.debug("%s: closed", session.label)
