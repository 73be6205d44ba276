"""A birthday-paradox TCP hole punch between a symmetric NAT and one with a stable mapping.

A symmetric NAT picks a random external port for every destination, and a port-restricted (or
double) NAT admits only the exact address and port its host sent to, so the plain punch cannot
meet (docs/reach.md, "Which NATs punch"). Both sides then fire many connects at once:

- role "E" (the side whose mapping is stable, the port the other side observed): COUNT sockets
  bound to that one local port, each connecting to the other side's IP at a different random
  port. Each SYN leaves a conntrack entry in its own NAT that admits exactly that address and
  port. It also listens on the port.
- role "S" (the symmetric side): COUNT sockets from fresh local ports, all connecting to the
  E side's observed address. Its NAT gives each a random external port.

When one of S's random external ports is one of E's guesses, S's SYN passes E's NAT (and E's
SYN to that port passes S's NAT: a simultaneous open). With 768 on each side over the ~64 500
ports a NAT draws from, the chance of no match is exp(-768 * 768 / 64 500), about 1 in 10 000
(512: under 2 %, 256: 36 %); when it
works, it works within one round trip. Measured in the NAT lab: 10 of 10 with 768, 8 of 8
with 512 (symmetric against port-restricted and against double NAT), in 20-30 ms.

Cost and abuse: COUNT sockets (file descriptors) for a few seconds, COUNT SYNs to one host.
`budget()` bounds COUNT by the free file descriptors; the gateway allows one spray at a time and
never toward a private, loopback or multicast address (gateway/reach/upgrade.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import resource
import secrets
import socket
from typing import Final, Literal

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.observe import Address, format_addr, parse_addr, reuse_socket, why

__all__ = ["COUNT", "MIN_COUNT", "SprayRole", "budget", "spray_open", "sprayable"]

SprayRole = Literal["E", "S"]
COUNT: Final = 768  # sockets per side: about 1 miss in 10 000 against a random-port NAT
MIN_COUNT: Final = 64  # with fewer free descriptors the odds are too poor to try
FD_MARGIN: Final = 128  # descriptors left for everything else the process does meanwhile
PORTS: Final = (1024, 65535)  # the range NATs draw external ports from (Linux: 1024-65535)


def _fail(reason: str) -> ReachError:
    return ReachError(f"spray: {reason}", code=Code.PUNCH_FAILED)


def budget(want: int = COUNT) -> int:
    """How many sockets a spray may open now: WANT, or fewer when file descriptors are short
    (0: not enough to try). The soft limit is raised toward the hard one first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = soft if hard == resource.RLIM_INFINITY else min(hard, max(soft, 4096))
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = FD_MARGIN
    free = soft - used - FD_MARGIN
    count = min(want, free)
    return count if count >= MIN_COUNT else 0


def sprayable(ip: str) -> bool:
    """A spray may target IP: a global unicast address (never a private, loopback, link-local
    or multicast one: a spray is COUNT SYNs, not something to aim at a LAN)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (
        (addr.is_private and not _documentation(addr))
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_unspecified
        or addr.is_reserved
    )


def _documentation(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """TEST-NET ranges: the NAT lab's "internet" (they never route on a real network)."""
    nets = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
    return any(addr in ipaddress.ip_network(n) for n in nets)


async def _dial(sock: socket.socket, remote: Address, start: float) -> socket.socket:
    """SOCK connected to REMOTE from loop time START; SOCK is closed unless returned."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(max(0.0, start - loop.time()))
        await loop.sock_connect(sock, remote)
    except BaseException:
        sock.close()
        raise
    return sock


async def _hear(sock: socket.socket) -> socket.socket:
    """SOCK once the other end has sent something (it is the one the other end chose: that end
    writes the link preamble on its winner and closes the rest); closed if it ends first."""
    loop = asyncio.get_running_loop()
    heard: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def readable() -> None:
        if not heard.done():
            heard.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await heard
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            data = b""
    except BaseException:
        sock.close()
        raise
    finally:
        loop.remove_reader(fd)
    if not data:
        sock.close()
        raise _fail("a matched connection ended at once (the other side chose another)")
    return sock


async def _dial_and_hear(sock: socket.socket, remote: Address, start: float) -> socket.socket:
    return await _hear(await _dial(sock, remote, start))


async def _accept(listener: socket.socket, remote_ip: str) -> socket.socket:
    loop = asyncio.get_running_loop()
    while True:
        conn, peer = await loop.sock_accept(listener)
        if peer[0] == remote_ip:
            conn.setblocking(False)
            return conn
        conn.close()


def _sockets(role: SprayRole, local: Address, count: int) -> list[socket.socket]:
    made: list[socket.socket] = []
    try:
        for _ in range(count):
            if role == "E":
                made.append(reuse_socket(local))
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                made.append(sock)
    except OSError as exc:
        for sock in made:
            sock.close()
        raise _fail(f"cannot open {count} sockets: {why(exc)}") from None
    return made


async def spray_open(
    role: SprayRole,
    local_port: int,
    remote: Address,
    *,
    count: int = COUNT,
    deadline_s: float = 3.0,
    start_at: float | None = None,
    local_host: str = "0.0.0.0",  # noqa: S104 - the observed port is on every interface
) -> socket.socket:
    """The first connection of a spray (module doc) as ROLE; ReachError(punch_failed) when none
    came within DEADLINE_S of START_AT. E: COUNT connects from LOCAL_PORT to REMOTE's IP at
    random ports, and a listener on LOCAL_PORT; S: COUNT connects from fresh ports to REMOTE."""
    remote = parse_addr(remote[0], remote[1])
    if role not in ("E", "S") or not MIN_COUNT <= count <= COUNT:
        raise ValueError(f"role E or S, count {MIN_COUNT}-{COUNT}")
    loop = asyncio.get_running_loop()
    start = loop.time() if start_at is None else start_at
    local = (local_host, local_port)
    listener = _sockets("E", local, 1)[0] if role == "E" else None
    tasks: set[asyncio.Task[socket.socket]] = set()
    try:
        if listener is not None:
            listener.listen(64)
        if role == "E":
            ports = secrets.SystemRandom().sample(range(PORTS[0], PORTS[1] + 1), count)
            targets = [(remote[0], port) for port in ports]
        else:
            targets = [remote] * count
        socks = _sockets(role, local, count)  # each owned by its task from here on
        # S takes its first connection (and writes on it first); E takes the one S wrote on
        dial = _dial_and_hear if role == "E" else _dial
        tasks = {
            asyncio.create_task(dial(s, t, start)) for s, t in zip(socks, targets, strict=True)
        }
        accepting = None if listener is None else asyncio.create_task(_accept(listener, remote[0]))
        if accepting is not None:
            tasks.add(accepting)
        async with asyncio.timeout_at(start + deadline_s):
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.cancelled() or task.exception() is not None:
                        continue
                    if task is accepting and listener is not None:  # hear it; accept the next
                        tasks.add(asyncio.create_task(_hear(task.result())))
                        accepting = asyncio.create_task(_accept(listener, remote[0]))
                        tasks.add(accepting)
                        continue
                    tasks |= done - {task}
                    return task.result()
        raise _fail(f"every connect to {format_addr(remote)} failed")
    except TimeoutError:
        raise _fail(
            f"no match within {deadline_s:g} s ({count} connects as {role} with "
            f"{format_addr(remote)})"
        ) from None
    finally:
        for task in tasks:
            task.cancel()
        for res in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(res, socket.socket):
                res.close()
        if listener is not None:
            listener.close()
