"""`streembit-gateway`: run the gateway and manage its local state."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from gateway.acl import AclStore, read_acl_unverified
from gateway.audit import AUDIT_FILE, AuditLog
from gateway.audit.verify import verify_state
from gateway.cli import companion_cli
from gateway.cli.acl_wait import picked_up
from gateway.cli.common import EXIT_FAIL, EXIT_OK, add_json, note, out, run
from gateway.cli.help import Parser
from gateway.cli.listen import add_listen_flags, apply_listen
from gateway.cli.provisioning_gateway import add_commands as add_provisioning_commands
from gateway.cli.serve import add_serve_flags, check_things, run_serve
from gateway.config import default_config, load_config
from gateway.errors import AclError, AuditError
from gateway.provisioning.events import audit_local, record
from gateway.state import StateDir


def cmd_init(args: argparse.Namespace) -> int:
    kp, created = StateDir(args.state).init_identity()
    verb = "created" if created else "already had"
    out(args, {"id": kp.id, "created": created, "state": str(args.state)}, kp.id)
    note(args, f"({verb} the gateway key in {args.state})")
    return EXIT_OK


def cmd_acl_apply(args: argparse.Namespace) -> int:
    state = StateDir(args.state)
    kp = state.load_identity()
    store = AclStore(state.path, kp.id)
    text = Path(args.acl_file).read_text(encoding="utf-8", errors="replace")
    try:
        meant = read_acl_unverified(text.strip()).gateway  # say which gateway it was made for
        if meant != kp.id:
            raise AclError(
                f"{args.acl_file} is the ACL of gateway {meant!r}, not of this gateway {kp.id} "
                f"(make it with: streembit-peer acl grant --gateway {kp.id} ...)",
                code="acl_wrong_gateway",
            )
        acl = store.install(text.strip())
    except AclError as exc:  # refused: audited as the remote install's refusals are
        audit_local(
            state.path,
            record("aclapply", allowed=False, reason=f"{exc.code}: {exc}", affordance="acl"),
        )
        raise
    detail = f"ACL version {acl.version} installed ({len(acl.grants)} grants)"
    audit_local(
        state.path, record("aclapply", allowed=True, reason="ok", detail=detail, affordance="acl")
    )
    running = picked_up(state, acl.version)  # the next command meets the new ACL already
    taken = {
        None: "no gateway runs on this folder: it applies at the next start",
        True: "the running gateway has picked it up",
        False: "the running gateway has not confirmed it yet (see: streembit-gateway audit)",
    }[running]
    out(
        args,
        {"version": acl.version, "grants": len(acl.grants), "running": running},
        f"ACL version {acl.version} installed ({len(acl.grants)} grants); {taken}",
    )
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "verify":
        report = verify_state(StateDir(args.state), [Path(f) for f in args.checkpoint])
        out(args, report.as_dict(), report.human)
        return EXIT_OK if report.ok else EXIT_FAIL
    if args.checkpoint:
        raise AuditError("--checkpoint is an option of `audit verify`", code="usage")
    state = StateDir(args.state)
    path = state.path / AUDIT_FILE
    log = AuditLog.open(path)
    try:
        recs = log.query(limit=args.limit)
    finally:
        log.close()
    rows = [r.as_dict() for r in recs]

    def human() -> str:
        lines = []
        for r in recs:
            when = dt.datetime.fromtimestamp(r.ts).isoformat(timespec="seconds")
            verdict = "ALLOW" if r.allowed else "DENY "
            what = "/".join(x for x in (r.thing, r.affordance) if x)
            lines.append(f"{when} {verdict} {r.subject[:12]:12} {r.op:18} {what:28} {r.reason}")
        return "\n".join(lines) or "(audit log is empty)"

    out(args, rows, human)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    config = apply_listen(default_config(Path(args.state)), args)  # --host, --advertise
    return run_serve(config, args, create_key=True)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.config))
    if args.state:
        import dataclasses

        cfg = dataclasses.replace(cfg, state_dir=Path(args.state))
    return run_serve(cfg, args, create_key=args.create_key)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.config))
    check_things(cfg)  # what `run` checks before it starts anything: drivers, settings, pins
    out(
        args,
        {"ok": True, "things": [t.name for t in cfg.things]},
        f"{args.config}: OK ({len(cfg.things)} things: {', '.join(t.name for t in cfg.things)})",
    )
    return EXIT_OK


def parser() -> Parser:
    p = Parser(prog="streembit-gateway", description=__doc__)
    p.add_argument("--log-level", default="warning", help="debug, info, warning, error")
    add_json(p, top=True)
    sub = p.add_subparsers(metavar="COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        add_json(sp)
        return sp

    sp = cmd("init", "create the gateway key in the state folder and print the gateway id")
    sp.add_argument("--state", required=True, type=Path)
    sp.set_defaults(func=cmd_init)

    add_provisioning_commands(sub)  # provision, qr, reset: gateway/cli/provisioning_gateway.py

    what = "the installed access list"
    acl = sub.add_parser("acl", help=what, description=what).add_subparsers(metavar="ACTION")
    what = "install an owner-signed ACL file; returns once a gateway running on the folder has it"
    sp = acl.add_parser("apply", help="install an owner-signed ACL file", description=what)
    add_json(sp)
    sp.add_argument("--state", required=True, type=Path)
    sp.add_argument("acl_file")
    sp.set_defaults(func=cmd_acl_apply)

    sp = cmd(
        "audit",
        "print the audit log (newest first); `audit verify`: check its hash chain and signed "
        "checkpoints (exit 0 intact, 1 tampered; docs/audit.md)",
    )
    sp.add_argument("action", nargs="?", choices=("verify",), help="verify: check the chain")
    sp.add_argument("--state", required=True, type=Path)
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="verify: a checkpoint the owner fetched earlier (GET /audit/checkpoint); repeatable",
    )
    sp.set_defaults(func=cmd_audit)

    for name, help in (
        (
            "demo",
            "run with two simulated Things (front-door lock, living-room thermostat) on "
            "127.0.0.1, or on --host",
        ),
        ("run", "run the gateway described by a config file"),
    ):
        sp = cmd(name, help)
        if name == "demo":
            sp.add_argument("--state", type=Path, default=Path("./demo-state"))
            add_listen_flags(sp)
            sp.set_defaults(func=cmd_demo)
        else:
            sp.add_argument("--config", required=True, type=Path)
            sp.add_argument("--state", type=Path, help="override the config's state folder")
            sp.add_argument(
                "--create-key",
                action="store_true",
                help="create the gateway key if the state folder has none",
            )
            sp.set_defaults(func=cmd_run)
        add_serve_flags(sp, "default 8080")

    sp = cmd("check-config", "check a config file and exit")
    sp.add_argument("config", type=Path)
    sp.set_defaults(func=cmd_check_config)
    companion_cli.add_commands(sub)
    __import__("gateway.cli.doctor", fromlist=["x"]).add_commands(sub)  # doctor, migrate
    return p


def main(argv: list[str] | None = None) -> int:
    return run(parser(), argv, id_options=("--gateway", "--subject", "--to"))


if __name__ == "__main__":
    raise SystemExit(main())
