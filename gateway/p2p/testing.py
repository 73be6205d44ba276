"""A hostile source for tests and benches: Sybil node ids and a flood of valid records.

A test double shipped with the package (as device_drivers/testing/ are), used by
tests/test_dht_flood.py and bench/bench_dht.py on loopback addresses. It speaks the DHT wire
format itself (gateway.p2p.rpc's framing and codec, not the validating node's logic):

* `sybils`: one UDP socket answering as many node ids. It announces every id to the victims
  (a PING per id), answers PING, answers FIND_NODE and FIND_VALUE with the Sybil ids closest to
  the target (never a value: it tries to hide records) and refuses every STORE.
* `flood`: STOREs of valid records under fresh keys, each to the k victims closest to its key
  (what an honest publish does), from a second socket that never reads its replies.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import socket
from collections.abc import Sequence
from typing import Any, cast

from gateway.identity import generate_keypair
from gateway.p2p import dht_key_digest, make_contact_record
from gateway.p2p.node import ID_LEN, Address
from gateway.p2p.rpc import MSG_ID_LEN, REQUEST, RESPONSE, Malformed, pack, unpack

SEND_RETRIES = 100  # attempts per datagram while the flood socket's send buffer is full


def near(key: bytes, count: int, shared: int = 8) -> list[bytes]:
    """`count` ids sharing their first `shared` bytes with `key`: closer than any honest node."""
    return [key[:shared] + os.urandom(ID_LEN - shared) for _ in range(count)]


def flood_records(count: int, ttl: int = 600) -> list[tuple[bytes, str]]:
    """(DHT key, record) of `count` valid contact records, each under a fresh key."""
    out = []
    for i in range(count):
        kp = generate_keypair()
        text = make_contact_record(
            kp, seq=1, addrs=[f"ws://192.0.2.{i % 250 + 1}:9/p2p"], td_digest="x", ttl=ttl
        )
        out.append((dht_key_digest(kp.id), text))
    return out


class _Sybils(asyncio.DatagramProtocol):
    def __init__(self, ids: list[bytes], host: str) -> None:
        self.ids = ids
        self.host = host
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # selector transports
        # do not subclass DatagramTransport
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data[:1] != REQUEST or self.transport is None:
            return
        self.requests += 1
        msg_id = data[1 : 1 + MSG_ID_LEN]
        try:
            payload = unpack(data[1 + MSG_ID_LEN :])
        except Malformed:
            return  # an attacker ignores what it cannot parse
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[1], list)):
            return
        name, args = payload
        reply: object
        if name == "ping":
            reply = self.ids[0]
        elif name in ("find_node", "find_value") and len(args) == 2 and isinstance(args[1], bytes):
            target = int.from_bytes(args[1], "big")
            closest = heapq.nsmallest(20, self.ids, key=lambda i: int.from_bytes(i, "big") ^ target)
            reply = [[i, self.host, self.port] for i in closest]
        else:
            reply = False
        self.transport.sendto(RESPONSE + msg_id + pack(reply), addr)


class Attacker:
    """The hostile source on `host` (a 127.0.0.x address)."""

    def __init__(self, host: str, sybil_ids: list[bytes]) -> None:
        self.host = host
        self.sybils = _Sybils(sybil_ids, host)
        self._flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies dropped
        self._flood.bind((host, 0))
        self._flood.setblocking(False)
        self.flood_id = os.urandom(ID_LEN)
        self.sent = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self.sybils, local_addr=(self.host, 0))

    def close(self) -> None:
        if self.sybils.transport is not None:
            self.sybils.transport.close()
        self._flood.close()

    def _send(self, data: bytes, address: Address) -> bool:
        try:
            self._flood.sendto(data, address)
        except BlockingIOError:
            return False
        self.sent += 1
        return True

    async def announce(self, victims: Sequence[Address], pace: int = 200) -> int:
        """A PING from every Sybil id to every victim (from the Sybil socket)."""
        if self.sybils.transport is None:
            raise RuntimeError("start() the attacker first")
        sent = 0
        for sybil in self.sybils.ids:
            body = pack(["ping", [sybil]])
            for victim in victims:
                self.sybils.transport.sendto(REQUEST + os.urandom(MSG_ID_LEN) + body, victim)
                sent += 1
                if sent % pace == 0:
                    await asyncio.sleep(0.002)
        self.sent += sent
        return sent

    async def flood(
        self,
        records: Sequence[tuple[bytes, str]],
        victims: Sequence[tuple[bytes, Address]],
        *,
        k: int = 20,
        batch: int = 5,
        pause: float = 0.004,
    ) -> int:
        """Each record to the `k` victims closest to its key; `batch` records per `pause`."""
        sent = 0
        for n, (key, text) in enumerate(records):
            target = int.from_bytes(key, "big")
            closest = heapq.nsmallest(
                k, victims, key=lambda v: int.from_bytes(v[0], "big") ^ target
            )
            body = pack(["store", [self.flood_id, key, text]])
            for _vid, address in closest:
                for _attempt in range(SEND_RETRIES):  # the socket's send buffer is full
                    if self._send(REQUEST + os.urandom(MSG_ID_LEN) + body, address):
                        sent += 1
                        break
                    await asyncio.sleep(pause)
            if n % batch == batch - 1:
                await asyncio.sleep(pause)
        return sent
