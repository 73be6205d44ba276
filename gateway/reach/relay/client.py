"""`RelayReservations`: a gateway behind NAT keeps reservations at `want` relays.

Each relay gets one control WebSocket (`/relay/v1/reserve`): the signed answer to its challenge
(reservation.py), a renewal at half-life on the same socket, and an ``incoming`` message per
peer, answered by opening ``/relay/v1/accept/{circuit}`` and handing that socket to
`on_circuit`. A lost relay (closed, refused, silent past the heartbeat) is replaced at once by
another from `find_relays()`; a relay that failed is tried again only after a capped, jittered
per-relay backoff, and an empty or failing `find_relays()` is retried with the same policy.
`addrs` lists the relayed connect URLs; `on_change` callbacks run whenever that list changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from device_drivers.backoff import Backoff
from gateway.codes import Code
from gateway.errors import ReachError
from gateway.identity import KeyPair
from gateway.reach.relay.limits import (
    ACCEPT_PATH,
    CONNECT_PATH,
    HANDSHAKE_TIMEOUT_S,
    MAX_FRAME_BYTES,
    RESERVE_PATH,
)
from gateway.reach.relay.reservation import (
    MAX_CONTROL_BYTES,
    parse_challenge,
    parse_control,
    sign_reservation,
)
from gateway.tasks import TaskOwner, describe
from gateway.text import clean

log = logging.getLogger(__name__)

__all__ = ["FindRelays", "OnCircuit", "RelayReservations"]

FindRelays = Callable[[], Awaitable[list[str]]]
OnCircuit = Callable[[aiohttp.ClientWebSocketResponse, str], Awaitable[None]]

#: A relay that does not complete a WebSocket upgrade in this time is not worth waiting for.
CONNECT_TIMEOUT_S: Final = 5.0
#: A DHT lookup for relays takes a few seconds at most; a stuck one must not stall the upkeep.
FIND_TIMEOUT_S: Final = 15.0
#: With every reservation held, look again this often (a relay list that changed, a lost wake).
RECHECK_S: Final = 30.0
#: Ping interval on the control socket: a relay gone silent (no FIN) is noticed within 2x this.
HEARTBEAT_S: Final = 15.0
#: Waiting for the relay's close frame after ours, then the TCP is cut.
CLOSE_TIMEOUT_S: Final = 2.0
#: A relay granting less than this is refused: renewing at half-life would spin.
MIN_TTL_S: Final = 1.0
MAX_CIRCUITS: Final = 16  # relayed peers served at once, over every relay
MAX_CANDIDATES: Final = 64  # relay URLs considered from one find_relays() answer
MAX_URL: Final = 256
MAX_TRACKED: Final = 256  # relays remembered for their backoff
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")


def relay_base(url: object) -> str | None:
    """URL as a relay base URL ``http(s)://host[:port]`` (no path, no user info), or None."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL or not url.isprintable():
        return None
    try:
        parts = urlsplit(url.strip())
        _ = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def ws_url(base: str) -> str:
    """The WebSocket form of a relay base URL (http -> ws, https -> wss)."""
    return "ws" + base[4:]


@dataclass(eq=False)
class _Link:
    url: str
    addr: str
    reserved: bool = False
    renew_at: float = 0.0  # loop time
    expires: float = 0.0  # Unix time, as the relay said
    since: float = 0.0
    circuits: int = 0


