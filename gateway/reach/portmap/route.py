"""The router to ask for mappings: the IPv4 default gateway, from /proc/net/route (Linux).

`parse_default_gateway(text)` is pure and total: malformed lines are skipped, the input is
bounded, and it returns None when there is no usable default route.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from pathlib import Path
from typing import Final

ROUTE_FILE: Final = Path("/proc/net/route")
MAX_ROUTE_BYTES: Final = 256 * 1024  # a router-sized table is a few KiB; more is not read
MAX_ROUTE_LINES: Final = 4096
RTF_UP: Final = 0x1
RTF_GATEWAY: Final = 0x2


def _hex_ipv4(field: str) -> ipaddress.IPv4Address | None:
    """/proc/net/route prints the address's 32 bits as a native-endian int in 8 hex digits."""
    if len(field) != 8:
        return None
    try:
        value = int(field, 16)
    except ValueError:
        return None
    return ipaddress.IPv4Address(socket.inet_ntoa(struct.pack("=I", value)))


def parse_default_gateway(text: str) -> str | None:
    """The gateway of the best (lowest metric, then first) IPv4 default route that is up, or
    None. Lines: Iface Destination Gateway Flags RefCnt Use Metric Mask ..."""
    best: tuple[int, int, str] | None = None
    for index, line in enumerate(text[:MAX_ROUTE_BYTES].splitlines()[1:MAX_ROUTE_LINES]):
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, gateway, mask = _hex_ipv4(fields[1]), _hex_ipv4(fields[2]), _hex_ipv4(fields[7])
        try:
            flags, metric = int(fields[3], 16), int(fields[6])
        except ValueError:
            continue
        if dest is None or gateway is None or mask is None:
            continue
        if (
            int(dest) != 0
            or int(mask) != 0
            or flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY
        ):
            continue
        if gateway.is_unspecified or gateway.is_multicast or gateway.is_loopback:
            continue
        if best is None or (metric, index) < best[:2]:
            best = (metric, index, str(gateway))
    return best[2] if best is not None else None


def _read_route(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_ROUTE_BYTES).decode("ascii", errors="replace")
    except OSError:
        return ""


async def default_gateway(path: Path = ROUTE_FILE) -> str | None:
    """The default gateway's IPv4 address (read off the event loop), or None."""
    return parse_default_gateway(await asyncio.to_thread(_read_route, path))


async def local_address(peer: str, port: int) -> str:
    """This host's address on the path to PEER (a connected UDP socket sends nothing)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(peer, port)
    )
    try:
        sockname = transport.get_extra_info("sockname")
    finally:
        transport.close()
    return str(sockname[0])
