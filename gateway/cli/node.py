"""`streembit-peer node`: a DHT node that others join through and, when publicly reachable, a
relay for gateways behind NAT (docs/reach.md, "Running a public relay node").

    streembit-peer node [--host ADDR] [--dht-port N] [--relay-port N] [--advertise ADDR]
                        [--no-relay] [--bootstrap HOST:PORT]

The relay listens on TCP `--relay-port` (default: the DHT's port number; with `--dht-port 0`,
any free TCP port when that number is taken on TCP) and is advertised to
the DHT (`info` service "relay") only when the node is known to be public: `--advertise ADDR`
says so (an operator's word about a public address of this machine), or at least two DHT peers
dialed it back. Its limits are conservative (gateway/reach/relay/limits.py); `--no-relay`
turns it off.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
from typing import TYPE_CHECKING, Any

from gateway.cli.common import EXIT_OK, out
from gateway.config.model import url_host
from gateway.errors import P2PError

if TYPE_CHECKING:  # imported by the command itself (start-up time of the other commands)
    from gateway.p2p import DhtNode
    from gateway.reach.relay import RelayService


def add_node_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--dht-port", type=int, default=4242, help="UDP port (0 picks a free one)")
    sp.add_argument(
        "--host",
        default=argparse.SUPPRESS,
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1: this machine only; a LAN address or "
        "0.0.0.0 for other hosts)",
    )
    sp.add_argument(
        "--relay-port",
        type=int,
        default=None,
        metavar="N",
        help="TCP port of the relay (default: the DHT port's number; 0 picks a free one)",
    )
    sp.add_argument(
        "--advertise",
        default=None,
        metavar="ADDR",
        help="the public IP address of this machine: the relay is advertised at it without "
        "waiting for dial-backs",
    )
    sp.add_argument("--no-relay", action="store_true", help="do not relay for gateways behind NAT")


def _public_ip(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise P2PError(f"--advertise {text[:64]!r}: an IP address", code="usage") from None


def cmd_node(args: argparse.Namespace, host: str, bootstrap: list[tuple[str, int]]) -> int:
    from gateway.p2p import DhtNode
    from gateway.reach.lookup import LOOKUP_PATH, LookupService
    from gateway.reach.relay import RelayService

    advertise = _public_ip(args.advertise)

    async def main() -> int:
        node = DhtNode(host, args.dht_port, bootstrap=bootstrap)
        try:
            await node.start()
        except OSError as exc:
            await node.stop()
            raise P2PError(
                f"cannot listen on udp {host}:{args.dht_port} ({exc.strerror or exc})",
                code="bind_failed",
            ) from None
        relay: RelayService | None = None
        try:
            if not args.no_relay:
                relay = RelayService(relay_id=node.node_id.hex())
                relay.extra_mounts.append(LookupService(node).mount)  # GET /dht/v1/lookup
                port = node.port if args.relay_port is None else args.relay_port
                try:
                    await relay.start(host, port)
                except OSError as exc:
                    if args.dht_port == 0 and args.relay_port is None:
                        # any port was asked for: the UDP port's number is taken on TCP by
                        # something else, so the relay takes any free TCP port instead
                        await relay.start(host, 0)
                    else:
                        raise P2PError(
                            f"cannot listen on tcp {host}:{port} for the relay "
                            f"({exc.strerror or exc}); --relay-port N or --no-relay",
                            code="bind_failed",
                        ) from None
                await _advertise(node, relay, advertise)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            info: dict[str, Any] = {
                "dht": f"{url_host(advertise or node.host)}:{node.port}",
                "node": node.node_id.hex(),
                "contacts": node.routing_size(),
                "relay": node.services.get("relay"),
            }
            if relay is not None:  # browsers find gateways through it (docs/reach.md)
                base = relay.public_url or relay.url
                info["lookup"] = "ws" + base.removeprefix("http") + LOOKUP_PATH
            human = f"DHT node {info['node'][:16]}… listening on udp {info['dht']}"
            if relay is not None:
                shown = info["relay"] or f"{relay.url} (not advertised: not known to be public)"
                human += f"\n  relay: {shown}"
            out(args, info, human)
            await stop.wait()
        finally:
            if relay is not None:
                await relay.stop()
            await node.stop()
        return EXIT_OK

    return asyncio.run(main())


async def _advertise(node: DhtNode, relay: RelayService, advertise: str | None) -> None:
    """Advertise the relay at ADVERTISE, or at the address dial-backs confirm (if any)."""
    port = int(relay.url.rsplit(":", 1)[1])
    public = advertise
    if public is None and node.routing_size() > 0:
        try:
            found = await node.check_reachability(tcp_port=port)
        except P2PError:
            found = None
        if found is not None and found.tcp_reachable and found.observed is not None:
            public = found.observed[0]
    if public is not None:
        url = f"http://{url_host(public)}:{port}"
        relay.public_url = url
        node.services = {"relay": url}
