"""`streembit-peer discover`: the gateways and Things announced on the LAN (mDNS `_wot._tcp`).

    streembit-peer discover [--timeout S] [--interface IPV4]... [--json]

Lists every TD Directory (a gateway) and every Thing that answers within the timeout, grouped by
gateway, each with the URL of its Thing Description. Other WoT devices on the LAN (not Streembit
gateways) are listed too, under "other". Exit 0 even when nothing answers (the list is empty).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from gateway.cli.common import EXIT_OK, add_json, out

if TYPE_CHECKING:  # gateway.wot.mdns (and the config model) are loaded only by `discover`
    from gateway.wot.mdns import Found


def group(found: list[Found]) -> dict[str, Any]:
    gateways: dict[str, dict[str, Any]] = {}
    other: list[dict[str, Any]] = []
    for f in found:
        if f.gateway is None:
            other.append(f.as_dict())
            continue
        gw = gateways.setdefault(f.gateway, {"id": f.gateway, "directory": None, "things": []})
        if f.kind == "Directory":
            gw["directory"] = f.as_dict()
        else:
            gw["things"].append(f.as_dict())
    return {"gateways": list(gateways.values()), "other": other}


def human(data: dict[str, Any], timeout_s: float) -> str:
    lines: list[str] = []
    for gw in data["gateways"]:
        d = gw["directory"]
        where = d["td_url"] if d else "(no directory answered)"
        name = d["name"] if d else ""
        lines.append(f"gateway {gw['id']}  {name}")
        lines.append(f"  directory  {where}")
        for t in gw["things"]:
            lines.append(f"  thing      {t['td_url']}  ({t['name']})")
    for o in data["other"]:
        lines.append(f"other {o['type'].lower():9} {o['td_url']}  ({o['name']})")
    return "\n".join(lines) or f"nothing answered within {timeout_s:g} s"


def cmd_discover(args: argparse.Namespace) -> int:
    from gateway.wot.mdns import DEFAULT_BROWSE_S, browse

    timeout = DEFAULT_BROWSE_S if args.timeout is None else args.timeout
    found = asyncio.run(browse(args.interface or None, timeout))
    data = group(found)
    out(args, data, lambda: human(data, timeout))
    return EXIT_OK


def add_commands(sub: Any) -> None:
    sp = sub.add_parser(
        "discover", help="list the gateways and Things announced on the LAN (mDNS _wot._tcp)"
    )
    add_json(sp)
    sp.add_argument("--timeout", type=float, default=None, help="seconds to listen (default 3)")
    sp.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="IPV4",
        help="ask only on this interface address (repeatable; default: every interface)",
    )
    sp.set_defaults(func=cmd_discover)