class RelayReservations:
    """Keeps reservations at `want` distinct relays; see the module docstring."""

    def __init__(
        self,
        keypair: KeyPair,
        find_relays: FindRelays,
        on_circuit: OnCircuit,
        *,
        want: int = 2,
        session: aiohttp.ClientSession | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if want < 1:
            raise ValueError("want must be >= 1")
        self.keypair = keypair
        self.want = want
        self.on_change: list[Callable[[], None]] = []
        self._find = find_relays
        self._on_circuit = on_circuit
        self._session = session
        self._own_session = session is None
        self._backoff = backoff or Backoff(initial_s=0.5, cap_s=30.0)
        self._penalty: dict[str, tuple[float, Backoff]] = {}  # url -> (retry after, backoff)
        self._links: dict[str, _Link] = {}
        self._errors: dict[str, str] = {}
        self._circuits = 0
        self._wake = asyncio.Event()
        self._tasks = TaskOwner("relay reservations", logger=log)
        self._running = False

    # ------------------------------------------------------------------ public
    @property
    def addrs(self) -> list[str]:
        """The relayed connect URLs (ws:// or wss://), in the order they were reserved."""
        return [link.addr for link in self._links.values() if link.reserved]

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "want": self.want,
            "reserved": len(self.addrs),
            "circuits": self._circuits,
            "relays": [
                {
                    "url": link.url,
                    "addr": link.addr,
                    "reserved": link.reserved,
                    "expires_in": max(0, int(link.expires - now)) if link.reserved else None,
                    "circuits": link.circuits,
                }
                for link in self._links.values()
            ],
            "errors": dict(self._errors),
        }

    async def start(self) -> None:
        if self._running:
            raise RuntimeError("RelayReservations already started")
        self._running = True
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._tasks.keep_running(self._upkeep, name="relay-upkeep", backoff=Backoff(cap_s=10.0))

    async def stop(self) -> None:
        """Drop every reservation and circuit. Idempotent."""
        self._running = False
        await self._tasks.close()
        if self._own_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # ------------------------------------------------------------------ upkeep
    def _changed(self) -> None:
        for callback in list(self.on_change):
            try:
                callback()
            except Exception as exc:  # a broken listener must not stop the upkeep
                log.error("relay on_change callback failed: %s", describe(exc))

    async def _upkeep(self) -> None:
        while True:
            self._wake.clear()
            missing = self.want - len(self._links)
            delay = RECHECK_S
            if missing > 0 and await self._fill(missing) == 0:
                delay = self._backoff.next()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _fill(self, missing: int) -> int:
        """Start reservations at up to MISSING new relays; how many were started."""
        try:
            async with asyncio.timeout(FIND_TIMEOUT_S):
                found = await self._find()
        except Exception as exc:  # a DHT failure: retried after a backoff
            log.warning("finding relays failed: %s", describe(exc))
            return 0
        now = asyncio.get_running_loop().time()
        started = 0
        for raw in list(found)[:MAX_CANDIDATES] if isinstance(found, list) else []:
            url = relay_base(raw)
            if url is None or url in self._links or self._penalty.get(url, (0.0,))[0] > now:
                continue
            link = _Link(url, f"{ws_url(url)}{CONNECT_PATH}{self.keypair.id}")
            self._links[url] = link
            self._tasks.spawn(self._run(link), name=f"relay-link-{clean(url, 60)}")
            started += 1
            if started >= missing:
                break
        return started

    def _punish(self, url: str, held_s: float) -> None:
        now = asyncio.get_running_loop().time()
        _, backoff = self._penalty.get(url, (0.0, Backoff(initial_s=1.0, cap_s=60.0)))
        if held_s > backoff.cap_s:  # it served well for a while: start from the bottom
            backoff.reset()
        self._penalty[url] = (now + backoff.next(), backoff)
        if len(self._penalty) > MAX_TRACKED:
            for old in [u for u, (t, _) in self._penalty.items() if t <= now]:
                del self._penalty[old]
            while len(self._penalty) > MAX_TRACKED:
                del self._penalty[next(iter(self._penalty))]

    async def _run(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await self._reserve(link)
        except (ReachError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._errors[link.url] = describe(exc)
            log.info("relay %s lost: %s", clean(link.url), describe(exc))
        finally:
            self._links.pop(link.url, None)
            if len(self._errors) > MAX_TRACKED:
                self._errors.pop(next(iter(self._errors)))
            self._punish(link.url, loop.time() - began)
            if link.reserved:
                self._changed()
            self._wake.set()

    # ------------------------------------------------------------------ one relay
    async def _reserve(self, link: _Link) -> None:
        session = self._session
        if session is None:
            raise ReachError("not started", code=Code.RELAY_UNREACHABLE)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ws = await session.ws_connect(
                ws_url(link.url) + RESERVE_PATH,
                heartbeat=HEARTBEAT_S,
                max_msg_size=MAX_CONTROL_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S),
            )
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await self._answer(ws, await self._next(ws))
                self._reserved(link, await self._next(ws))
            await self._serve(link, ws)
        finally:
            await ws.close()

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            body = parse_control(msg.data, "relay message")
            if body["type"] == "refused":
                code = Code.lookup(str(body.get("error"))) or Code.RELAY_UNREACHABLE
                raise ReachError(f"relay refused: {clean(body.get('reason'))}", code=code)
            return body
        raise ReachError("the relay closed the control socket", code=Code.RELAY_UNREACHABLE)

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, msg: dict[str, Any]) -> None:
        jws = sign_reservation(self.keypair, parse_challenge(msg))
        await ws.send_json({"type": "reserve", "jws": jws})

    def _reserved(self, link: _Link, msg: dict[str, Any]) -> None:
        ttl, expires = msg.get("ttl"), msg.get("expires")
        if msg["type"] != "reserved" or msg.get("id") != self.keypair.id:
            raise ReachError("not a reservation for our id", code=Code.RELAY_UNREACHABLE)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            # no ttl: fall back to the relay's clock
            ttl = expires - time.time() if isinstance(expires, int | float) else 0.0
        if ttl < MIN_TTL_S:
            raise ReachError("the relay granted no time", code=Code.RELAY_UNREACHABLE)
        ttl = min(float(ttl), 86_400.0)
        link.expires = time.time() + ttl
        link.renew_at = asyncio.get_running_loop().time() + ttl / 2
        if not link.reserved:
            link.reserved = True
            link.since = time.time()
            self._backoff.reset()
            self._errors.pop(link.url, None)
            log.info("reserved at relay %s", clean(link.url))
            self._changed()

    async def _serve(self, link: _Link, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Renew at half-life and answer incoming circuits until the relay is lost."""
        loop = asyncio.get_running_loop()
        renewing_until: float | None = None
        while True:
            deadline = link.renew_at if renewing_until is None else renewing_until
            try:
                async with asyncio.timeout_at(max(deadline, loop.time() + 0.001)):
                    msg = await self._next(ws)
            except TimeoutError:
                if renewing_until is not None:
                    raise ReachError("renewal unanswered", code=Code.RELAY_UNREACHABLE) from None
                await ws.send_json({"type": "renew"})
                renewing_until = loop.time() + HANDSHAKE_TIMEOUT_S
                continue
            kind = msg["type"]
            if kind == "incoming":
                self._incoming(link, msg)
            elif kind == "challenge" and renewing_until is not None:
                await self._answer(ws, msg)
            elif kind == "reserved" and renewing_until is not None:
                self._reserved(link, msg)
                renewing_until = None
            else:
                raise ReachError(f"unexpected {clean(kind, 32)!r}", code=Code.RELAY_UNREACHABLE)

    def _incoming(self, link: _Link, msg: dict[str, Any]) -> None:
        token, source = msg.get("circuit"), clean(msg.get("from"), 64)
        if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
            raise ReachError("bad circuit token", code=Code.RELAY_UNREACHABLE)
        if self._circuits >= MAX_CIRCUITS:
            log.warning("relayed peer from %s dropped: %d circuits", source, MAX_CIRCUITS)
            return
        self._circuits += 1
        link.circuits += 1
        self._tasks.spawn(self._circuit(link, token, source), name=f"relay-circuit-{token[:8]}")

    async def _circuit(self, link: _Link, token: str, source: str) -> None:
        try:
            session = self._session
            if session is None:
                return
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    ws = await session.ws_connect(
                        f"{ws_url(link.url)}{ACCEPT_PATH}{token}",
                        max_msg_size=MAX_FRAME_BYTES,
                        heartbeat=HEARTBEAT_S,
                        timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S),
                    )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.info("relayed peer from %s lost: %s", source, describe(exc))
                return
            try:
                await self._on_circuit(ws, f"relay {clean(link.url)} from {source}")
            finally:
                await ws.close()
        finally:
            self._circuits -= 1
            link.circuits -= 1
