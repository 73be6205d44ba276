"""PCP (RFC 6887, version 2) MAP requests over an asyncio datagram endpoint connected to the
router's port 5351 (the NAT-PMP port: a router speaks either, or both).

Wire format (network byte order); an address is 16 bytes, IPv4 as IPv4-mapped IPv6 ::ffff:a.b.c.d:
  request header   vers=2 R=0|op reserved(2) lifetime(4) client-ip(16)                  24 bytes
  response header  vers=2 R=1|op reserved(1) result(1) lifetime(4) epoch(4) reserved(12) 24 bytes
  MAP (op 1)       nonce(12) protocol(1) reserved(3) internal(2) external(2) external-ip(16) 36
then options (code(1) reserved(1) length(2) data, padded to 4 bytes) up to 1100 bytes in all.
The client-ip is the local address of the socket toward the router; the suggested external IP
is ::ffff:0.0.0.0 (any IPv4). Each (protocol, internal port) keeps one random 12-byte nonce:
renewals and the deletion (lifetime 0) reuse it, so only this client can change its mapping.

A request is sent again after 250 ms, then after doubling waits with the RFC's +-10 % jitter
(RFC 6887 8.1.1, whose 3 s first wait is sized for a carrier-grade NAT, not the LAN router),
PCP_TRIES sends at most. Replies are parsed by `parse_reply` (pure, total: ReachError on
anything else); a datagram that is not the answer to the request in flight (opcode, nonce,
protocol, internal port) is ignored. A NAT-PMP-only router answers "unsupported version" in
NAT-PMP's format (version 0): that is PORTMAP_UNAVAILABLE at once (RFC 6887 9), and the mapper
tries NAT-PMP next. The router's epoch is checked on every reply (RFC 6887 8.5).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import ReachError
from gateway.reach.portmap.model import (
    Granted,
    NoAnswer,
    Proto,
    check_port,
    refused,
    unavailable,
)
from gateway.reach.portmap.udp import RouterPort

log = logging.getLogger(__name__)

PCP_PORT: Final = 5351
VERSION: Final = 2
OP_MAP: Final = 1
REPLY_BIT: Final = 0x80
HEADER_LEN: Final = 24
MAP_LEN: Final = HEADER_LEN + 36  # a MAP request or response without options
MAX_MESSAGE: Final = 1100  # RFC 6887 7: the largest PCP message
NONCE_LEN: Final = 12
PROTOCOLS: Final[dict[Proto, int]] = {"tcp": 6, "udp": 17}  # IANA protocol numbers
V4_MAPPED: Final = bytes(10) + b"\xff\xff"
ANY_V4: Final = V4_MAPPED + bytes(4)  # the suggested external address: any IPv4 one
FIRST_WAIT_S: Final = 0.25  # the first resend, then doubling; a LAN router answers in ms
PCP_TRIES: Final = 3  # sends per request: 0.25 + 0.5 + 1 s, +-10 %: under TIMEOUTS_S["pcp"]
JITTER: Final = 0.1  # RFC 6887 8.1.1: each wait times 1 + RAND, RAND in [-0.1, +0.1]
MAX_LIFETIME_S: Final = 7 * 24 * 3600  # a lease asked for or accepted: a week at most

# result codes (RFC 6887 7.4): the router does not do this (unavailable), or it says no
RESULTS: Final[dict[int, str]] = {
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE (no WAN address)",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH (a NAT between this host and the router)",
    13: "EXCESSIVE_REMOTE_PEERS",
}
REFUSING: Final = frozenset({2, 8, 10, 11})


@dataclass(frozen=True)
class MapReply:
    """A successful MAP response."""

    proto: Proto
    lifetime_s: int
    epoch: int
    nonce: bytes
    internal_port: int
    external_port: int
    external_ip: str


def address_bytes(ip: str) -> bytes:
    """IP as PCP's 16-byte field: an IPv6 address, or IPv4 as IPv4-mapped IPv6."""
    addr = ipaddress.ip_address(ip)
    return V4_MAPPED + addr.packed if addr.version == 4 else addr.packed


