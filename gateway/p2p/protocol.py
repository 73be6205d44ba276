"""The Kademlia RPCs on the datagram layer (`gateway.p2p.rpc`), with validated peer input.

The four RPCs of kademlia 2.2.3, with its argument lists and replies (docs/dht-records.md,
"Wire format"): ``ping(id)``, ``store(id, key, value)``, ``find_node(id, key)`` and
``find_value(id, key)``; and wire version 2's ``dialback(id, nonce, tcp_port)`` and ``info(id)``
("Reachability", served by `gateway.p2p.dialback`). How they are served differs from kademlia's
`KademliaProtocol`:

* every request's arguments are checked (ids and keys are 20 bytes, contacts are IP literals
  with a port); anything else is dropped and counted. No other RPC is served.
* `rpc_store` returns False (it never raises) when the storage refuses the record, so the
  caller gets an answer at once instead of waiting out a timeout.
* A peer that missed a reply is evicted from the routing table (and skipped by lookups for
  `dead_contact_ttl` seconds, see `gateway.p2p.rpc`); if its reply comes late after all, it is
  put back.
* Floods and Sybils (docs/dht-records.md): STOREs are rate-limited per source and charged to a
  per-source storage quota; an unknown sender is pinged back before it enters the routing table,
  which admits few contacts per source (`gateway.p2p.kbucket`); records are handed to a new
  contact by the owned hand-over task (`run_handover`), a bounded number per contact, paced,
  never inline with serving, so PING/FIND_NODE/FIND_VALUE are always answered first.
* Client mode (wire v2): a request flagged as a client's is answered but never admits its
  sender to the routing table (a known contact that turns client is removed); with
  `client_mode` set, this node flags its own requests so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Final

from gateway.errors import ReachError
from gateway.messages.ratelimit import RateLimiter
from gateway.p2p.dialback import NonceBox, Responder
from gateway.p2p.handover import HandOver
from gateway.p2p.kbucket import RoutingTable
from gateway.p2p.node import ID_LEN, Address, Node
from gateway.p2p.reachwire import parse_dialback_args, valid_ip, valid_port
from gateway.p2p.rpc import DROP, AdaptiveTimeout, RpcProtocol, RpcReply
from gateway.p2p.settings import DhtSettings
from gateway.p2p.sources import source_key
from gateway.p2p.storage import RecordStorage

__all__ = ["ValidatingProtocol", "parse_contacts"]

log = logging.getLogger(__name__)

# Contacts accepted from one find_node answer (an honest peer sends at most k).
MAX_CONTACTS_PER_REPLY: Final = 64
# Unknown senders pinged back at once at most (the rest are ignored until they talk again).
MAX_CHECKING: Final = 256
# Checked ids remembered with their address, so a cached contact is not pinged at every message.
MAX_CHECKED: Final = 4096

_RPC_NAMES: Final = frozenset({"ping", "store", "find_node", "find_value", "dialback", "info"})


def _is_id(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == ID_LEN


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
            and valid_ip(entry[1])
            and valid_port(entry[2])
        ):
            out.append(Node(entry[0], entry[1], entry[2]))
    return out


class ValidatingProtocol(RpcProtocol):
    """The DHT wire protocol (kademlia's RPCs on `RpcProtocol`) with validation; see module doc."""

    def __init__(self, source_node: Node, storage: RecordStorage, settings: DhtSettings) -> None:
        super().__init__(
            AdaptiveTimeout(
                cap=settings.rpc_timeout,
                floor=settings.reply_floor,
                stall_floor=settings.stall_after_min,
            ),
            dead_ttl=settings.dead_contact_ttl,
        )
        self.source_node = source_node
        self.settings = settings
        self.storage = storage
        self.router = RoutingTable(source_node, settings, ping=lambda node: self.call_ping(node))
        self._checking: dict[bytes, str] = {}  # unknown senders being pinged back: source
        self._checked: OrderedDict[bytes, Address] = OrderedDict()  # ids that answered a check
        self._store_rate = RateLimiter(settings.store_rate, settings.store_burst)
        self.handover = HandOver(self)
        self.reach = Responder(settings, self._local_ip)
        self.nonces = NonceBox()
        self._from_client = False  # the request being served is flagged as a client's
        storage.set_node_id(source_node.id)
        storage.responsible = self.responsible

    # -- serving ----------------------------------------------------------------------------

    def handle_request(
        self, name: str, args: list[Any], sender: Address, *, client: bool = False
    ) -> object:
        self.received[name if name in _RPC_NAMES else "unknown"] += 1
        if not args or not _is_id(args[0]):
            return DROP
        self._from_client = client  # read by _welcome_sender: handlers run synchronously
        try:
            return self._dispatch(name, args, sender)
        finally:
            self._from_client = False

    def _dispatch(self, name: str, args: list[Any], sender: Address) -> object:
        if name == "ping" and len(args) == 1:
            return self.rpc_ping(sender, args[0])
        if name == "store" and len(args) == 3 and _is_id(args[1]):
            return self.rpc_store(sender, args[0], args[1], args[2])
        if name == "find_node" and len(args) == 2 and _is_id(args[1]):
            return self.rpc_find_node(sender, args[0], args[1])
        if name == "find_value" and len(args) == 2 and _is_id(args[1]):
            return self.rpc_find_value(sender, args[0], args[1])
        if name == "dialback":
            return self.rpc_dialback(sender, args)
        if name == "info" and len(args) == 1:
            self._welcome_sender(sender, args[0])
            return self.reach.info(self.client_mode)
        return DROP

    def _local_ip(self) -> str | None:
        if self.transport is None:
            return None
        return str(self.transport.get_extra_info("sockname")[0])

    def nonce_received(self, data: bytes, sender: Address) -> None:
        if not self.nonces.received(data, sender):
            self.dropped += 1

    def _welcome_sender(self, sender: Address, nodeid: bytes) -> Node:
        """Refresh a known sender; check an unknown one before it enters the routing table.

        A request's source address and id are only claims (UDP source addresses can be
        spoofed, ids are free): an unknown sender is pinged at its address and admitted when
        the answer names the same id (a return-routability check, so the diversity limits
        apply to addresses that really answer). A known id claimed from another address is
        ignored: long-lived contacts are kept (Kademlia's rule), not hijacked. A client (the
        request being served says so) is never admitted; a contact at that address that turned
        client is removed.
        """
        source = Node(nodeid, sender[0], sender[1])
        if nodeid == self.source_node.id:
            return source
        known = self.router.bucket_for(source).nodes.get(nodeid)
        if self._from_client:
            if known is not None and known.same_home_as(source):
                self.router.remove_contact(known)
            self._checked.pop(nodeid, None)
        elif known is None and self._checked.get(nodeid) == sender:
            self.welcome_if_new(source)  # checked recently (a contact in the replacement cache)
        elif known is None:
            self._check_contact(source)
        elif known.same_home_as(source):
            self.welcome_if_new(source)
        return source

    def _check_contact(self, node: Node) -> None:
        if node.id in self._checking or len(self._checking) >= MAX_CHECKING:
            return
        bucket = self.router.bucket_for(node)
        address = node.address
        source = source_key(address[0], address[1], self.settings)
        pending = sum(1 for s in self._checking.values() if s == source)
        if pending >= self.settings.max_per_prefix_bucket or not self.router.diverse(node, bucket):
            self.router.refused += 1  # no room for its source: not even worth a ping
            return
        self._checking[node.id] = source
        future = self.request(address, "ping", [self.source_node.id])

        def checked(done: asyncio.Future[RpcReply]) -> None:
            self._checking.pop(node.id, None)
            ok, reply = done.result()
            if ok and reply == node.id:
                self._checked[node.id] = address
                while len(self._checked) > MAX_CHECKED:
                    self._checked.popitem(last=False)
                self.welcome_if_new(node)

        future.add_done_callback(checked)

    def rpc_ping(self, sender: Address, nodeid: bytes) -> bytes:
        self._welcome_sender(sender, nodeid)
        return self.source_node.id

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

    def rpc_dialback(self, sender: Address, args: list[Any]) -> object:
        """The observed address, and a dial-back to it (`Responder.dialback`); DROP if the
        arguments are not exactly `[id, nonce, tcp port or nil]`."""
        try:
            parsed = parse_dialback_args(args)
        except ReachError:
            return DROP
        self._welcome_sender(sender, parsed.node_id)
        return self.reach.dialback(sender, parsed)

    # -- calling ----------------------------------------------------------------------------

    def replied(self, node: Node) -> None:
        self.welcome_if_new(node)

    def missed(self, node: Node) -> None:
        log.debug("no reply from %s, evicting it", node)
        self.router.remove_contact(node)

    def call_ping(self, node_to_ask: Node) -> asyncio.Future[RpcReply]:
        return self.request(node_to_ask.address, "ping", [self.source_node.id], node_to_ask)

    def ping_address(self, address: Address) -> asyncio.Future[RpcReply]:
        """Ping an address whose node id is unknown (bootstrap)."""
        return self.request(address, "ping", [self.source_node.id])

    def call_store(self, node_to_ask: Node, key: bytes, value: str) -> asyncio.Future[RpcReply]:
        """(True, True) if the peer stored it, (True, False) if refused, (False, None) if silent."""
        return self.request(
            node_to_ask.address,
            "store",
            [self.source_node.id, key, value],
            node_to_ask,
        )

    def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> asyncio.Future[RpcReply]:
        return self.request(
            node_to_ask.address,
            "find_node",
            [self.source_node.id, node_to_find.id],
            node_to_ask,
        )

    def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> asyncio.Future[RpcReply]:
        return self.request(
            node_to_ask.address,
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
