"""Learn the public (ip, port) a NAT maps one local TCP port to, from a relay's observer.

A relay answers ``GET /relay/v1/observe`` with ``{"ip": "...", "port": N}``: the address and port
it saw the request come from. The request is sent from a socket bound to a chosen local port with
SO_REUSEADDR and SO_REUSEPORT, so that a hole punch can bind the same port afterwards and go out
through the same NAT mapping (endpoint-independent mapping keeps it; docs/reach.md,
"Direct upgrade").

Closing without blocking the rebind: the request says ``Connection: close`` and the client reads
until the server closes first, so the TIME_WAIT state lands on the server and the client socket is
gone once its FIN is acknowledged. A server that does not close within `CLOSE_WAIT_S` after a
complete answer is cut off with an abortive close (SO_LINGER 0: RST, no TIME_WAIT either).

The client is minimal HTTP/1.1 over asyncio streams: bounded in time (`OBSERVE_TIMEOUT_S`) and
size (`MAX_RESPONSE_BYTES`); the answer is parsed strictly (status 200, no transfer coding, JSON
through gateway.jsonsafe, an IP literal and a port 1-65535). Failures raise
`ReachError(code=relay_unreachable)` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from typing import Final, NamedTuple

from gateway import jsonsafe
from gateway.codes import Code
from gateway.errors import ReachError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "OBSERVE_PATH",
    "Address",
    "Observation",
    "format_addr",
    "observe",
    "observe_tcp",
    "parse_addr",
    "parse_observe_response",
    "reuse_socket",
    "set_abortive",
    "why",
]

Address = tuple[str, int]
OBSERVE_PATH: Final = "/relay/v1/observe"
OBSERVE_TIMEOUT_S: Final = 5.0  # connect, request and answer together
CLOSE_WAIT_S: Final = 1.0  # after a complete answer, the server gets this long to close first
MAX_RESPONSE_BYTES: Final = 8 * 1024  # status line, headers and body
MAX_HEADERS: Final = 32
_BODY_LIMITS: Final = jsonsafe.JsonLimits(max_bytes=1024, max_depth=2)
_READ_CHUNK: Final = 2048


class Observation(NamedTuple):
    """`local`: the address the socket was bound to (port 0 replaced by the port picked);
    `external`: where the observer saw the connection come from (the NAT's mapping)."""

    local: Address
    external: Address


def _fail(reason: str) -> ReachError:
    return ReachError(f"observe: {reason}", code=Code.RELAY_UNREACHABLE)


def reuse_socket(local: Address) -> socket.socket:
    """A non-blocking TCP socket with SO_REUSEADDR and SO_REUSEPORT, bound to LOCAL."""
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind(local)
    except BaseException:
        sock.close()
        raise
    return sock


def set_abortive(sock: socket.socket) -> None:
    """Make the next close abortive (SO_LINGER 0: an RST, no TIME_WAIT on this end)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def why(exc: OSError) -> str:
    """A short reason for an OSError ("Connection refused"), whatever asyncio wrapped it in."""
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


def parse_addr(ip: object, port: object) -> Address:
    """A checked (ip, port): an IP literal (normalised) and an int port 1-65535; ValueError."""
    if not isinstance(ip, str) or len(ip) > 45:
        raise ValueError("ip is not an IP literal")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("port is not an integer 1-65535")
    addr = ipaddress.ip_address(ip)  # ValueError for anything else
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{addr} is not a unicast address")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr), port


def format_addr(addr: Address) -> str:
    """ "ip:port", "[v6]:port"."""
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def _head_and_body(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise _fail("the answer has no end of headers")
    try:
        lines = head.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        raise _fail("the answer's headers are not ASCII") from None
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].isdigit():
        raise _fail("the answer has no HTTP/1.x status line")
    if len(lines) - 1 > MAX_HEADERS:
        raise _fail(f"the answer has more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _fail("the answer has a malformed header line")
        key = name.lower()
        if key in headers:
            raise _fail(f"the answer repeats the header {key[:40]!r}")
        headers[key] = value.strip()
    return int(parts[1][:3]), headers, body


def parse_observe_response(raw: bytes) -> Address:
    """The observed (ip, port) in one complete HTTP answer; ReachError(relay_unreachable).

    Total on any bytes: every refusal is a ReachError naming what was wrong."""
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _fail(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
    status, headers, body = _head_and_body(raw)
    if status != 200:
        raise _fail(f"the observer answered HTTP {status}")
    if "transfer-encoding" in headers:
        raise _fail("the answer uses a transfer coding (only a plain body is read)")
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 6:
            raise _fail("the answer's Content-Length is not a number")
        if len(body) != int(length):
            raise _fail(f"the body has {len(body)} bytes, Content-Length says {length}")
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise _fail("the answer is not application/json")
    try:
        doc = jsonsafe.loads_object(body, _BODY_LIMITS, what="observe answer")
        return parse_addr(doc.get("ip"), doc.get("port"))
    except (jsonsafe.JsonInputError, ValueError) as exc:
        raise _fail(f"bad answer: {exc}") from None


def _complete(raw: bytes) -> bool:
    """True once RAW holds the headers and a body as long as its Content-Length."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip()[:7])
    return False


async def _read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """The whole answer, and whether the server closed (EOF) after it."""
    raw = b""
    while True:
        chunk = await reader.read(_READ_CHUNK)
        if not chunk:
            return raw, True
        raw += chunk
        if len(raw) > MAX_RESPONSE_BYTES:
            raise _fail(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        if _complete(raw):
            break
    try:  # let the server close first (TIME_WAIT on its side)
        async with asyncio.timeout(CLOSE_WAIT_S):
            extra = await reader.read(1)
    except TimeoutError:
        return raw, False
    return raw + extra, not extra


async def observe(
    local: Address, observer: Address, *, timeout_s: float = OBSERVE_TIMEOUT_S
) -> Observation:
    """Ask OBSERVER which (ip, port) it sees for a connection from LOCAL (port 0: pick one).

    The local socket is closed before this returns, such that the same port can be bound again
    at once (SO_REUSEADDR|SO_REUSEPORT) and reaches the internet through the same mapping."""
    loop = asyncio.get_running_loop()
    try:
        sock = reuse_socket(local)
    except OSError as exc:
        raise _fail(f"cannot bind {format_addr(local)}: {why(exc)}") from None
    bound: Address = sock.getsockname()[:2]
    writer: asyncio.StreamWriter | None = None
    clean = False
    try:
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, observer)
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_RESPONSE_BYTES)
            host = format_addr(observer)
            writer.write(
                f"GET {OBSERVE_PATH} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
                "Connection: close\r\nUser-Agent: streembit-gateway\r\n\r\n".encode("ascii")
            )
            await writer.drain()
            raw, clean = await _read_answer(reader)
    except TimeoutError:
        raise _fail(f"no answer from {format_addr(observer)} within {timeout_s:g} s") from None
    except OSError as exc:
        raise _fail(f"{format_addr(observer)}: {why(exc)}") from None
    finally:
        if not clean:  # an error, a timeout or a server that keeps the connection open
            set_abortive(sock)
        if writer is not None:  # the transport owns the socket: it closes it
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        sock.close()  # (again: a no-op once the transport closed it)
    return Observation(bound, parse_observe_response(raw))


async def observe_tcp(
    local: Address, observer: Address, *, timeout_s: float = OBSERVE_TIMEOUT_S
) -> Address:
    """The external (ip, port) OBSERVER sees for LOCAL. With port 0 a port is picked; use
    `observe()`, which also returns the local address bound, to learn which."""
    return (await observe(local, observer, timeout_s=timeout_s)).external
