"""`demo` and `run`: start the gateway, print the ready line, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys

from gateway.app import Gateway
from gateway.config import GatewayConfig, parse_hostport
from gateway.errors import ConfigError

log = logging.getLogger(__name__)


def apply_overrides(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    """--http-port, --ws-port, --dht-port, --bootstrap; any P2P flag turns the network on."""
    if args.http_port is not None:
        config = dataclasses.replace(
            config, http=dataclasses.replace(config.http, port=args.http_port)
        )
    p2p = config.p2p
    if args.ws_port is not None:
        p2p = dataclasses.replace(p2p, enabled=True, ws_port=args.ws_port)
    if args.dht_port is not None:
        p2p = dataclasses.replace(p2p, enabled=True, dht_port=args.dht_port)
    if args.bootstrap:
        boot = []
        for text in args.bootstrap:
            try:
                boot.append(parse_hostport(text))
            except ValueError as exc:
                raise ConfigError("--bootstrap", text, f"HOST:PORT ({exc})") from None
        p2p = dataclasses.replace(p2p, enabled=True, bootstrap=tuple(boot))
    if args.no_p2p:
        p2p = dataclasses.replace(p2p, enabled=False)
    return dataclasses.replace(config, p2p=p2p)


def add_serve_flags(sp: argparse.ArgumentParser, http_default: str) -> None:
    sp.add_argument(
        "--http-port", type=int, default=None, help=f"0 picks a free port ({http_default})"
    )
    sp.add_argument(
        "--ws-port", type=int, default=None, help="P2P WebSocket port; 0 picks a free port"
    )
    sp.add_argument("--dht-port", type=int, default=None, help="DHT UDP port; 0 picks a free port")
    sp.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node to join through (repeatable); none: be the first node",
    )
    sp.add_argument("--no-p2p", action="store_true", help="serve HTTP only (no DHT, no WebSocket)")


async def serve(config: GatewayConfig, args: argparse.Namespace, *, create_key: bool) -> int:
    config = apply_overrides(config, args)
    gw = await Gateway.create(config, create_key=create_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gw.start()
        info = gw.ready_info()
        if args.json:
            print(json.dumps(info, separators=(",", ":")), flush=True)
        else:
            print(f"gateway {info['id']} ready at {info['http']}", flush=True)
            if "ws" in info:
                print(f"  P2P: {info['ws']}  DHT: {info['dht']} (udp)", flush=True)
            for name in gw.things:
                print(f"  {name}: {info['http']}/things/{name}", flush=True)
            if info["owner"] is None:
                print(
                    "  not provisioned yet: run `streembit-gateway provision --state "
                    f"{gw.state.path} --owner-key OWNER.pub`",
                    flush=True,
                )
        await stop.wait()
        print("stopping: locks locked, heaters off, state saved", file=sys.stderr, flush=True)
    finally:
        await gw.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def run_serve(config: GatewayConfig, args: argparse.Namespace, *, create_key: bool) -> int:
    return asyncio.run(serve(config, args, create_key=create_key))