def map_request(
    proto: Proto,
    internal_port: int,
    external_port: int,
    lifetime_s: int,
    nonce: bytes,
    client_ip: str,
) -> bytes:
    """A MAP request; lifetime 0 deletes the mapping (with the nonce that made it)."""
    check_port(internal_port)
    if not 0 <= external_port <= 65535 or not 0 <= lifetime_s <= MAX_LIFETIME_S:
        raise ValueError("external port 0..65535, lifetime 0..a week")
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"a mapping nonce is {NONCE_LEN} bytes")
    header = struct.pack("!BBHI16s", VERSION, OP_MAP, 0, lifetime_s, address_bytes(client_ip))
    payload = struct.pack(
        "!12sB3xHH16s", nonce, PROTOCOLS[proto], internal_port, external_port, ANY_V4
    )
    return header + payload


def _check_options(data: bytes) -> None:
    """The options after the MAP payload are well formed (their content is not used)."""
    at = MAP_LEN
    while at < len(data):
        if at + 4 > len(data):
            raise unavailable("pcp: a truncated option")
        (length,) = struct.unpack_from("!H", data, at + 2)
        at += 4 + length + (-length % 4)
        if at > len(data):
            raise unavailable("pcp: an option longer than the reply")


def parse_reply(data: bytes) -> MapReply:
    """One PCP MAP response datagram. ReachError PORTMAP_UNAVAILABLE for anything that is not a
    well-formed version-2 MAP success (a NAT-PMP-only router's answer, a result saying the
    router does not do this), PORTMAP_REFUSED for a refusal."""
    if len(data) < 4:
        raise unavailable("pcp: a reply shorter than its header")
    if len(data) > MAX_MESSAGE:
        raise unavailable("pcp: an oversized reply")
    version, op, result = data[0], data[1], data[3]
    if version == 0:
        raise unavailable("pcp: the router answered in NAT-PMP (it speaks NAT-PMP only)")
    if version != VERSION:
        raise unavailable(f"pcp: the router answered version {version}")
    if op != REPLY_BIT | OP_MAP:
        raise unavailable(f"pcp: a reply with opcode {op} (not a MAP response)")
    if len(data) < HEADER_LEN:
        raise unavailable("pcp: a reply shorter than its header")
    if result != 0:
        what = RESULTS.get(result, f"result code {result}")
        make = refused if result in REFUSING else unavailable
        raise make(f"pcp: the router answered {what}")
    if len(data) < MAP_LEN:
        raise unavailable("pcp: a short MAP reply")
    if len(data) % 4:
        raise unavailable("pcp: a reply not padded to 4 bytes")
    lifetime, epoch = struct.unpack_from("!II", data, 4)
    nonce, number, internal, external, raw_ip = struct.unpack_from("!12sB3xHH16s", data, 24)
    proto = next((p for p, n in PROTOCOLS.items() if n == number), None)
    if proto is None:
        raise unavailable(f"pcp: a MAP reply for protocol {number}")
    if internal == 0:
        raise unavailable("pcp: a MAP reply for internal port 0")
    if not raw_ip.startswith(V4_MAPPED) and raw_ip != bytes(16):  # "::": none (a deletion)
        raise unavailable("pcp: the router named no IPv4 external address")
    _check_options(data)
    ip = str(ipaddress.IPv4Address(raw_ip[12:]))
    return MapReply(proto, lifetime, epoch, nonce, internal, external, ip)


def _final(data: bytes, nonce: bytes) -> bool:
    """A refused DATA is the router's answer (not noise): another version (NAT-PMP's
    "unsupported version"), or a result code for a MAP, copying the request's nonce when the
    payload is there. A short or mangled datagram is ignored and the wait goes on."""
    if len(data) < 4:
        return False
    if data[0] != VERSION:
        return True
    if data[1] != REPLY_BIT | OP_MAP or data[3] == 0:
        return False
    return len(data) < MAP_LEN or data[HEADER_LEN : HEADER_LEN + NONCE_LEN] == nonce


