"""Requests and replies over UDP: the DHT's datagram layer (rpcudp's wire format, hardened).

One datagram is one message (docs/dht-records.md, "Wire format")::

    0x00 | msg id (20 bytes) | msgpack([name, [args...]])    a request
    0x01 | msg id (20 bytes) | msgpack(result)                its reply, same msg id
    0x02 | nonce (16 bytes)                                   a dial-back datagram (wire v2)

byte for byte what `rpcudp` 5 (under `kademlia` 2.2.3) sends and accepts, plus wire version 2's
additions (docs/dht-records.md, "Reachability"): a request whose msg id starts with
`CLIENT_MARK` comes from a node in client mode (`client_mode` sets it on every request sent;
the handler is told), and 0x02 datagrams go to the `nonce_received` hook. What differs from
rpcudp is behaviour, not format:

* every datagram is decoded and handled synchronously (no task per datagram); a datagram that
  is not a well-formed request or reply is dropped and counted, never raised out of the
  protocol; the handler (`handle_request`) answers or drops the request;
* an outgoing request is a plain future settled with (True, reply) or, after an adaptive reply
  timeout (`AdaptiveTimeout`, capped by `rpc_timeout`), with (False, None); the `replied` and
  `missed` hooks run when the reply or the timeout arrives, whoever awaits the future and even
  if they stopped waiting;
* a handler may answer later (`Deferred`, a dial-back's TCP connect): the reply is sent by an
  owned task, cancelled by `close`; a request with `liveness=False` (an RPC old nodes drop) does
  not mark a silent peer dead nor feed the timeout estimate;
* a peer that missed a reply is remembered as dead for `dead_ttl` seconds (`is_dead`) unless it
  talks first; a reply that comes after its timeout still counts: the peer lives (`replied`)
  and its reply time raises the timeout estimate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, cast

import umsgpack

from gateway.errors import P2PError
from gateway.p2p.node import Address, Node

__all__ = [
    "CLIENT_MARK",
    "DROP",
    "MAX_RPC_BODY",
    "MSG_ID_LEN",
    "NONCE",
    "REQUEST",
    "RESPONSE",
    "AdaptiveTimeout",
    "Deferred",
    "Malformed",
    "RpcProtocol",
    "RpcReply",
    "pack",
    "unpack",
]

log = logging.getLogger(__name__)

RpcReply = tuple[bool, Any]

REQUEST: Final = b"\x00"
RESPONSE: Final = b"\x01"
NONCE: Final = b"\x02"
"""Type byte of a dial-back datagram (wire v2): neither a request nor a reply."""
CLIENT_MARK: Final = b"SBc1"
"""First 4 bytes of the msg id of a request sent in client mode (wire v2; 53 42 63 31)."""
MSG_ID_LEN: Final = 20
# At most 8 KiB of msgpack after the type byte and the message id (rpcudp's limit).
MAX_RPC_BODY: Final = 8192
MAX_DATAGRAM: Final = 1 + MSG_ID_LEN + MAX_RPC_BODY
# Timed-out requests remembered in case their reply comes late (oldest forgotten first).
MAX_LATE: Final = 256
# Weight of one RPC outcome in the moving average of lost RPCs (about the last 16 count).
LOSS_WEIGHT: Final = 1 / 16

DROP: Final = object()
"""What `handle_request` returns for a request it does not answer."""


class Deferred:
    """What `handle_request` returns to answer later: the reply is what `work` returns (or
    `DROP`), sent by a task the protocol owns. Handlers bound how many they start."""

    __slots__ = ("work",)

    def __init__(self, work: Coroutine[Any, Any, object]) -> None:
        self.work = work


_UNPACK_ERRORS = (
    umsgpack.UnpackException,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    struct.error,
)


class Malformed(ValueError):
    """Bytes that are not one msgpack value."""


def pack(value: object) -> bytes:
    """msgpack of `value` (bytes as bin, str as str, lists and dicts as arrays and maps)."""
    packed: bytes = umsgpack.packb(value)
    return packed


def unpack(data: bytes) -> object:
    """The msgpack value in `data`; `Malformed` (and nothing else) if it is not one."""
    try:
        value: object = umsgpack.unpackb(data)
    except _UNPACK_ERRORS as exc:
        raise Malformed(str(exc)) from None
    return value


class AdaptiveTimeout:
    """Reply timeout from observed reply times (RFC 6298 smoothed RTT and variance)."""

    def __init__(self, *, cap: float, floor: float, stall_floor: float) -> None:
        self.cap = cap
        self.floor = min(floor, cap)
        self.stall_floor = min(stall_floor, self.floor)
        self.srtt: float | None = None
        self.rttvar = 0.0

    def observe(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    @property
    def rto(self) -> float:
        """Estimated time within which a live peer answers (cap / 3 before any sample)."""
        if self.srtt is None:
            return self.cap / 3
        return self.srtt + 4 * self.rttvar

    @property
    def reply_timeout(self) -> float:
        """How long an RPC waits before the peer counts as dead: 3 RTOs, within [floor, cap]."""
        return min(self.cap, max(self.floor, 3 * self.rto))

    @property
    def stall_after(self) -> float:
        """How long a lookup waits on one query before it asks another peer as well."""
        return min(self.reply_timeout, max(self.stall_floor, self.rto))


@dataclass
class _Pending:
    future: asyncio.Future[RpcReply]
    timer: asyncio.TimerHandle
    address: Address
    node: Node | None
    sent: float
    liveness: bool


class RpcProtocol(asyncio.DatagramProtocol):
    """The request/reply layer on one UDP socket; subclasses answer requests (see module doc)."""

    def __init__(self, timeouts: AdaptiveTimeout, *, dead_ttl: float) -> None:
        self.timeouts = timeouts
        self.dead_ttl = dead_ttl
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, _Pending] = {}
        self._late: dict[bytes, _Pending] = {}  # timed-out requests whose reply may still come
        self._dead: dict[Address, float] = {}
        self._deferred: set[asyncio.Task[object]] = set()  # replies being worked out
        self.client_mode = False  # mark every request sent as from a client (wire v2)
        self.loss_rate = 0.0  # recent share of RPCs that got no reply (moving average)
        self.served = 0  # requests answered (metrics)
        self.dropped = 0  # datagrams dropped as malformed
        self.received: Counter[str] = Counter()  # datagrams in: "request", "reply", by name

    # -- to override --------------------------------------------------------------------------

    def handle_request(
        self, name: str, args: list[Any], sender: Address, *, client: bool = False
    ) -> object:
        """The reply to request `name(*args)` from `sender`, `DROP`, or a `Deferred` reply.

        `client`: the request's msg id carries `CLIENT_MARK` (the sender is in client mode)."""
        return DROP

    def nonce_received(self, data: bytes, sender: Address) -> None:
        """A datagram whose first byte is `NONCE` (a dial-back); dropped unless overridden."""
        self.dropped += 1

    def replied(self, node: Node) -> None:
        """`node` answered a request (in time or late)."""

    def missed(self, node: Node) -> None:
        """`node` did not answer a request within its timeout."""

    # -- transport ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's datagram transports do not subclass DatagramTransport; narrow by cast.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        """Fail every outstanding RPC at once (the node is stopping)."""
        pending, self._pending = self._pending, {}
        self._late.clear()
        for task in self._deferred:
            task.cancel()
        for p in pending.values():
            p.timer.cancel()
            if not p.future.done():
                p.future.set_result((False, None))

    def _send(self, data: bytes, address: Address) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(data, address)
        return True

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        kind = data[:1]
        if kind == NONCE:
            self.received["nonce"] += 1
            self.nonce_received(data, (str(addr[0]), int(addr[1])))
            return
        if kind not in (REQUEST, RESPONSE) or not 1 + MSG_ID_LEN < len(data) <= MAX_DATAGRAM:
            self.dropped += 1
            return
        address: Address = (str(addr[0]), int(addr[1]))
        msg_id = data[1 : 1 + MSG_ID_LEN]
        try:
            payload = unpack(data[1 + MSG_ID_LEN :])
        except Malformed:
            self.dropped += 1
            return
        self._dead.pop(address, None)  # it talks, so it is alive
        self.received["reply" if kind == RESPONSE else "request"] += 1
        if kind == REQUEST:
            self._serve(msg_id, payload, address)
        else:
            self._accept(msg_id, payload, address)

    def _serve(self, msg_id: bytes, payload: object, address: Address) -> None:
        if not (isinstance(payload, list) and len(payload) == 2):
            self.dropped += 1
            return
        name, args = payload
        if not isinstance(name, str) or not isinstance(args, list):
            self.dropped += 1
            return
        reply = self.handle_request(name, args, address, client=msg_id.startswith(CLIENT_MARK))
        if isinstance(reply, Deferred):
            task = asyncio.get_running_loop().create_task(reply.work, name=f"dht-reply:{name}")
            self._deferred.add(task)
            task.add_done_callback(lambda done: self._reply_later(msg_id, done, address))
            return
        self._reply(msg_id, reply, address)

    def _reply(self, msg_id: bytes, reply: object, address: Address) -> None:
        if reply is DROP:
            self.dropped += 1
            return
        self.served += 1
        self._send(RESPONSE + msg_id + pack(reply), address)

    def _reply_later(self, msg_id: bytes, done: asyncio.Task[object], address: Address) -> None:
        self._deferred.discard(done)
        if done.cancelled():
            return  # the node is stopping
        exc = done.exception()
        if exc is not None:  # a handler's bug: logged here, not by the loop's handler
            log.error("a deferred DHT reply failed", exc_info=exc)
        self._reply(msg_id, DROP if exc is not None else done.result(), address)

    def new_msg_id(self) -> bytes:
        """A random msg id; in client mode it starts with `CLIENT_MARK`, and never otherwise."""
        if self.client_mode:
            return CLIENT_MARK + os.urandom(MSG_ID_LEN - len(CLIENT_MARK))
        while (msg_id := os.urandom(MSG_ID_LEN)).startswith(CLIENT_MARK):
            pass  # one in 2**32: a full-mode node's request must not read as a client's
        return msg_id

    # -- calling ------------------------------------------------------------------------------

    def request(
        self,
        address: Address,
        name: str,
        args: list[Any],
        node: Node | None = None,
        *,
        timeout: float | None = None,
        liveness: bool = True,
    ) -> asyncio.Future[RpcReply]:
        """Send one RPC; the future gives (True, reply) or (False, None) after the timeout.

        `node`, if given, is the contact asked: the `replied` / `missed` hooks get it.
        `timeout` replaces the adaptive reply timeout; `liveness=False` (an RPC that old nodes
        drop, or one answered late on purpose): silence does not make the peer dead, a late
        reply is not remembered and the reply time is not an RTT sample."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RpcReply] = loop.create_future()
        body = pack([name, args])
        if len(body) > MAX_RPC_BODY:
            raise P2PError(
                f"RPC {name} is {len(body)} bytes > {MAX_RPC_BODY}", code="rpc_too_large"
            )
        msg_id = self.new_msg_id()
        if not self._send(REQUEST + msg_id + body, address):
            future.set_result((False, None))
            return future
        wait = self.timeouts.reply_timeout if timeout is None else timeout
        timer = loop.call_later(wait, self._expire, msg_id)
        self._pending[msg_id] = _Pending(future, timer, address, node, time.monotonic(), liveness)
        return future

    def _accept(self, msg_id: bytes, payload: object, address: Address) -> None:
        pending = self._pending.get(msg_id)
        if pending is None:
            self._accept_late(msg_id, address)
            return
        if pending.address != address:
            return  # a reply from another address than we asked: ignore it
        del self._pending[msg_id]
        pending.timer.cancel()
        if pending.liveness:
            self.timeouts.observe(time.monotonic() - pending.sent)
            self.loss_rate *= 1 - LOSS_WEIGHT
        if pending.node is not None:
            self.replied(pending.node)
        if not pending.future.done():
            pending.future.set_result((True, payload))

    def _accept_late(self, msg_id: bytes, address: Address) -> None:
        """A reply after its timeout: the peer lives and the timeout was too short.

        The reply is not used (its caller gave up), but the peer counts as alive again and its
        reply time goes into the estimate, so a busy node or link raises the timeout instead of
        evicting live peers (replies that beat the timeout alone would bias it low).
        """
        late = self._late.pop(msg_id, None)
        if late is None or late.address != address:
            return
        self.timeouts.observe(time.monotonic() - late.sent)
        self.loss_rate = max(0.0, self.loss_rate - LOSS_WEIGHT)
        if late.node is not None:
            self.replied(late.node)

    def _expire(self, msg_id: bytes) -> None:
        pending = self._pending.pop(msg_id, None)
        if pending is None:
            return
        if not pending.liveness:
            if not pending.future.done():
                pending.future.set_result((False, None))
            return
        self._late[msg_id] = pending
        while len(self._late) > MAX_LATE:
            del self._late[next(iter(self._late))]
        self._dead[pending.address] = time.monotonic() + self.dead_ttl
        self.loss_rate = self.loss_rate * (1 - LOSS_WEIGHT) + LOSS_WEIGHT
        if pending.node is not None:
            self.missed(pending.node)
        if not pending.future.done():
            pending.future.set_result((False, None))

    def is_dead(self, node: Node) -> bool:
        """True if the node missed a reply within `dead_ttl` and has not spoken since."""
        if node.ip is None or node.port is None:
            return False  # a lookup target, not a contact
        address = (node.ip, node.port)
        until = self._dead.get(address)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._dead[address]
            return False
        return True

    def in_flight(self) -> int:
        return len(self._pending)
