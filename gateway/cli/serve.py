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
from gateway.config import GatewayConfig

log = logging.getLogger(__name__)


async def serve(config: GatewayConfig, args: argparse.Namespace, *, create_key: bool) -> int:
    if args.http_port is not None:
        config = dataclasses.replace(
            config, http=dataclasses.replace(config.http, port=args.http_port)
        )
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
