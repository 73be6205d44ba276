"""Before a gateway starts anything: are its ports free?

`check_ports` binds each listener of the config for a moment (TCP for HTTP and the P2P
WebSocket, UDP for the DHT) and closes it again, so a taken port is one line naming the port and
the flag that changes it, a host that is no address of this machine (or no known name) one line
naming the config key (or --host) that sets it, and no driver, Thing or listener was started.
Port 0 (pick a free one) is bound too, which checks the host only. `port_error` turns the same
failure at the real bind (a port taken in between) into that line too.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Final

from gateway.cli.listen import machine_addresses
from gateway.config import GatewayConfig
from gateway.errors import StreembitError

#: what each listener is called in the config file
CONFIG_KEYS: Final = {
    "--http-port": "[gateway.http] port",
    "--ws-port": "[gateway.p2p] ws_port",
    "--dht-port": "[gateway.p2p] dht_port",
}
#: the config key of each listener's host (the demo's one flag for all three: --host)
HOST_KEYS: Final = {
    "--http-port": "[gateway.http] host",
    "--ws-port": "[gateway.p2p] ws_host",
    "--dht-port": "[gateway.p2p] dht_host",
}
UNRESOLVED: Final = -1  # _try_bind: the host is no address and no name that resolves


BIND_ERRORS: Final = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


class ListenError(StreembitError):
    """A port the gateway would listen on is taken, not ours to take, or on no local address."""

    code = "cannot_listen"


def _listeners(config: GatewayConfig) -> list[tuple[str, int, int, str]]:
    """(host, port, socket type, flag) of every listener."""
    found: list[tuple[str, int, int, str]] = [
        (config.http.host, config.http.port, socket.SOCK_STREAM, "--http-port")
    ]
    if config.p2p.enabled:
        found.append((config.p2p.ws_host, config.p2p.ws_port, socket.SOCK_STREAM, "--ws-port"))
        found.append((config.p2p.dht_host, config.p2p.dht_port, socket.SOCK_DGRAM, "--dht-port"))
    return found


def _how_to_change(flag: str, source: str) -> str:
    if source and not source.startswith("<"):
        return f"{flag}, or {CONFIG_KEYS[flag]} in {source}, to choose another"
    return f"{flag} to choose another"


def _which_host(flag: str, source: str) -> str:
    if source and not source.startswith("<"):
        return f"{HOST_KEYS[flag]} in {source}"
    return "--host"


def _bad_host(err: int, host: str, flag: str, source: str) -> ListenError:
    what = "a known host name" if err == UNRESOLVED else "an address of this machine"
    return ListenError(
        f"cannot listen on {host or '(empty)'} ({_which_host(flag, source)}): not {what}"
        f"{machine_addresses()}"
    )


def _refusal(err: int, host: str, port: int, kind: int, flag: str, source: str) -> ListenError:
    proto = "UDP " if kind == socket.SOCK_DGRAM else ""
    change = _how_to_change(flag, source)
    if err in (UNRESOLVED, errno.EADDRNOTAVAIL):
        return _bad_host(err, host, flag, source)
    if err == errno.EADDRINUSE:
        return ListenError(f"{proto}port {port} is in use ({change})")
    if err == errno.EACCES:
        return ListenError(f"{proto}port {port} needs root below 1024 ({change})")
    return ListenError(f"cannot listen on {host}:{port}: {os.strerror(err)} ({change})")


def _try_bind(host: str, port: int, kind: int) -> int:
    """0 when HOST:PORT can be bound now, else the errno (UNRESOLVED: HOST does not resolve)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return UNRESOLVED
    for family, stype, proto, _canon, addr in infos:
        with socket.socket(family, stype, proto) as sock:
            if stype == socket.SOCK_STREAM:  # as the listeners do: TIME_WAIT is no conflict
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno in BIND_ERRORS:
                    return exc.errno
    return 0


def check_ports(config: GatewayConfig) -> None:
    """ListenError for the first listener of CONFIG that cannot be bound."""
    for host, port, kind, flag in _listeners(config):
        err = _try_bind(host, port, kind)
        if err:
            raise _refusal(err, host, port, kind, flag, config.source)


def port_error(exc: OSError, config: GatewayConfig) -> ListenError | None:
    """The one-line refusal for a bind that failed at start, or None if EXC is no bind error."""
    if exc.errno not in BIND_ERRORS:
        return None
    try:
        check_ports(config)
    except ListenError as found:
        return found
    return ListenError(f"cannot listen: {exc.strerror or exc}")