@dataclass
class Epoch:
    """The router's epoch, checked as RFC 6887 8.5 says: time going back by more than a second,
    or running more than 1/16 (plus 2 s) off the local clock, means it lost its mappings."""

    server: int | None = None
    client: float = 0.0

    def valid(self, server_time: int, now: float) -> bool:
        ok = True
        if self.server is not None:
            if server_time < self.server - 1:
                ok = False
            else:
                client_delta, server_delta = now - self.client, server_time - self.server
                ok = not (
                    client_delta + 2 < server_delta - server_delta / 16
                    or server_delta + 2 < client_delta - client_delta / 16
                )
        self.server, self.client = server_time, now
        return ok


class PcpBackend:
    """PCP client of one router; requests are sent one at a time. The external address is the
    one the last MAP reply named (PCP has no separate request for it)."""

    method = "pcp"

    def __init__(self, port: RouterPort) -> None:
        self._port = port
        self._nonces: dict[tuple[Proto, int], bytes] = {}
        self._external_ip: str | None = None
        sockname = port.transport.get_extra_info("sockname")
        self.client_ip: str = sockname[0] if sockname else "0.0.0.0"  # noqa: S104
        self.epoch = Epoch()
        self.restarts = 0  # epoch checks that said the router lost its mappings

    @property
    def ignored(self) -> int:
        """Datagrams that were not the answer awaited."""
        return self._port.ignored

    @classmethod
    async def open(cls, gateway: str, port: int = PCP_PORT) -> PcpBackend:
        """An endpoint connected to GATEWAY:PORT (the kernel drops datagrams from elsewhere)."""
        return cls(await RouterPort.open(gateway, port, what="pcp", max_datagram=MAX_MESSAGE))

    def nonce(self, proto: Proto, internal_port: int) -> bytes:
        """The mapping's nonce: made at its first request, kept for renewals and deletion."""
        return self._nonces.setdefault((proto, internal_port), secrets.token_bytes(NONCE_LEN))

    async def _ask(self, request: bytes, proto: Proto, internal_port: int) -> MapReply:
        nonce = request[HEADER_LEN : HEADER_LEN + NONCE_LEN]

        def match(item: bytes) -> MapReply | ReachError | None:
            try:
                reply = parse_reply(item)
            except ReachError as exc:
                if _final(item, nonce):
                    raise  # the router's answer: a refusal, or it does not do PCP
                return exc
            if (reply.nonce, reply.proto, reply.internal_port) != (nonce, proto, internal_port):
                return None
            self._note_epoch(reply.epoch)
            return reply

        return await self._port.ask(
            request, match, tries=PCP_TRIES, first_wait_s=FIRST_WAIT_S, jitter=JITTER,
            silent=NoAnswer,
        )  # fmt: skip

    def _note_epoch(self, epoch: int) -> None:
        if not self.epoch.valid(epoch, asyncio.get_running_loop().time()):
            self.restarts += 1
            log.info("pcp: the router's epoch says it restarted (lost its mappings): renewing")

    async def external_address(self) -> str:
        if self._external_ip is None:
            raise unavailable("pcp: no external address before the first MAP reply")
        return self._external_ip

    async def map(
        self, proto: Proto, internal_port: int, external_port: int, lease_s: int
    ) -> Granted:
        nonce = self.nonce(proto, internal_port)
        request = map_request(proto, internal_port, external_port, lease_s, nonce, self.client_ip)
        reply = await self._ask(request, proto, internal_port)
        if reply.external_port == 0 or reply.lifetime_s == 0:
            raise refused(f"pcp: the router granted no {proto} mapping for port {internal_port}")
        self._external_ip = reply.external_ip
        lifetime = min(reply.lifetime_s, MAX_LIFETIME_S)
        return Granted(reply.external_port, lifetime, reply.external_ip)

    async def unmap(self, proto: Proto, internal_port: int, external_port: int) -> None:
        """Lifetime 0 with the mapping's nonce deletes it (RFC 6887 15)."""
        nonce = self.nonce(proto, internal_port)
        request = map_request(proto, internal_port, external_port, 0, nonce, self.client_ip)
        await self._ask(request, proto, internal_port)
        self._nonces.pop((proto, internal_port), None)

    async def close(self) -> None:
        self._port.close()
