"""kademlia's protocol, hardened: validated peer input, adaptive timeouts, prompt eviction.

Differences from `kademlia.protocol.KademliaProtocol` / `rpcudp.RPCProtocol`:

* Every datagram is decoded and dispatched synchronously with its arguments checked; a
  malformed or unknown request is dropped (no exception, no task per datagram). Only ping,
  store, find_node and find_value are served.
* `rpc_store` returns False (it never raises) when the storage refuses the record, so the
  caller gets an answer at once instead of waiting out a timeout.
* Outgoing RPCs are plain futures with an adaptive reply timeout (`AdaptiveTimeout`, capped by
  the `rpc_timeout` setting); the routing table is updated when the reply or the timeout
  arrives, whoever awaits the future and even if they stopped waiting.
* A peer that missed a reply is evicted from the routing table and remembered as dead for
  `dead_contact_ttl` seconds, so lookups skip it when other peers still hand it out; if its
  reply comes late after all, it is put back and the late reply time raises the timeout.
* The routing table's `find_neighbors` scans every bucket: kademlia's traverser stops early
  when it reaches an end of the bucket list past empty buckets and then returns too few or no
  contacts (the "early give-up" measured for 1-2 % of keys).
* Floods and Sybils (docs/dht-records.md): STOREs are rate-limited per source and charged to a
  per-source storage quota; the routing table admits few contacts per source (per bucket and
  per table, replacement cache included); records are handed to a new contact by the owned
  hand-over task (`run_handover`), a bounded number per contact, paced, never inline with
  serving, so PING/FIND_NODE/FIND_VALUE are always answered first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Final, cast

import umsgpack
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from gateway.errors import P2PError
from gateway.messages.ratelimit import RateLimiter
from gateway.p2p.handover import HandOver
from gateway.p2p.routing import ValidatingRouter
from gateway.p2p.settings import DhtSettings
from gateway.p2p.sources import source_key
from gateway.p2p.storage import RecordStorage

__all__ = [
    "AdaptiveTimeout",
    "Address",
    "RpcReply",
    "ValidatingProtocol",
    "ValidatingRouter",
    "parse_contacts",
]

log = logging.getLogger(__name__)

RpcReply = tuple[bool, Any]
Address = tuple[str, int]

REQUEST: Final = b"\x00"
RESPONSE: Final = b"\x01"
ID_LEN: Final = 20
# rpcudp frames: 1 type byte, a 20-byte message id, then at most 8 KiB of msgpack.
MAX_RPC_BODY: Final = 8192
MAX_DATAGRAM: Final = 1 + ID_LEN + MAX_RPC_BODY
# Timed-out requests remembered in case their reply comes late (oldest forgotten first).
MAX_LATE: Final = 256
# Weight of one RPC outcome in the moving average of lost RPCs (about the last 16 count).
LOSS_WEIGHT: Final = 1 / 16
# Contacts accepted from one find_node answer (an honest peer sends at most k).
MAX_CONTACTS_PER_REPLY: Final = 64
# Unknown senders pinged back at once at most (the rest are ignored until they talk again).
MAX_CHECKING: Final = 256
# Checked ids remembered with their address, so a cached contact is not pinged at every message.
MAX_CHECKED: Final = 4096

_DROP: Final = object()
_RPC_NAMES: Final = frozenset({"ping", "store", "find_node", "find_value"})
_UNPACK_ERRORS = (
    umsgpack.UnpackException,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    struct.error,
)


def _is_id(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == ID_LEN


def _valid_ip(value: object) -> bool:
    """An IPv4 dotted quad or an IPv6 literal (inet_pton: strict and fast)."""
    if not isinstance(value, str) or len(value) > 45:
        return False
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except (OSError, ValueError):
        return False
    return True


def _valid_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def parse_contacts(value: object, *, limit: int = MAX_CONTACTS_PER_REPLY) -> list[Node]:
    """Contacts from a find_node answer ([[id, ip, port], ...]); malformed entries are skipped."""
    if not isinstance(value, list):
        return []
    out: list[Node] = []
    for entry in value[:limit]:
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and _is_id(entry[0])
            and _valid_ip(entry[1])
            and _valid_port(entry[2])
        ):
            out.append(Node(entry[0], entry[1], entry[2]))
    return out


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


class ValidatingProtocol(KademliaProtocol):  # type: ignore[misc]  # kademlia is untyped
    """The DHT wire protocol (rpcudp framing, kademlia RPCs) with validation; see module doc."""

    def __init__(self, source_node: Node, storage: RecordStorage, settings: DhtSettings) -> None:
        super().__init__(source_node, storage, settings.ksize)
        self.settings = settings
        self.storage: RecordStorage = storage
        self.router: ValidatingRouter = ValidatingRouter(self, settings.ksize, source_node)
        self.timeouts = AdaptiveTimeout(
            cap=settings.rpc_timeout,
            floor=settings.reply_floor,
            stall_floor=settings.stall_after_min,
        )
        self._pending: dict[bytes, _Pending] = {}
        self._late: dict[bytes, _Pending] = {}  # timed-out requests whose reply may still come
        self._dead: dict[Address, float] = {}
        self._checking: dict[bytes, str] = {}  # unknown senders being pinged back: source
        self._checked: OrderedDict[bytes, Address] = OrderedDict()  # ids that answered a check
        self._store_rate = RateLimiter(settings.store_rate, settings.store_burst)
        self.handover = HandOver(self)
        storage.set_node_id(source_node.id)
        storage.responsible = self.responsible
        self.transport: asyncio.DatagramTransport | None = None
        self.loss_rate = 0.0  # recent share of RPCs that got no reply (moving average)
        self.served = 0  # requests answered (metrics)
        self.dropped = 0  # datagrams dropped as malformed
        self.received: Counter[str] = Counter()  # datagrams in: requests by name, "reply"

    def __getattr__(self, name: str) -> Any:
        # rpcudp turns every unknown attribute into a remote call; refuse that magic.
        raise AttributeError(name)

    # -- transport --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's datagram transports do not subclass DatagramTransport; narrow by cast.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        """Fail every outstanding RPC at once (the node is stopping)."""
        pending, self._pending = self._pending, {}
        self._late.clear()
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
        if kind not in (REQUEST, RESPONSE) or not 1 + ID_LEN < len(data) <= MAX_DATAGRAM:
            self.dropped += 1
            return
        address: Address = (str(addr[0]), int(addr[1]))
        msg_id = data[1 : 1 + ID_LEN]
        try:
            payload = umsgpack.unpackb(data[1 + ID_LEN :])
        except _UNPACK_ERRORS:
            self.dropped += 1
            return
        self._dead.pop(address, None)  # it talks, so it is alive
        self.received["reply" if kind == RESPONSE else "request"] += 1
        if kind == REQUEST:
            self._serve(msg_id, payload, address)
        else:
            self._accept(msg_id, payload, address)

    # -- serving ----------------------------------------------------------------------------

    def _serve(self, msg_id: bytes, payload: object, address: Address) -> None:
        if not (isinstance(payload, list) and len(payload) == 2):
            self.dropped += 1
            return
        name, args = payload
        if not isinstance(name, str) or not isinstance(args, list):
            self.dropped += 1
            return
        self.received[name if name in _RPC_NAMES else "unknown"] += 1
        reply = self._dispatch(name, args, address)
        if reply is _DROP:
            self.dropped += 1
            return
        self.served += 1
        self._send(RESPONSE + msg_id + umsgpack.packb(reply), address)

    def _dispatch(self, name: str, args: list[Any], sender: Address) -> object:
        if not args or not _is_id(args[0]):
            return _DROP
        if name == "ping" and len(args) == 1:
            return self.rpc_ping(sender, args[0])
        if name == "store" and len(args) == 3 and _is_id(args[1]):
            return self.rpc_store(sender, args[0], args[1], args[2])
        if name == "find_node" and len(args) == 2 and _is_id(args[1]):
            return self.rpc_find_node(sender, args[0], args[1])
        if name == "find_value" and len(args) == 2 and _is_id(args[1]):
            return self.rpc_find_value(sender, args[0], args[1])
        return _DROP

    def _welcome_sender(self, sender: Address, nodeid: bytes) -> Node:
        """Refresh a known sender; check an unknown one before it enters the routing table.

        A request's source address and id are only claims (UDP source addresses can be
        spoofed, ids are free): an unknown sender is pinged at its address and admitted when
        the answer names the same id (a return-routability check, so the diversity limits
        apply to addresses that really answer). A known id claimed from another address is
        ignored: long-lived contacts are kept (Kademlia's rule), not hijacked.
        """
        source = Node(nodeid, sender[0], sender[1])
        if nodeid == self.source_node.id:
            return source
        known = self.router.buckets[self.router.get_bucket_for(source)].nodes.get(nodeid)
        if known is None and self._checked.get(nodeid) == sender:
            self.welcome_if_new(source)  # checked recently (a contact in the replacement cache)
        elif known is None:
            self._check_contact(source)
        elif (known.ip, known.port) == (source.ip, source.port):
            self.welcome_if_new(source)
        return source

    def _check_contact(self, node: Node) -> None:
        if node.id in self._checking or len(self._checking) >= MAX_CHECKING:
            return
        bucket = self.router.buckets[self.router.get_bucket_for(node)]
        source = source_key(node.ip, node.port, self.settings)
        pending = sum(1 for s in self._checking.values() if s == source)
        if pending >= self.settings.max_per_prefix_bucket or not self.router.diverse(node, bucket):
            self.router.refused += 1  # no room for its source: not even worth a ping
            return
        self._checking[node.id] = source
        future = self.request((node.ip, node.port), "ping", [self.source_node.id])

        def checked(done: asyncio.Future[RpcReply]) -> None:
            self._checking.pop(node.id, None)
            ok, reply = done.result()
            if ok and reply == node.id:
                self._checked[node.id] = (node.ip, node.port)
                while len(self._checked) > MAX_CHECKED:
                    self._checked.popitem(last=False)
                self.welcome_if_new(node)

        future.add_done_callback(checked)

    def rpc_ping(self, sender: Address, nodeid: bytes) -> bytes:
        self._welcome_sender(sender, nodeid)
        node_id: bytes = self.source_node.id
        return node_id

    def rpc_store(self, sender: Address, nodeid: bytes, key: bytes, value: object) -> bool:
        """Store a record if valid and not older than the one held; False (never raise) if not.

        Unless it is the record already held, the sender's source pays one token of its STORE
        rate and, for a new key, a share of its storage quota."""
        self._welcome_sender(sender, nodeid)
        if self.storage.holds(key, value):
            return self.storage.put(key, value)  # the record held, again: a cheap refresh
        source = source_key(sender[0], sender[1], self.settings)
        if not self._store_rate.allow(source):
            self.storage.refused += 1
            self.storage.refusals["rate"] += 1
            return False
        return self.storage.put(key, value, source=source)

    def rpc_find_node(self, sender: Address, nodeid: bytes, key: bytes) -> list[list[Any]]:
        source = self._welcome_sender(sender, nodeid)
        neighbors = self.router.find_neighbors(Node(key), exclude=source)
        return [[n.id, n.ip, n.port] for n in neighbors]

    def rpc_find_value(self, sender: Address, nodeid: bytes, key: bytes) -> object:
        value = self.storage.get(key)
        if value is None:
            return self.rpc_find_node(sender, nodeid, key)
        self._welcome_sender(sender, nodeid)
        return {"value": value}

    # -- calling ----------------------------------------------------------------------------

    def request(
        self, address: Address, name: str, args: list[Any], node: Node | None = None
    ) -> asyncio.Future[RpcReply]:
        """Send one RPC; the future gives (True, reply) or (False, None) after the timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RpcReply] = loop.create_future()
        body = umsgpack.packb([name, args])
        if len(body) > MAX_RPC_BODY:
            raise P2PError(
                f"RPC {name} is {len(body)} bytes > {MAX_RPC_BODY}", code="rpc_too_large"
            )
        msg_id = os.urandom(ID_LEN)
        if not self._send(REQUEST + msg_id + body, address):
            future.set_result((False, None))
            return future
        timer = loop.call_later(self.timeouts.reply_timeout, self._expire, msg_id)
        self._pending[msg_id] = _Pending(future, timer, address, node, time.monotonic())
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
        self.timeouts.observe(time.monotonic() - pending.sent)
        self.loss_rate *= 1 - LOSS_WEIGHT
        if pending.node is not None:
            self.welcome_if_new(pending.node)
        if not pending.future.done():
            pending.future.set_result((True, payload))

    def _accept_late(self, msg_id: bytes, address: Address) -> None:
        """A reply after its timeout: the peer lives and the timeout was too short.

        The reply is not used (its caller gave up), but the peer goes back into the routing
        table and its reply time into the estimate, so a busy node or link raises the timeout
        instead of evicting live peers (replies that beat the timeout alone would bias it low).
        """
        late = self._late.pop(msg_id, None)
        if late is None or late.address != address:
            return
        self.timeouts.observe(time.monotonic() - late.sent)
        self.loss_rate = max(0.0, self.loss_rate - LOSS_WEIGHT)
        if late.node is not None:
            self.welcome_if_new(late.node)

    def _expire(self, msg_id: bytes) -> None:
        pending = self._pending.pop(msg_id, None)
        if pending is None:
            return
        self._late[msg_id] = pending
        while len(self._late) > MAX_LATE:
            del self._late[next(iter(self._late))]
        self._dead[pending.address] = time.monotonic() + self.settings.dead_contact_ttl
        self.loss_rate = self.loss_rate * (1 - LOSS_WEIGHT) + LOSS_WEIGHT
        if pending.node is not None:
            log.debug("no reply from %s, evicting it", pending.node)
            self.router.remove_contact(pending.node)
        if not pending.future.done():
            pending.future.set_result((False, None))

    def is_dead(self, node: Node) -> bool:
        """True if the node missed a reply within `dead_contact_ttl` and has not spoken since."""
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

    def call_ping(self, node_to_ask: Node) -> asyncio.Future[RpcReply]:
        return self.request(
            (node_to_ask.ip, node_to_ask.port), "ping", [self.source_node.id], node_to_ask
        )

    def ping_address(self, address: Address) -> asyncio.Future[RpcReply]:
        """Ping an address whose node id is unknown (bootstrap)."""
        return self.request(address, "ping", [self.source_node.id])

    def call_store(self, node_to_ask: Node, key: bytes, value: str) -> asyncio.Future[RpcReply]:
        """(True, True) if the peer stored it, (True, False) if refused, (False, None) if silent."""
        return self.request(
            (node_to_ask.ip, node_to_ask.port),
            "store",
            [self.source_node.id, key, value],
            node_to_ask,
        )

    def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> asyncio.Future[RpcReply]:
        return self.request(
            (node_to_ask.ip, node_to_ask.port),
            "find_node",
            [self.source_node.id, node_to_find.id],
            node_to_ask,
        )

    def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> asyncio.Future[RpcReply]:
        return self.request(
            (node_to_ask.ip, node_to_ask.port),
            "find_value",
            [self.source_node.id, node_to_find.id],
            node_to_ask,
        )

    # -- routing ----------------------------------------------------------------------------

    def welcome_if_new(self, node: Node) -> None:
        """Add `node` to the routing table; if it is new and admitted, queue its hand-over."""
        if node.id == self.source_node.id:
            return
        new = self.router.is_new_node(node)
        if self.router.add_contact(node) and new:
            self.handover.offer(node)

    def responsible(self, key: bytes) -> bool:
        """Whether this node is among the k closest to `key` that it knows of."""
        target = int.from_bytes(key, "big")
        mine = self.source_node.long_id ^ target
        closer = 0
        for contact in self.router.contacts():
            if contact.long_id ^ target < mine:
                closer += 1
                if closer >= self.router.ksize:
                    return False
        return True

    @property
    def handed_over(self) -> int:
        """Hand-over STOREs sent so far (metrics, tests)."""
        return self.handover.sent

    def handover_pending(self) -> int:
        return len(self.handover)

    async def run_handover(self) -> None:
        """The body of the node's `dht-handover` task."""
        await self.handover.run()
