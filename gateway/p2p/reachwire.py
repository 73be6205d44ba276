"""The wire of the reachability RPCs (docs/dht-records.md, "Reachability"): parsers and limits.

Wire version 2 adds to kademlia's four RPCs, without changing them:

* the **client flag**: a request whose message id starts with `CLIENT_MARK` comes from a node in
  client mode (it asks, it must not be added to routing tables); old nodes echo the id and
  answer as before;
* ``dialback(id, nonce, tcp_port | nil)``: the answer names the requester's observed address,
  and the responder dials back (a `0x02` nonce datagram from a fresh UDP port, a TCP connect);
* ``info(id)``: the services (relay URLs, ...) a node advertises, and whether it is a client.

Everything a peer sends is checked here, pure functions without I/O; refusals raise
`ReachError` with `Code.DIALBACK_REFUSED` (dial-backs, nonce datagrams) or `Code.REACH` (info
replies, services), never anything else (tests/fuzz/ feeds them mutated bytes).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.p2p.node import ID_LEN, Address
from gateway.p2p.rpc import CLIENT_MARK, NONCE, Malformed, unpack

__all__ = [
    "CLIENT_MARK",
    "MAX_SERVICES",
    "MAX_SERVICE_URL",
    "NONCE",
    "NONCE_LEN",
    "DialbackArgs",
    "DialbackReply",
    "InfoReply",
    "nonce_datagram",
    "parse_dialback_args",
    "parse_dialback_reply",
    "parse_info_reply",
    "parse_nonce_datagram",
    "service_host",
    "valid_ip",
    "valid_port",
    "validate_services",
]

NONCE_LEN: Final = 16
# A nonce datagram is 17 bytes: under rpcudp's 22-byte minimum, so stock nodes ignore it unread.
NONCE_DATAGRAM_LEN: Final = 1 + NONCE_LEN
MAX_SERVICES: Final = 8
MAX_SERVICE_URL: Final = 256
MAX_REPLY_KEYS: Final = 16  # members of a dialback or info reply read at most
MAX_REFUSAL: Final = 64  # characters of a refusal code read from a dialback reply
SERVICE_SCHEMES: Final = frozenset({"http", "https", "ws", "wss"})
_SERVICE_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _refuse(why: str, code: Code = Code.DIALBACK_REFUSED) -> ReachError:
    return ReachError(why, code=code)


def valid_ip(value: object) -> bool:
    """An IPv4 dotted quad or an IPv6 literal (inet_pton: strict and fast)."""
    if not isinstance(value, str) or len(value) > 45:
        return False
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except (OSError, ValueError):
        return False
    return True


def valid_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _decode(data: bytes, code: Code) -> object:
    try:
        return unpack(data)
    except Malformed as exc:
        raise _refuse(f"not msgpack: {exc}", code) from None


# -- dial-back --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DialbackArgs:
    node_id: bytes
    nonce: bytes
    tcp_port: int | None


def parse_dialback_args(args: object) -> DialbackArgs:
    """`[sender id (20 bytes), nonce (16 bytes), tcp port (1-65535) or nil]`, exactly."""
    if isinstance(args, bytes):
        args = _decode(args, Code.DIALBACK_REFUSED)
    if not isinstance(args, list) or len(args) != 3:
        raise _refuse("dialback takes [id, nonce, tcp port or nil]")
    node_id, nonce, tcp_port = args
    if not isinstance(node_id, bytes) or len(node_id) != ID_LEN:
        raise _refuse(f"the sender id is not {ID_LEN} bytes")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
        raise _refuse(f"the nonce is not {NONCE_LEN} bytes")
    if tcp_port is not None and not valid_port(tcp_port):
        raise _refuse("the TCP port is not nil or 1-65535")
    return DialbackArgs(node_id, nonce, tcp_port)


@dataclass(frozen=True)
class DialbackReply:
    observed: Address
    udp: bool  # the responder sent the nonce datagram
    tcp: bool | None  # the responder's TCP connect succeeded (None: not asked)
    refused: str | None  # a refusal code (then no dial-back was made)


def _mapping(value: object, code: Code) -> dict[object, object]:
    if isinstance(value, bytes):
        value = _decode(value, code)
    if not isinstance(value, dict):
        raise _refuse("the reply is not a map", code)
    if len(value) > MAX_REPLY_KEYS:
        raise _refuse(f"the reply has over {MAX_REPLY_KEYS} members", code)
    return value


def parse_dialback_reply(value: object) -> DialbackReply:
    """`{"observed": [ip, port], "udp": bool, "tcp": bool | nil}` or, refused,
    `{"observed": [ip, port], "refused": code}`; other members are ignored."""
    reply = _mapping(value, Code.DIALBACK_REFUSED)
    observed = reply.get("observed")
    if not (
        isinstance(observed, list)
        and len(observed) == 2
        and valid_ip(observed[0])
        and valid_port(observed[1])
    ):
        raise _refuse("observed is not [ip, port]")
    refused = reply.get("refused")
    if refused is not None and not (isinstance(refused, str) and 0 < len(refused) <= MAX_REFUSAL):
        raise _refuse("refused is not a short string")
    udp, tcp = reply.get("udp", False), reply.get("tcp")
    if not isinstance(udp, bool) or not (tcp is None or isinstance(tcp, bool)):
        raise _refuse("udp is not a bool or tcp not a bool or nil")
    address = (str(observed[0]), int(observed[1]))
    return DialbackReply(
        address, udp and refused is None, tcp if refused is None else None, refused
    )


def nonce_datagram(nonce: bytes) -> bytes:
    """`0x02 | nonce`: what a responder sends from a fresh UDP port to the observed address."""
    return NONCE + nonce


def parse_nonce_datagram(data: bytes) -> bytes:
    """The nonce of a dial-back datagram (exactly 17 bytes, first 0x02)."""
    if len(data) != NONCE_DATAGRAM_LEN or data[:1] != NONCE:
        raise _refuse(f"not a dial-back datagram (0x02 and {NONCE_LEN} bytes)")
    return data[1:]


# -- services ---------------------------------------------------------------------------------


def service_host(url: str) -> str | None:
    """The host of a service URL as an IP literal (normalised), or None when the URL is not
    http(s)/ws(s), too long, has user info, a bad port, or its host is not an IP literal."""
    if len(url) > MAX_SERVICE_URL or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in SERVICE_SCHEMES or parts.username is not None or port == 0:
        return None
    if parts.password is not None or not parts.hostname:
        return None
    try:
        return str(ipaddress.ip_address(parts.hostname))
    except ValueError:
        return None


def _service_entry(name: object, url: object) -> tuple[str, str] | None:
    if not isinstance(name, str) or _SERVICE_NAME.fullmatch(name) is None:
        return None
    if not isinstance(url, str) or service_host(url) is None:
        return None
    return name, url


def validate_services(services: object) -> dict[str, str]:
    """A node's own services, strictly: at most 8 names (a-z, 0-9, _ and -, 1-32 characters),
    each an http(s) or ws(s) URL of at most 256 characters whose host is an IP literal (the
    receivers compare it with the address they reach the node at). `ReachError` if not."""
    if not isinstance(services, dict) or len(services) > MAX_SERVICES:
        raise _refuse(f"services must be a map of at most {MAX_SERVICES} entries", Code.REACH)
    out: dict[str, str] = {}
    for name, url in services.items():
        entry = _service_entry(name, url)
        if entry is None:
            raise _refuse(
                f"service {name!r}: a name [a-z0-9_-] and an http(s)/ws(s) URL of at most "
                f"{MAX_SERVICE_URL} characters with an IP literal host",
                Code.REACH,
            )
        out[entry[0]] = entry[1]
    return out


@dataclass(frozen=True)
class InfoReply:
    client: bool
    services: dict[str, str]


def parse_info_reply(value: object) -> InfoReply:
    """`{"client": bool, "services": {name: url}}`: a malformed structure is refused; a service
    entry that is not valid (a future scheme, a bad URL) is left out; other members ignored."""
    reply = _mapping(value, Code.REACH)
    client = reply.get("client", False)
    services = reply.get("services", {})
    if not isinstance(client, bool):
        raise _refuse("client is not a bool", Code.REACH)
    if not isinstance(services, dict) or len(services) > MAX_SERVICES:
        raise _refuse(f"services is not a map of at most {MAX_SERVICES} entries", Code.REACH)
    kept = dict(e for n, u in services.items() if (e := _service_entry(n, u)) is not None)
    return InfoReply(client, kept)
