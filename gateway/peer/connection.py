"""One connection of the peer client to one gateway (`PeerConnection`; made by
`gateway.peer.client.PeerClient.connect`).

Every request is a message sealed to the gateway (docs/protocol.md) with a fresh `jti`; the
answer is accepted only if it opens with our key, comes from the gateway's key (`iss`), and
refers to that `jti` (`re`). A refusal raises `PeerRequestError(code, reason, status)`; no
answer within the timeout raises `PeerTimeoutError`; a closed connection fails every pending
request and stream with `PeerConnectionError`. There is no reconnection here: connect again.
Finding the gateway's address and key (the DHT contact record) is not this module's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from gateway.errors import MessageError
from gateway.identity import KeyPair, PublicIdentity
from gateway.messages import Opened, ReplayCache, new_jti
from gateway.messages.claims import DLG_OPS
from gateway.peer import wire
from gateway.peer.closing import ClosedOnExit
from gateway.peer.errors import (
    PeerConnectionError,
    PeerError,
    PeerRequestError,
    PeerTimeoutError,
)
from gateway.peer.sessionkeys import RESEND_CODES, PeerKeys
from gateway.peer.streams import PeerEvent, PeerStream
from gateway.reach.link import Link, LinkFrameError
from gateway.text import clean

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 10.0  # the gateway answers in milliseconds; a lock needs ~1 s
CLOSE_TIMEOUT_S: Final = 2.0  # wait this long for the gateway to confirm a close
SEND_TIMEOUT_S: Final = 10.0  # a gateway that does not read our frame is treated as gone

_UNSET: Final[Any] = object()


@dataclass(frozen=True)
class Reply:
    """A successful answer: `status` 200 (with `output`), 202 (accepted) or 204."""

    status: int
    output: Any = None


@dataclass
class _Pending:
    future: asyncio.Future[Reply]
    digest: str


class PeerConnection(ClosedOnExit):
    """One WebSocket to one gateway. Create it with `PeerClient.connect`."""

    def __init__(
        self,
        key: KeyPair,
        gateway: PublicIdentity,
        url: str,
        link: Link,
        *,
        request_timeout: float = REQUEST_TIMEOUT_S,
        path: str = "direct",
    ) -> None:
        self.key = key
        self.gateway = gateway
        self.url = url
        self.path = (
            path  # how this connection reaches the gateway: direct, mapped, relayed, punched
        )
        self.request_timeout = request_timeout
        #: The delegation chain (link texts, first first) sent with every Thing operation, for
        #: a key that holds no grant of its own (docs/acl.md "Delegation"); () for none.
        self.delegation: tuple[str, ...] = ()
        #: Session keys (docs/protocol.md §8): after the first sealed Thing request, later ones
        #: go as session frames. Set `session_keys.enabled = False` to seal every message.
        self.session_keys = PeerKeys(key, gateway)
        self._link = link
        self._pending: dict[str, _Pending] = {}
        self._by_digest: dict[str, str] = {}  # frame digest -> jti, for plain refusals
        self._streams: dict[str, PeerStream] = {}  # subscribing jti -> stream
        self._replay = ReplayCache()
        self._send_lock = asyncio.Lock()
        self._error: PeerConnectionError | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._read_on(link)

    @property
    def closed(self) -> bool:
        return self._error is not None

    # ------------------------------------------------------------------ operations
    async def things(self) -> list[dict[str, Any]]:
        """The Things this peer may use: [{"name", "title", "id"}]."""
        out = (await self.request("things")).output
        if not isinstance(out, list) or not all(isinstance(x, dict) for x in out):
            raise PeerError("the gateway's Thing list is malformed", code="bad_reply")
        return out

    async def td(self, thing: str) -> dict[str, Any]:
        """The Thing Description of THING (its name or TD id)."""
        out = (await self.request("td", thing=thing)).output
        if not isinstance(out, dict):
            raise PeerError("the gateway's Thing Description is malformed", code="bad_reply")
        return out

    async def read(self, thing: str, prop: str) -> Any:
        """The current value of property PROP."""
        return (await self.request("readproperty", thing=thing, name=prop)).output

    async def write(self, thing: str, prop: str, value: Any) -> None:
        """Set property PROP to VALUE."""
        await self.request("writeproperty", thing=thing, name=prop, input=value)

    async def invoke(self, thing: str, action: str, input: Any = None) -> Any:
        """Invoke ACTION (with INPUT if not None); its output, or None."""
        kw: dict[str, Any] = {} if input is None else {"input": input}
        return (await self.request("invokeaction", thing=thing, name=action, **kw)).output

    def observe(self, thing: str, prop: str) -> PeerStream:
        """Changes of property PROP: use `async with` (or iterate) to start."""
        return PeerStream(self, "observeproperty", thing, prop)

    def subscribe(self, thing: str, event: str) -> PeerStream:
        """Occurrences of event EVENT: use `async with` (or iterate) to start."""
        return PeerStream(self, "subscribeevent", thing, event)

    async def acl_push(self, acl_text: str) -> dict[str, Any]:
        """Install an owner-signed ACL (the owner's key only): {"version", "grants"}."""
        out = (await self.request("aclpush", input=acl_text)).output
        return out if isinstance(out, dict) else {}

    async def claim(self, setup_code: bytes) -> dict[str, Any]:
        """Claim an unclaimed gateway as its owner (this client's key) with the setup code from
        its QR (`gateway.provisioning.payload.GatewayPayload.setup_code`). The code is not sent:
        the request carries a MAC over this message keyed by it (docs/provisioning.md).
        Returns {"owner", "gateway"}; a wrong code raises PeerRequestError("bad_setup_code")."""
        from gateway.provisioning.claim import claim_input  # only claims need it (and the ACL)

        jti = new_jti()
        proof = claim_input(setup_code, self.gateway.id, self.key.id, jti)
        out = (await self.request("claim", input=proof, jti=jti)).output
        return out if isinstance(out, dict) else {}

    async def transfer(self, statement: str) -> dict[str, Any]:
        """Present an ownership transfer statement signed by the current owner
        (`gateway.provisioning.transfer.sign_transfer`); from the current or the new owner.
        Returns {"owner", "previous", "gateway"}."""
        out = (await self.request("transfer", input=statement)).output
        return out if isinstance(out, dict) else {}

    async def audit_checkpoint(self) -> str | None:
        """The gateway's newest signed audit checkpoint (compact JWS; the owner's key only),
        None if it has signed none yet. Check it with `gateway.audit.checkpoint.verify`."""
        out = (await self.request("auditcheckpoint")).output
        jws = out.get("checkpoint") if isinstance(out, dict) else 0
        if jws is not None and not isinstance(jws, str):
            raise PeerError("the gateway's audit checkpoint is malformed", code="bad_reply")
        return jws

    async def audit_records(self, after: int = 0, limit: int | None = None) -> dict[str, Any]:
        """A page of the gateway's hash-chained audit records after row id AFTER, at most LIMIT
        (the owner's key only): {"columns", "records", "last", "more"} (docs/protocol.md);
        `gateway.audit.remote.parse_page` checks it."""
        page: dict[str, Any] = {"after": after}
        if limit is not None:
            page["limit"] = limit
        out = (await self.request("auditrecords", input=page)).output
        if not isinstance(out, dict):
            raise PeerError("the gateway's audit page is malformed", code="bad_reply")
        return out

    async def request(
        self,
        op: str,
        *,
        thing: str | None = None,
        name: str | None = None,
        input: Any = _UNSET,
        timeout_s: float | None = None,
        jti: str | None = None,
    ) -> Reply:
        """Send one request and wait for its reply (the operations above use this)."""
        body: dict[str, Any] = {"op": op}
        if thing is not None:
            body["thing"] = thing
        if name is not None:
            body["name"] = name
        if input is not _UNSET:
            body["input"] = input
        if self.delegation and op in DLG_OPS:
            body["dlg"] = list(self.delegation)
        jti = new_jti() if jti is None else jti
        limit = self.request_timeout if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                return await self._exchange(body, jti)
        except TimeoutError:
            raise PeerTimeoutError(
                f"no answer to {op} from the gateway within {limit:g} s"
            ) from None

    async def _exchange(self, body: dict[str, Any], jti: str) -> Reply:
        iat = int(time.time())  # one issue time for every frame of this request
        for attempt in (1, 2):
            future, via_session = await self._send(body, jti, iat)
            try:
                return await future
            except PeerRequestError as exc:
                if attempt == 2 or not via_session or exc.code not in RESEND_CODES:
                    raise
                # The gateway no longer knows our session key (it lost it, or its TTL ran out
                # first): stop using it and send the request again, sealed. The refusal is an
                # unauthenticated plain frame, so the first frame may in truth be held by
                # someone: the resend carries the same jti, iat and exp, and the gateway
                # executes at most one of the two (docs/protocol.md §8.4).
                self.session_keys.retire(self._link)
            finally:
                self.session_keys.finished(jti)
                pending = self._pending.pop(jti, None)
                if pending is not None:
                    self._by_digest.pop(pending.digest, None)
        raise AssertionError("unreachable")  # pragma: no cover: the loop returns or raises

    async def close(self) -> None:
        """Close the connection; pending requests and streams fail. Idempotent."""
        self._fail_all(PeerConnectionError("connection closed by this client"))
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError, RuntimeError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._link.close()
        for reader in list(self._readers):
            if not reader.done():
                reader.cancel()
        if self._readers:
            await asyncio.wait(self._readers)

    # ------------------------------------------------------------------ streams
    async def _start_stream(self, stream: PeerStream) -> None:
        jti = new_jti()
        stream.jti = jti
        self._streams[jti] = stream
        try:
            await self.request(stream.op, thing=stream.thing, name=stream.name, jti=jti)
        except BaseException as exc:
            self._streams.pop(jti, None)
            stream._finish(exc if isinstance(exc, PeerError) else None)
            raise

    def _forget_stream(self, stream: PeerStream) -> None:
        if stream.jti is not None and self._streams.get(stream.jti) is stream:
            del self._streams[stream.jti]

    # ------------------------------------------------------------------ sending
    async def _send(
        self, body: dict[str, Any], jti: str, iat: int
    ) -> tuple[asyncio.Future[Reply], bool]:
        if self._error is not None:
            raise PeerConnectionError(str(self._error), code=self._error.code)
        link = self._link
        try:
            frame, via_session = self.session_keys.frame(body, jti, link, iat)
        except MessageError as exc:  # we would send what the gateway refuses: don't
            status = wire.refusal_status(exc.code)
            raise PeerRequestError(exc.code, f"not sent: {exc}", status) from None
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        digest = wire.frame_digest(frame)
        self._pending[jti] = _Pending(future, digest)
        self._by_digest[digest] = jti
        try:
            async with self._send_lock, asyncio.timeout(SEND_TIMEOUT_S):
                await link.send(frame)
        except (TimeoutError, aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            self._pending.pop(jti, None)
            self._by_digest.pop(digest, None)
            why = clean(str(exc)) or type(exc).__name__
            raise PeerConnectionError(f"cannot send to the gateway: {why}") from None
        return future, via_session

    # ------------------------------------------------------------------ receiving
    def _read_on(self, link: Link) -> None:
        task = asyncio.create_task(self._read(link), name=f"peer-read-{self.gateway.id[:8]}")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def adopt(self, link: Link, path: str, url: str) -> None:
        """Move this connection onto LINK (a better path to the same gateway, e.g. a punched
        TCP connection replacing a relay circuit): new requests go over it and every active
        stream is started again on it; the old link is closed once its pending requests are
        answered (at most the request timeout). If re-starting a stream fails it ends with
        that error, as it would on a lost connection."""
        if self._error is not None:
            await link.close()
            raise PeerConnectionError(str(self._error), code=self._error.code)
        old, old_pending = self._link, set(self._pending)
        self._link, self.path, self.url = link, path, url
        self._read_on(link)
        for jti, stream in list(self._streams.items()):
            if not stream.active:
                continue
            self._streams.pop(jti, None)
            stream._moved()
            try:
                await self._start_stream(stream)
            except PeerError:
                continue  # the stream was finished with the error by _start_stream
        waiting = [p.future for j, p in self._pending.items() if j in old_pending]
        if waiting:
            await asyncio.wait(waiting, timeout=self.request_timeout)
        await old.close()

    async def _read(self, link: Link) -> None:
        reason = "the gateway closed the connection"
        try:
            while True:
                try:
                    frame = await link.recv()
                except LinkFrameError as exc:
                    reason = f"connection error: {exc.reason}"
                    if exc.close_code == aiohttp.WSCloseCode.UNSUPPORTED_DATA:
                        reason = "the gateway sent a binary frame"
                    break
                if frame is None:
                    break
                self._on_frame(frame, link)
            code = link.close_code
            if code is not None:
                reason = f"{reason} (WebSocket close code {code})"
        finally:
            self.session_keys.drop(link)
            if link is self._link:  # an old link closing after `adopt` fails nothing
                self._fail_all(PeerConnectionError(reason))

    def _on_frame(self, frame: str, link: Link) -> None:
        if frame.startswith("{"):
            self._on_plain_error(frame)
            return
        try:
            msg = self.session_keys.open(frame, link, self._replay)
        except MessageError as exc:
            log.warning("dropped a frame from %s: %s", clean(self.url), exc.code)
            return
        if msg.sender.id != self.gateway.id:
            log.warning("dropped a message from %s: not the gateway's key", clean(msg.sender.id))
            return
        if msg.typ in ("reply", "error"):
            self.session_keys.answered(msg, link)
        if msg.typ == "reply":
            claims = msg.claims
            self._settle(claims["re"], Reply(claims["status"], claims.get("output")))
        elif msg.typ == "error":
            self._on_error(msg)
        elif msg.typ == "event":
            self._on_event(msg)
        else:
            log.debug("ignored a %s message from the gateway", msg.typ)

    def _settle(self, jti: str, result: Reply | BaseException) -> bool:
        pending = self._pending.get(jti)
        if pending is None or pending.future.done():
            return False
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)
        return True

    def _on_plain_error(self, frame: str) -> None:
        plain = wire.parse_plain_error(frame)
        if plain is None:
            log.warning("dropped a malformed frame from %s", clean(self.url))
            return
        jti = self._by_digest.get(plain.frame)
        reason = "refused by the gateway before opening the message"
        if jti is None or not self._settle(jti, PeerRequestError(plain.code, reason, plain.status)):
            log.info("the gateway refused a frame: %s", clean(plain.code, 64))

    def _on_error(self, msg: Opened) -> None:
        claims = msg.claims
        status = claims.get("status", 400)
        error = PeerRequestError(claims["code"], claims.get("message", ""), status)
        re = claims.get("re")
        if claims["code"] == "replayed" and isinstance(re, str) and re in self._pending:
            # A jti goes out twice only as the sealed resend of a refused session frame, with
            # the same iat and exp; otherwise someone on the path (a relay) replayed our frame.
            # Either way the gateway refused a copy; the answer to the one it ran is to come.
            log.warning("a copy of our request was replayed on the way; the gateway refused it")
            return
        if not isinstance(re, str):
            log.info("the gateway reported %s", clean(claims["code"], 64))
        elif not self._settle(re, error) and re in self._streams:
            self._streams.pop(re)._finish(error)

    def _on_event(self, msg: Opened) -> None:
        claims = msg.claims
        re = claims.get("re")
        stream = self._streams.get(re) if isinstance(re, str) else None
        if stream is None and re is None:
            stream = next(
                (
                    s
                    for s in self._streams.values()
                    if (s.thing, s.name) == (claims["thing"], claims["name"])
                ),
                None,
            )
        if stream is not None:
            stream._push(
                PeerEvent(claims["thing"], claims["name"], claims["seq"], claims.get("data"))
            )

    def _fail_all(self, error: PeerConnectionError) -> None:
        if self._error is None:
            self._error = error
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(self._error)
        self._pending.clear()
        self._by_digest.clear()
        for stream in list(self._streams.values()):
            stream._finish(self._error)
        self._streams.clear()


__all__ = ["CLOSE_TIMEOUT_S", "REQUEST_TIMEOUT_S", "PeerConnection", "Reply"]
