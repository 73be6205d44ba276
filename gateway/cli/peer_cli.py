"""`streembit-peer`: keys, owner-signed ACLs and bearer tokens on the peer (owner or user) side."""

# A one-shot command (issue 11: `read` with a cached contact record < 300 ms) is mostly start-up:
# each command imports what it uses (the ACL, token and key code here; the network side in
# peer_net.py), and `main` keeps the garbage collector off the imports (common.pause_gc).
# tests/test_peer_imports.py guards the modules a command loads; bench/bench_peer_cli.py times it.

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import EXIT_OK, add_json, id_arg, out, pause_gc, run
from gateway.cli.help import Parser
from gateway.errors import AclError, IdentityError, StreembitError

if TYPE_CHECKING:
    from gateway.acl import Acl


def cmd_keygen(args: argparse.Namespace) -> int:
    from gateway.identity import generate_keypair, write_keypair

    path = Path(args.key)
    if path.exists() and not args.force:
        raise IdentityError(f"{path} exists; use --force to replace it", code="bad_key")
    kp = generate_keypair()
    pub = write_keypair(path, kp)
    out(args, {"id": kp.id, "key": str(path), "pub": str(pub)}, kp.id)
    return EXIT_OK


def cmd_id(args: argparse.Namespace) -> int:
    from gateway.identity import load_keypair, load_public

    path = Path(args.key)
    try:
        ident = load_public(path)
    except IdentityError:
        ident = load_keypair(path).public
    out(args, {"id": ident.id, "jwk": ident.jwk}, ident.id)
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import issue_token
    from gateway.identity import load_keypair

    kp = load_keypair(Path(args.key))
    token = issue_token(kp, audience=args.gateway, ttl=args.ttl)
    out(args, {"token": token, "ttl": args.ttl}, token)
    return EXIT_OK


