"""`streembit-peer delegate`: sign a delegation link offline (docs/acl.md §6).

A chain file holds one link (compact JWS) per line, first link first. With --parent, the new
link extends that chain (its issuer must be the parent's last delegatee); without, it starts a
chain from the issuer's own grant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from gateway.cli.common import EXIT_OK, add_json, id_arg, out

DAY = 86400


def read_chain(path: Path) -> list[str]:
    """The links of a chain file (one per line)."""
    from gateway.acl.delegation import MAX_LINK_BYTES, MAX_LINKS, parse_chain

    text = path.read_text(encoding="ascii", errors="replace")[: MAX_LINKS * (MAX_LINK_BYTES + 2)]
    links = [line.strip() for line in text.splitlines() if line.strip()]
    parse_chain(links)  # DelegationError (delegation_malformed) if it is not a chain
    return links


def cmd_delegate(args: argparse.Namespace) -> int:
    from gateway.acl.delegation import parse_link, sign_link
    from gateway.cli.peer_cli import _split, _when
    from gateway.identity import load_public
    from gateway.identity.keys import is_id, load_keypair
    from gateway.storage import atomic_write_text

    issuer = load_keypair(Path(args.key))
    to = args.to if is_id(args.to) else load_public(Path(args.to)).id
    parent = read_chain(Path(args.parent)) if args.parent else []
    now = int(time.time())
    exp = _when(args.exp, "--exp")
    if exp is None:
        exp = now + DAY
    if parent:
        exp = min(exp, parse_link(parent[-1]).exp)
    link = sign_link(
        issuer,
        to=to,
        gateway_id=args.gateway,
        things=_split(args.things),
        affordances=_split(args.affordances) or ["*"],
        ops=_split(args.ops),
        exp=exp,
        nbf=_when(args.nbf, "--nbf"),
        schedule=args.schedule,
        uses=args.uses,
        depth=args.depth,
        parent=parent[-1] if parent else None,
        now=now,
    )
    chain = [*parent, link]
    chain_text = "\n".join(chain) + "\n"
    atomic_write_text(Path(args.out), chain_text, mode=0o600)
    result: dict[str, Any] = {"out": args.out, "links": len(chain), "to": to, "exp": exp}
    out(args, result, f"{args.out}: {len(chain)} link(s), last to {to}")
    return EXIT_OK


def add_command(sub: Any) -> None:
    """Register `delegate` on the `streembit-peer` subcommands SUB."""
    sp = sub.add_parser("delegate", help="sign a delegation link offline (narrows your grant)")
    add_json(sp)
    sp.add_argument("--key", required=True, help="your private key (the issuer)")
    sp.add_argument("--gateway", required=True, type=id_arg, help="the gateway id")
    sp.add_argument("--to", required=True, help="the delegatee's public key file or id")
    sp.add_argument("--things", required=True, help="comma-separated names, or *")
    sp.add_argument("--ops", required=True, help="comma-separated operations")
    sp.add_argument("--affordances", help="comma-separated names (default *)")
    sp.add_argument("--nbf", help="ISO 8601 start of validity")
    sp.add_argument("--exp", help="ISO 8601 end of validity (default: in 24 h; <= 30 days)")
    sp.add_argument("--schedule", help='weekly schedule inside yours, e.g. "tue 09:00-12:00"')
    sp.add_argument("--uses", type=int, help="how many requests the chain may make")
    sp.add_argument("--depth", type=int, default=0, help="links that may follow (default 0)")
    sp.add_argument("--parent", help="the chain file you received (to extend it)")
    sp.add_argument("--out", required=True, help="the chain file to write")
    sp.set_defaults(func=cmd_delegate)
