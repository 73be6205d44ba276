"""NAT-PMP (RFC 6886) over an asyncio datagram endpoint connected to the router's port 5351.

Wire format (network byte order), version 0:
  public address request   vers op=0                                    (2 bytes)
  public address response  vers op=128 result(2) epoch(4) ip(4)         (12 bytes)
  mapping request          vers op=1 udp|2 tcp reserved(2) internal(2) external(2) lifetime(4)
  mapping response         vers op=128+op result(2) epoch(4) internal(2) external(2) lifetime(4)
A request is sent again after 250 ms, then after doubling waits (RFC 6886 3.1), here capped at
NATPMP_TRIES sends. Replies are parsed by `parse_reply` (pure, total: ReachError on anything
else); a datagram that is not the answer to the request in flight is ignored.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import ReachError
from gateway.reach.portmap.model import Granted, Proto, check_port, refused, unavailable
from gateway.reach.portmap.udp import RouterPort

log = logging.getLogger(__name__)

NATPMP_PORT: Final = 5351
VERSION: Final = 0
OP_PUBLIC: Final = 0
OP_MAP: Final[dict[str, int]] = {"udp": 1, "tcp": 2}
REPLY_BIT: Final = 128
PUBLIC_REPLY_LEN: Final = 12
MAP_REPLY_LEN: Final = 16
MAX_DATAGRAM: Final = 1100  # RFC 6887's largest PCP message: more is not a NAT-PMP reply
FIRST_WAIT_S: Final = 0.25  # RFC 6886 3.1: the first resend after 250 ms, then doubling
NATPMP_TRIES: Final = 3  # sends per request: 0.25 + 0.5 + 1 s (the RFC's 9 sends take 64 s)
MAX_LIFETIME_S: Final = 7 * 24 * 3600  # a lease asked for or accepted: a week at most

# result codes (RFC 6886 3.5): the router does not speak this, or it refuses
RESULTS: Final[dict[int, str]] = {
    1: "unsupported version",
    2: "not authorized/refused",
    3: "network failure (no WAN address)",
    4: "out of resources",
    5: "unsupported opcode",
}
REFUSING: Final = frozenset({2, 4})


@dataclass(frozen=True)
class PublicReply:
    epoch: int
    ip: str


@dataclass(frozen=True)
class MapReply:
    proto: Proto
    epoch: int
    internal_port: int
    external_port: int
    lifetime_s: int


def public_request() -> bytes:
    return struct.pack("!BB", VERSION, OP_PUBLIC)


def map_request(proto: Proto, internal_port: int, external_port: int, lifetime_s: int) -> bytes:
    """A mapping request; lifetime 0 deletes the mapping (external_port then 0 too)."""
    check_port(internal_port)
    if not 0 <= external_port <= 65535 or not 0 <= lifetime_s <= MAX_LIFETIME_S:
        raise ValueError("external port 0..65535, lifetime 0..a week")
    return struct.pack(
        "!BBHHHI", VERSION, OP_MAP[proto], 0, internal_port, external_port, lifetime_s
    )


def parse_reply(data: bytes) -> PublicReply | MapReply:
    """One NAT-PMP response datagram. ReachError PORTMAP_UNAVAILABLE for anything that is not a
    well-formed version-0 response (or a result saying the router does not do this),
    PORTMAP_REFUSED for a refusal; trailing bytes past the fixed size are ignored."""
    if len(data) < 4:
        raise unavailable("natpmp: a reply shorter than its header")
    if len(data) > MAX_DATAGRAM:
        raise unavailable("natpmp: an oversized reply")
    version, op, result = struct.unpack_from("!BBH", data)
    if version != VERSION:
        raise unavailable(f"natpmp: the router answered version {version} (PCP only?)")
    if op not in (REPLY_BIT + OP_PUBLIC, *(REPLY_BIT + o for o in OP_MAP.values())):
        raise unavailable(f"natpmp: a reply with unknown opcode {op}")
    if result != 0:
        what = RESULTS.get(result, f"result code {result}")
        make = refused if result in REFUSING else unavailable
        raise make(f"natpmp: the router answered {what}")
    if op == REPLY_BIT + OP_PUBLIC:
        if len(data) < PUBLIC_REPLY_LEN:
            raise unavailable("natpmp: a short public address reply")
        epoch, raw_ip = struct.unpack_from("!I4s", data, 4)
        return PublicReply(epoch, str(ipaddress.IPv4Address(raw_ip)))
    if len(data) < MAP_REPLY_LEN:
        raise unavailable("natpmp: a short mapping reply")
    epoch, internal, external, lifetime = struct.unpack_from("!IHHI", data, 4)
    proto: Proto = "udp" if op == REPLY_BIT + OP_MAP["udp"] else "tcp"
    if internal == 0:
        raise unavailable("natpmp: a mapping reply for internal port 0")
    return MapReply(proto, epoch, internal, external, lifetime)


def _final(data: bytes, want: int) -> bool:
    """A refused DATA is the router's answer (not noise): another version, or a result code
    for the opcode awaited. A short or mangled datagram is ignored and the wait goes on."""
    return len(data) >= 4 and (data[0] != VERSION or (data[1] == want and data[2:4] != b"\0\0"))


class NatPmpBackend:
    """NAT-PMP client of one router; requests are sent one at a time (RFC 6886 3.1)."""

    method = "natpmp"

    def __init__(self, port: RouterPort) -> None:
        self._port = port
        self.epoch: int | None = None

    @property
    def ignored(self) -> int:
        """Datagrams that were not the answer awaited."""
        return self._port.ignored

    @classmethod
    async def open(cls, gateway: str, port: int = NATPMP_PORT) -> NatPmpBackend:
        """An endpoint connected to GATEWAY:PORT (the kernel drops datagrams from elsewhere)."""
        return cls(await RouterPort.open(gateway, port, what="natpmp", max_datagram=MAX_DATAGRAM))

    async def _ask(
        self, request: bytes, want: int, internal_port: int = 0
    ) -> PublicReply | MapReply:
        def match(item: bytes) -> PublicReply | MapReply | ReachError | None:
            try:
                reply = parse_reply(item)
            except ReachError as exc:
                if _final(item, want):
                    raise  # the router's answer: a refusal, or it does not do NAT-PMP
                return exc
            if item[1] != want or (
                isinstance(reply, MapReply) and reply.internal_port != internal_port
            ):
                return None
            self._note_epoch(reply.epoch)
            return reply

        return await self._port.ask(request, match, tries=NATPMP_TRIES, first_wait_s=FIRST_WAIT_S)

    def _note_epoch(self, epoch: int) -> None:
        if self.epoch is not None and epoch < self.epoch:
            log.info(
                "natpmp: the router's epoch went back (%d -> %d): it restarted", self.epoch, epoch
            )
        self.epoch = epoch

    async def external_address(self) -> str:
        reply = await self._ask(public_request(), REPLY_BIT + OP_PUBLIC)
        if not isinstance(reply, PublicReply):  # _ask matched the opcode: not reached
            raise unavailable("natpmp: no public address reply")
        return reply.ip

    async def map(
        self, proto: Proto, internal_port: int, external_port: int, lease_s: int
    ) -> Granted:
        want = REPLY_BIT + OP_MAP[proto]
        reply = await self._ask(
            map_request(proto, internal_port, external_port, lease_s), want, internal_port
        )
        if not isinstance(reply, MapReply):  # _ask matched the opcode: not reached
            raise unavailable("natpmp: no mapping reply")
        if reply.external_port == 0 or reply.lifetime_s == 0:
            raise refused(f"natpmp: the router granted no {proto} mapping for port {internal_port}")
        return Granted(reply.external_port, min(reply.lifetime_s, MAX_LIFETIME_S))

    async def unmap(self, proto: Proto, internal_port: int, external_port: int) -> None:
        """Lifetime 0 (RFC 6886 3.4: external port 0 too) deletes the mapping."""
        await self._ask(
            map_request(proto, internal_port, 0, 0), REPLY_BIT + OP_MAP[proto], internal_port
        )

    async def close(self) -> None:
        self._port.close()
