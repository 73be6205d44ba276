"""`demo` and `run`: parse the flags, build the gateway, run it until SIGTERM/SIGINT (or a factory
reset by the button), stop it cleanly.

The gateway itself does the rest (gateway/app.py, gateway/ops/presence.py): under systemd
(`Type=notify`) READY=1 once it serves, the watchdog at half of WatchdogSec and STOPPING=1 when
it shuts down; the mDNS announcement; `running.json` in its state folder; a log line when the
config file is edited (it is read once: edits take effect at the next restart).

"stopped: locks locked, heaters off, state saved" is printed only once that is true: after the
Things' stop() returned with their safe state confirmed; otherwise the line names those not.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from gateway.app import Gateway
from gateway.cli.listen import machine_addresses
from gateway.cli.ports import check_ports, port_error
from gateway.config import GatewayConfig, MdnsConfig, parse_hostport
from gateway.config.model import WILDCARD_HOSTS
from gateway.errors import ConfigError
from gateway.tasks import TaskOwner

log = logging.getLogger(__name__)


def apply_overrides(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    """--http-port, --ws-port, --dht-port, --bootstrap; any P2P flag turns the network on.
    --mdns-interface turns mDNS on (on those addresses), --no-mdns off."""
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
    if getattr(args, "no_relay", False):
        p2p = dataclasses.replace(p2p, relay=False)
    if getattr(args, "no_reach", False):
        p2p = dataclasses.replace(p2p, reach=False)
    if args.no_p2p:
        p2p = dataclasses.replace(p2p, enabled=False)
    mdns = config.mdns
    if getattr(args, "mdns_interface", None):
        mdns = MdnsConfig(enabled=True, interfaces=tuple(args.mdns_interface), name=mdns.name)
    if getattr(args, "no_mdns", False):
        mdns = dataclasses.replace(mdns, enabled=False)
    return dataclasses.replace(config, p2p=p2p, mdns=mdns)


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
    sp.add_argument(
        "--no-relay",
        action="store_true",
        help="never relay for other gateways, even when publicly reachable (docs/reach.md)",
    )
    sp.add_argument(
        "--no-reach",
        action="store_true",
        help="publish only the configured addresses: no dial-back check, port mapping or relays",
    )
    sp.add_argument(
        "--mdns-interface",
        action="append",
        default=[],
        metavar="IPV4",
        help="announce the Things by mDNS on this address (repeatable); default: on for a LAN "
        "HTTP host, off for loopback",
    )
    sp.add_argument("--no-mdns", action="store_true", help="do not announce on the LAN")


def check_things(config: GatewayConfig) -> None:
    """`check-config`: the Things of CONFIG built as `run` builds them (gateway/things/registry.py
    `build_things`), nothing started or opened; the same errors, the same exit status."""
    from gateway.companion.setup import CompanionSetup
    from gateway.state import StateDir
    from gateway.things import build_things

    companion = CompanionSetup(config, StateDir(config.state_dir), "check-config")
    build_things(config.things, companion.inject)


def _validate_mdns(config: GatewayConfig) -> None:
    import ipaddress

    for addr in config.mdns.interfaces:
        try:
            ipaddress.IPv4Address(addr)
        except ValueError:
            raise ConfigError("--mdns-interface", addr, "an IPv4 address") from None


def _dht_line(dht: str) -> str:
    """The ready line's DHT address for a person: a wildcard one is no address to bootstrap from
    (`[gateway] advertise` or `demo --advertise` puts the advertised one there instead)."""
    host, _, port = dht.rpartition(":")
    if host.strip("[]") not in WILDCARD_HOSTS:
        return f"{dht} (udp)"
    return (
        f"udp port {port} on all interfaces ({dht}); others bootstrap through an address of "
        f"this machine{machine_addresses()}"
    )


def _owner_banner(gw: Gateway) -> Callable[[], None]:
    """An ACL listener printing, once, that the "not provisioned yet" line no longer holds."""
    shown = False

    def on_change() -> None:
        nonlocal shown
        owner = gw.acl.owner
        if owner is not None and not shown:
            shown = True
            print(f"  provisioned: owner {owner.id} pinned", flush=True)

    return on_change


async def serve(config: GatewayConfig, args: argparse.Namespace, *, create_key: bool) -> int:
    config = apply_overrides(config, args)
    _validate_mdns(config)
    check_things(config)  # as check-config: a bad Thing is refused before any key or folder
    check_ports(config)  # a taken port: one line, and nothing (no driver, no Thing) started
    gw = await Gateway.create(config, create_key=create_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await gw.start()  # a failed start has already stopped what it started
        except OSError as exc:
            refusal = port_error(exc, config)
            if refusal is None:
                raise
            raise refusal from None
        try:
            _print_ready(gw, json_line=args.json)
            await _until_stopped(gw, stop)
        finally:
            print("stopping: putting the Things in their safe state", file=sys.stderr, flush=True)
            stopped = await gw.stop()
        print(stopped.summary(), file=sys.stderr, flush=True)  # only now is it true
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _print_ready(gw: Gateway, *, json_line: bool) -> None:
    info = gw.ready_info()
    if json_line:
        print(json.dumps(info, separators=(",", ":")), flush=True)
    else:
        print(f"gateway {info['id']} ready at {info['http']}", flush=True)
        print(f"  status page: {info['http']}/status", flush=True)
        if "ws" in info:
            print(f"  P2P: {info['ws']}  DHT: {_dht_line(info['dht'])}", flush=True)
        if "reach" in info:
            print(f"  reachable: {_reach_line(info['reach'])}", flush=True)
        print(
            f'  web app: {info["app"]}  (a phone: docs/webapp.md, "Use it from your phone")',
            flush=True,
        )
        for name in gw.things:
            print(f"  {name}: {info['http']}/things/{name}", flush=True)
        if info["owner"] is None:
            print(
                "  not provisioned yet: run `streembit-gateway provision --state "
                f"{gw.state.path} --owner-key OWNER.pub`",
                flush=True,
            )
            gw.acl.on_change.append(_owner_banner(gw))
    log.info("gateway %s ready at %s", info["id"], info["http"], extra={"gateway": gw.id})


def _reach_line(reach: dict[str, Any]) -> str:
    """How peers outside the LAN reach the gateway, for a person (docs/reach.md)."""
    mode, addrs = reach["mode"], reach["addrs"]
    if mode == "public":
        return f"directly at {addrs[0] if addrs else 'the advertised address'} (public)"
    if mode == "mapped":
        return f"through the router's mapped port {addrs[0] if addrs else ''}".rstrip()
    if mode == "relayed":
        relays = [a.split("/relay/", 1)[0] for a in addrs if "/relay/v1/connect/" in a]
        if not relays:
            return "not yet: no relay reservation (behind NAT; retrying)"
        return f"through relays {', '.join(relays)} (behind NAT; peers may punch a direct path)"
    return "on this network only (loopback listener or no DHT peers to ask)"


async def _until_stopped(gw: Gateway, stop: asyncio.Event) -> None:
    """Until a signal (STOP is set) or a factory reset by the button."""
    waits = TaskOwner("serve")
    waits.spawn(_wait(stop), name="signal-wait")
    waits.spawn(_wait(gw.reset_requested), name="reset-button-wait")
    try:
        await asyncio.wait(waits.tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await waits.close()
    if gw.reset_requested.is_set():
        print("factory reset by the button: state wiped, stopping", file=sys.stderr, flush=True)


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def run_serve(config: GatewayConfig, args: argparse.Namespace, *, create_key: bool) -> int:
    return asyncio.run(serve(config, args, create_key=create_key))