def _load_acl(path: Path, gateway: str) -> Acl:
    from gateway.acl import new_acl, read_acl_unverified

    if not path.exists():
        return new_acl(gateway)
    acl = read_acl_unverified(path.read_text(encoding="utf-8", errors="replace").strip())
    if acl.gateway != gateway:
        raise AclError(
            f"{path} is the ACL of gateway {acl.gateway}, not {gateway}", code="acl_wrong_gateway"
        )
    return acl


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _when(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise AclError(f"{what}: not an ISO 8601 time: {value!r}", code="acl_malformed") from None
    if t.tzinfo is None:
        t = t.astimezone()  # local time
    return int(t.timestamp())


def _save(args: argparse.Namespace, acl: Acl) -> None:
    from gateway.acl import sign_acl
    from gateway.identity import load_keypair
    from gateway.storage import atomic_write_text

    owner = load_keypair(Path(args.key))
    atomic_write_text(Path(args.acl), sign_acl(acl, owner) + "\n", mode=0o600)


def cmd_grant(args: argparse.Namespace) -> int:
    from gateway.acl import BASE_OPS, Grant, with_grant
    from gateway.identity import load_public

    acl = _load_acl(Path(args.acl), args.gateway)
    ops = sorted(BASE_OPS) if args.ops.strip() == "all" else _split(args.ops)
    unknown = [o for o in ops if o not in BASE_OPS]
    if not ops or unknown:
        raise AclError(
            f"--ops: unknown operation(s) {', '.join(unknown) or '(none)'}; "
            f"known: {', '.join(sorted(BASE_OPS))}, or all",
            code="acl_malformed",
        )
    grant = Grant.for_key(
        load_public(Path(args.subject)),
        things=_split(args.things) or ["*"],
        affordances=_split(args.affordances) or ["*"],
        ops=ops,
        nbf=_when(args.not_before, "--not-before"),
        exp=_when(args.not_after, "--not-after"),
        schedule=args.schedule,
        role=args.role,
        delegate=args.delegate,
    )
    acl = with_grant(acl, grant)
    _save(args, acl)
    out(args, acl.to_json(), f"{args.acl}: version {acl.version}, granted {grant.subject}")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    from gateway.acl import without_subject
    from gateway.identity import load_public
    from gateway.identity.keys import is_id

    acl = _load_acl(Path(args.acl), args.gateway)
    if args.link is not None:
        return _revoke_link(args, acl)
    subject = args.subject
    if Path(subject).exists():
        subject = load_public(Path(subject)).id
    elif not is_id(subject):
        raise AclError(
            f"--subject: {subject!r} is neither a public key file nor an id", code="acl_malformed"
        )
    acl = without_subject(acl, subject)
    _save(args, acl)
    out(args, acl.to_json(), f"{args.acl}: version {acl.version}, revoked {subject}")
    return EXIT_OK


def _revoke_link(args: argparse.Namespace, acl: Acl) -> int:
    """`acl revoke --link JTI|CHAIN_FILE`: end one delegation link (the file's last link)."""
    from gateway.acl.delegation import parse_link
    from gateway.acl.document import without_link
    from gateway.acl.model import MAX_NAME_LEN
    from gateway.cli.delegate import read_chain

    jti = args.link
    if Path(jti).is_file():
        jti = parse_link(read_chain(Path(jti))[-1]).jti
    elif not jti or len(jti) > MAX_NAME_LEN or not jti.isprintable():
        raise AclError("--link: give a link id (jti) or a chain file", code="acl_malformed")
    acl = without_link(acl, jti)
    _save(args, acl)
    out(args, acl.to_json(), f"{args.acl}: version {acl.version}, revoked link {jti}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from gateway.acl import read_acl_unverified

    acl = read_acl_unverified(Path(args.acl).read_text(encoding="utf-8", errors="replace").strip())
    doc = acl.to_json()

    def human() -> str:
        lines = [f"gateway {acl.gateway}  version {acl.version}  (signature not checked here)"]
        for g in doc.get("grants", []):
            extra = {k: g[k] for k in ("nbf", "exp", "schedule", "role", "delegate") if k in g}
            lines.append(
                f"  {g['sub']}: things={','.join(g['things'])} "
                f"affordances={','.join(g['affordances'])} ops={','.join(sorted(g['ops']))}"
                + (f" {json.dumps(extra)}" if extra else "")
            )
        if doc.get("revoked"):
            lines.append(f"  revoked: {', '.join(doc['revoked'])}")
        if doc.get("revoked_delegations"):
            lines.append(f"  revoked links: {', '.join(doc['revoked_delegations'])}")
        return "\n".join(lines)

    out(args, doc, human)
    return EXIT_OK


class _KnownOps:
    """The operations a grant may list (gateway.acl.BASE_OPS), as help text shows them: argparse
    formats a help only when it prints it, so parsing a command loads no ACL code for this."""

    def __str__(self) -> str:
        from gateway.acl import BASE_OPS

        return ", ".join(sorted(BASE_OPS))


def parser() -> Parser:
    p = Parser(prog="streembit-peer", description=__doc__)
    p.add_argument("--log-level", default="warning")
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node to join the network through (repeatable)",
    )
    p.add_argument("--key", default=None, help="your private key file (network commands)")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="network commands: look the gateway up in the DHT, neither using nor updating "
        "the cached contact records (~/.cache/streembit/contacts)",
    )
    p.add_argument(
        "--host",
        default=None,
        metavar="ADDR",
        help="local address of this peer's DHT node in network commands (default: the source "
        "address of the route toward the bootstrap nodes; `node`: 127.0.0.1); --host after the "
        "command wins",
    )
    add_json(p, top=True)
    sub = p.add_subparsers(metavar="COMMAND")

    sp = sub.add_parser("keygen", help="create a key pair: FILE (private, 0600) and FILE.pub")
    add_json(sp)
    sp.add_argument("--key", required=True)
    sp.add_argument("--force", action="store_true", help="replace an existing key file")
    sp.set_defaults(func=cmd_keygen)

    sp = sub.add_parser("id", help="print the id (RFC 7638 thumbprint) of a key or public key")
    add_json(sp)
    sp.add_argument("--key", required=True)
    sp.set_defaults(func=cmd_id)

    sp = sub.add_parser("token", help="print a bearer JWT (ES256) for a gateway's HTTP API")
    add_json(sp)
    sp.add_argument("--key", required=True)
    sp.add_argument(
        "--gateway", required=True, type=id_arg, help="the gateway id (the token's audience)"
    )
    sp.add_argument("--ttl", type=int, default=300, help="seconds (default 300)")
    sp.set_defaults(func=cmd_token)

    what = "edit and sign an access list (owner), or push it to a running gateway"
    group = sub.add_parser("acl", help="edit and sign an access list", description=what)
    acl = group.add_subparsers(metavar="ACTION")
    for name, func in (("grant", cmd_grant), ("revoke", cmd_revoke)):
        sp = acl.add_parser(name, help=f"{name} access; writes the next signed version")
        add_json(sp)
        sp.add_argument("--key", required=True, help="the owner's private key")
        sp.add_argument("--acl", required=True, help="the ACL file (created if missing)")
        sp.add_argument("--gateway", required=True, type=id_arg, help="the gateway id")
        if name == "grant":
            sp.add_argument("--subject", required=True, help="the grantee's public key file")
            sp.add_argument("--things", required=True, help="comma-separated names, or *")
            ops = sp.add_argument(
                "--ops", required=True, help="comma-separated: %(known_ops)s; or all"
            )
            vars(ops)["known_ops"] = _KnownOps()  # argparse formats help with vars(action)
            sp.add_argument("--affordances", help="comma-separated names (default *)")
            sp.add_argument("--not-before", help="ISO 8601 start of validity")
            sp.add_argument("--not-after", help="ISO 8601 end of validity")
            sp.add_argument("--schedule", help='weekly schedule, e.g. "mon-fri 08:00-18:00"')
            sp.add_argument("--role", default="user", choices=("user", "admin"))
            sp.add_argument(
                "--delegate", type=int, default=0, help="delegation depth allowed (default 0)"
            )
        else:
            which = sp.add_mutually_exclusive_group(required=True)
            which.add_argument("--subject", help="public key file or id to revoke")
            which.add_argument(
                "--link",
                metavar="JTI|FILE",
                help="a delegation link to end (its jti, or a chain file: its last link)",
            )
        sp.set_defaults(func=func)
    sp = acl.add_parser("show", help="print an ACL file")
    add_json(sp)
    sp.add_argument("--acl", required=True)
    sp.set_defaults(func=cmd_show)
    from gateway.cli.discover import add_commands as add_discover_commands
    from gateway.cli.peer_net import add_network_commands
    from gateway.cli.provisioning_peer import add_commands as add_provisioning_commands

    add_network_commands(sub, acl)  # node, find, things, read, ...: gateway/cli/peer_net.py
    add_provisioning_commands(sub)  # owner-qr, claim, transfer: gateway/cli/provisioning_peer.py
    add_discover_commands(sub)  # LAN discovery (mDNS): gateway/cli/discover.py
    from gateway.cli.delegate import add_command as add_delegate_command

    add_delegate_command(sub)  # delegate: sign a delegation link offline (gateway/cli/delegate.py)
    from gateway.cli.audit_peer import add_command as add_audit_command

    add_audit_command(sub)  # audit verify: a gateway's audit chain (gateway/cli/audit_peer.py)
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line ARGV; None: this process's (the console script), whose start-up runs
    without garbage collection until the command has loaded its modules (common.pause_gc)."""
    if argv is None:
        pause_gc()
    return run(parser(), argv, id_options=("--gateway", "--subject", "--to"))


__all__ = ["StreembitError", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
