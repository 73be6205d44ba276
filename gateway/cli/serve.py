"""`demo` and `run`: start the gateway, print the ready line, stop cleanly on SIGTERM/SIGINT.

Under systemd (`Type=notify`) the gateway tells systemd READY=1 once it serves, feeds the
watchdog at half of WatchdogSec, and says STOPPING=1 when it shuts down (gateway/ops/sdnotify.py).
It also announces itself on the LAN by mDNS (gateway/wot/mdns.py) and writes `running.json` in
its state folder (gateway/ops/runinfo.py). The config file is read once: edits take effect at
the next restart, and the gateway logs once that the file changed.
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
from typing import Final

from gateway.app import Gateway
from gateway.cli.listen import machine_addresses
from gateway.cli.ports import check_ports, port_error
from gateway.config import GatewayConfig, MdnsConfig, parse_hostport
from gateway.config.model import WILDCARD_HOSTS
from gateway.errors import ConfigError
from gateway.ops import runinfo
from gateway.ops.sdnotify import Notifier, watchdog_interval
from gateway.wot.mdns import MdnsAdvertiser, host_label, interfaces_for, plan

log = logging.getLogger(__name__)

CONFIG_WATCH_S: Final = 5.0  # how often the config file is compared with the loaded one


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


async def _start_mdns(config: GatewayConfig, gw: Gateway) -> MdnsAdvertiser | None:
    interfaces = interfaces_for(config.mdns, config.http.host)
    if not interfaces:
        return None
    announcements = plan(
        gateway_id=gw.id,
        name=config.mdns.name or config.name,
        base_url=gw.http_url,
        things=list(gw.things),
    )
    adv = MdnsAdvertiser(interfaces, announcements, host_label(gw.id))
    try:
        await adv.start()
    except Exception as exc:  # the LAN is optional: never fail the gateway for it
        log.error("mDNS not started: %s", exc)
        await adv.stop()
        return None
    return adv


async def _watch_config(config: GatewayConfig, state_dir: object) -> None:
    """Log once when the config file no longer matches the one loaded (it is not reloaded)."""
    from pathlib import Path

    warned: str | None = None
    while True:
        await asyncio.sleep(CONFIG_WATCH_S)
        d = runinfo.drift(runinfo.read(Path(str(state_dir))))
        now = d.file_sha256 if d else None
        if d is not None and now != warned:
            log.warning("%s", d.message(), extra={"config": d.config})
            warned = now
        elif d is None:
            warned = None


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
    notifier = Notifier.from_env()
    gw = await Gateway.create(config, create_key=create_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    mdns: MdnsAdvertiser | None = None
    started = False  # a failed start has already stopped what it started: never stop twice
    try:
        try:
            await gw.start()
        except OSError as exc:
            refusal = port_error(exc, config)
            if refusal is None:
                raise
            raise refusal from None
        started = True
        info = gw.ready_info()
        runinfo.write(gw.state.path, info, config.source)
        mdns = await _start_mdns(config, gw)
        if mdns is not None:
            info["mdns"] = mdns.interfaces
        if args.json:
            print(json.dumps(info, separators=(",", ":")), flush=True)
        else:
            print(f"gateway {info['id']} ready at {info['http']}", flush=True)
            print(f"  status page: {info['http']}/status", flush=True)
            if "ws" in info:
                print(f"  P2P: {info['ws']}  DHT: {_dht_line(info['dht'])}", flush=True)
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
        if runinfo.config_file(config.source):
            tasks.append(
                asyncio.create_task(_watch_config(config, gw.state.path), name="config-watch")
            )
        if notifier is not None:
            notifier.ready(f"serving {len(gw.things)} things at {info['http']}")
            interval = watchdog_interval()
            if interval is not None:
                tasks.append(
                    asyncio.create_task(notifier.run_watchdog(interval), name="sd-watchdog")
                )
        waits = {
            asyncio.create_task(gw.reset_requested.wait(), name="reset-button-wait"),
            asyncio.create_task(stop.wait(), name="signal-wait"),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if gw.reset_requested.is_set():
            print("factory reset by the button: state wiped, stopping", file=sys.stderr, flush=True)
        if notifier is not None:
            notifier.stopping("stopping: locks locked, heaters off, state saved")
        print("stopping: locks locked, heaters off, state saved", file=sys.stderr, flush=True)
    finally:
        for task in tasks:
            task.cancel()
        # the children's CancelledError is collected; our own cancellation still propagates
        await asyncio.gather(*tasks, return_exceptions=True)
        if mdns is not None:
            await mdns.stop()
        if started:
            runinfo.remove(gw.state.path)
            await gw.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def run_serve(config: GatewayConfig, args: argparse.Namespace, *, create_key: bool) -> int:
    return asyncio.run(serve(config, args, create_key=create_key))
