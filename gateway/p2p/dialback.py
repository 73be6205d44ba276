"""Serving the reachability RPCs (docs/dht-records.md, "Reachability"), and the nonce box.

`Responder` answers ``dialback`` and ``info`` for `ValidatingProtocol`:

* a dial-back goes only to the address the request came from (its observed address): the UDP
  nonce datagram to that ip:port, the TCP connect to that ip and the port asked. The request
  names no address, so a responder cannot be aimed at a third party; the reply and the
  datagram are no larger than the request.
* rate limits: per source prefix (`dialback_rate` / `dialback_burst`, the prefix of the
  address whatever `local_by_port` says: a spoofed flood aims at an address) and for all
  sources together (`dialback_global_rate` / `dialback_global_burst`), and at most
  `MAX_TCP_DIALS` TCP connects in progress. Over a limit the request is still answered, with
  the observed address and `refused`, and nothing is dialled.
* the datagram leaves from a fresh UDP socket (a new source port): only a NAT that lets in
  datagrams from a port never contacted (endpoint-independent filtering), or no NAT, passes it.

`NonceBox` is the requester's side: the nonces it waits for, settled by the 0x02 datagrams
the datagram layer hands over (`RpcProtocol.nonce_received`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Final

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.messages.ratelimit import RateLimiter
from gateway.p2p.node import Address
from gateway.p2p.reachwire import DialbackArgs, nonce_datagram, parse_nonce_datagram
from gateway.p2p.rpc import Deferred
from gateway.p2p.settings import DhtSettings
from gateway.p2p.sources import address_prefix

__all__ = ["MAX_TCP_DIALS", "TCP_DIAL_TIMEOUT_S", "NonceBox", "Responder", "tcp_dial"]

log = logging.getLogger(__name__)

TCP_DIAL_TIMEOUT_S: Final = 2.0  # one TCP dial-back: covers one SYN retransmit (sent after 1 s)
MAX_TCP_DIALS: Final = 16  # TCP dial-backs in progress at once (a socket and a task each)
MAX_EXPECTED_NONCES: Final = 64  # nonces a node waits for at once (a check asks 3 peers)


async def tcp_dial(ip: str, port: int, local_ip: str | None = None) -> bool:
    """Whether a TCP connect to ip:port succeeds within `TCP_DIAL_TIMEOUT_S` (closed at once)."""
    local = (local_ip, 0) if local_ip is not None else None
    try:
        async with asyncio.timeout(TCP_DIAL_TIMEOUT_S):
            _reader, writer = await asyncio.open_connection(ip, port, local_addr=local)
    except (OSError, TimeoutError):
        return False
    writer.close()  # nothing to say: the connect was the test
    return True


def _bindable(local_ip: str | None, target_ip: str) -> str | None:
    """`local_ip` if a socket toward `target_ip` can bind to it (same family, not a wildcard)."""
    if local_ip is None:
        return None
    try:
        local, target = ipaddress.ip_address(local_ip), ipaddress.ip_address(target_ip)
    except ValueError:
        return None
    if local.version != target.version or local.is_unspecified:
        return None
    return local_ip


class Responder:
    """A node's answers to ``dialback`` and ``info`` (see module doc)."""

    def __init__(self, settings: DhtSettings, local_ip: Callable[[], str | None]) -> None:
        self.settings = settings
        self.local_ip = local_ip  # the DHT socket's address: dial-backs leave from it
        self._per_source = RateLimiter(settings.dialback_rate, settings.dialback_burst)
        self._global = RateLimiter(
            settings.dialback_global_rate, settings.dialback_global_burst, max_keys=1
        )
        self._dials = 0
        self.services: dict[str, str] = {}  # validated by DhtNode.services
        self.dialled = 0  # dial-backs made (metrics, tests)
        self.refused = 0  # dial-backs refused by a limit

    def _allow(self, ip: str, tcp: bool) -> bool:
        if tcp and self._dials >= MAX_TCP_DIALS:
            return False
        return self._per_source.allow(address_prefix(ip, self.settings)) and self._global.allow(
            "all"
        )

    def dialback(self, sender: Address, args: DialbackArgs) -> object:
        """The reply to a dial-back from `sender`, or a `Deferred` one when a TCP connect is
        asked (the reply waits for it)."""
        observed = [sender[0], sender[1]]
        if not self._allow(sender[0], args.tcp_port is not None):
            self.refused += 1
            return {"observed": observed, "refused": Code.DIALBACK_REFUSED.value}
        self.dialled += 1
        udp = self._send_nonce(sender, args.nonce)
        if args.tcp_port is None:
            return {"observed": observed, "udp": udp, "tcp": None}
        self._dials += 1
        return Deferred(self._dial_tcp(sender[0], args.tcp_port, observed, udp))

    async def _dial_tcp(self, ip: str, port: int, observed: list[object], udp: bool) -> object:
        try:
            ok = await tcp_dial(ip, port, _bindable(self.local_ip(), ip))
        finally:
            self._dials -= 1
        return {"observed": observed, "udp": udp, "tcp": ok}

    def _send_nonce(self, to: Address, nonce: bytes) -> bool:
        """Send `0x02 | nonce` to `to` from a fresh UDP socket; False if the send failed."""
        family = socket.AF_INET6 if ":" in to[0] else socket.AF_INET
        local = _bindable(self.local_ip(), to[0])
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                if local is not None:
                    sock.bind((local, 0))
                sock.sendto(nonce_datagram(nonce), to)
        except OSError as exc:
            log.debug("dial-back datagram to %s failed: %s", to, exc)
            return False
        return True

    def info(self, client_mode: bool) -> dict[str, object]:
        return {"client": client_mode, "services": dict(self.services)}


class NonceBox:
    """Nonces this node waits for; each future gives the address its datagram came from."""

    def __init__(self) -> None:
        self._expected: dict[bytes, asyncio.Future[Address]] = {}
        self.unexpected = 0  # nonce datagrams nobody waited for, or malformed (metrics)

    def expect(self, nonce: bytes) -> asyncio.Future[Address]:
        if len(self._expected) >= MAX_EXPECTED_NONCES:
            raise ReachError(
                f"{MAX_EXPECTED_NONCES} dial-backs are already pending", code=Code.REACH
            )
        future: asyncio.Future[Address] = asyncio.get_running_loop().create_future()
        self._expected[nonce] = future
        return future

    def forget(self, nonce: bytes) -> None:
        future = self._expected.pop(nonce, None)
        if future is not None and not future.done():
            future.cancel()

    def received(self, data: bytes, sender: Address) -> bool:
        """Settle the nonce's future with `sender`; False if malformed or not expected."""
        try:
            nonce = parse_nonce_datagram(data)
        except ReachError:
            self.unexpected += 1
            return False
        future = self._expected.pop(nonce, None)
        if future is None or future.done():
            self.unexpected += 1
            return False
        future.set_result(sender)
        return True

    def __len__(self) -> int:
        return len(self._expected)
