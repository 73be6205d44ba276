"""`demo --host ADDR --advertise HOST_OR_URL`: where the demo listens, and how others reach it.

--host is the one listen address of HTTP, the P2P WebSocket and the DHT (default 127.0.0.1).
--advertise (repeatable) is what goes into the TDs' base URL and the contact record's WebSocket
URLs: a host name or address (the listening ports are added), an http(s):// base URL for the TDs,
or a ws(s):// URL for the contact record. Without it, the --host address is advertised; a
wildcard --host (0.0.0.0, ::) needs it, since no single address of a machine is right for every
other machine (the error lists this machine's addresses to choose from).
"""

from __future__ import annotations

import argparse
import dataclasses
import socket

from gateway.config import GatewayConfig
from gateway.config.model import WILDCARD_HOSTS, is_loopback, parse_advertise
from gateway.errors import ConfigError


def add_listen_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="listen address of HTTP, the P2P WebSocket and the DHT (default 127.0.0.1: this "
        "machine only; a LAN address, or 0.0.0.0 with --advertise, for other machines)",
    )
    sp.add_argument(
        "--advertise",
        action="append",
        default=[],
        metavar="HOST_OR_URL",
        help="how other machines reach the gateway, for the TDs and the contact record "
        "(repeatable): a host name or address, an http(s):// base URL or a ws(s):// URL; "
        "default: the --host address",
    )


def machine_addresses() -> str:
    """The hint ' (this machine's addresses: A, B)' for an error message, or ''."""
    from gateway.wot.mdns import lan_ipv4_addresses

    try:
        found = lan_ipv4_addresses()
    except Exception:  # only a hint in an error message
        found = []
    return f" (this machine's addresses: {', '.join(found)})" if found else ""


def _check_local(host: str) -> None:
    """ConfigError unless HOST is an address of this machine (bound for a moment, port 0)."""
    if host in WILDCARD_HOSTS:
        return
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.bind(addr)
    except OSError as exc:
        raise ConfigError(
            "--host",
            host,
            f"an address of this machine ({exc.strerror or exc}){machine_addresses()}",
        ) from None


def apply_listen(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    """The config with --host as the listen address and --advertise as what is published."""
    host = str(args.host).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    adv = parse_advertise(args.advertise, lambda text, exp: ConfigError("--advertise", text, exp))
    hosts, base_url, public_ws = adv.hosts, adv.base_url, adv.public_ws
    if host in WILDCARD_HOSTS and not hosts and not (base_url and public_ws):
        raise ConfigError(
            "--host",
            host or "''",
            "every interface, but other machines need the address that reaches this one: "
            f"add --advertise ADDR (repeatable){machine_addresses()}",
        )
    far = [h for h in hosts if not is_loopback(h)]
    if is_loopback(host) and far:
        raise ConfigError(
            "--advertise",
            far[0],
            f"not reachable: --host {host} listens on this machine only; add "
            f"--host {far[0]} or --host 0.0.0.0",
        )
    _check_local(host)
    http = dataclasses.replace(config.http, host=host, base_url=base_url or config.http.base_url)
    p2p = dataclasses.replace(
        config.p2p,
        ws_host=host,
        dht_host=host,
        public_ws=public_ws or config.p2p.public_ws,
    )
    return dataclasses.replace(config, http=http, p2p=p2p, advertise=hosts)
