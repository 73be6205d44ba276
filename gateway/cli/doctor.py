"""`streembit-gateway doctor` and `streembit-gateway migrate`: operations on an installed gateway.

streembit-gateway doctor [--config FILE] [--state DIR] [--json]
    check the config, keys, file permissions, state version, audit log, the running service,
    GPIO and serial access, the MQTT broker, the DHT and the clock; print what to fix.
    Exit 0 when nothing failed (warnings allowed), 1 otherwise.

streembit-gateway migrate --state DIR [--json]
    bring a state folder to this gateway's schema version (the gateway also does this when
    it starts); refuses while a gateway runs on the folder. deploy/install.sh runs it on
    upgrade.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from gateway.cli.common import EXIT_FAIL, EXIT_OK, add_json, out
from gateway.cli.help import colour_on, paint
from gateway.ops.doctor import DEFAULT_CONFIG, run_checks
from gateway.state import STATE_VERSION, StateDir

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
COLOUR = {"ok": "green", "warn": "yellow", "fail": "red"}  # on a terminal only (NO_COLOR)


def _described(command: str) -> str:
    """The paragraph of the module docstring about COMMAND (its usage line, then the text)."""
    for para in (__doc__ or "").split("\n\n"):
        if para.startswith(f"streembit-gateway {command}"):
            _usage, _, text = para.partition("\n")
            return textwrap.dedent(text).strip()
    return ""


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args.config, args.state)
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)

    colour = colour_on(sys.stdout)

    def human() -> str:
        lines = []
        for c in checks:
            mark = paint(MARK[c.status], COLOUR[c.status], colour)
            lines.append(f"[{mark}] {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                lines.append(f"       fix: {c.fix}")
        verdict = "all good" if not failed and not warned else f"{failed} failed, {warned} warnings"
        lines.append(verdict)
        return "\n".join(lines)

    data: dict[str, Any] = {
        "ok": failed == 0,
        "failed": failed,
        "warnings": warned,
        "checks": [c.as_dict() for c in checks],
    }
    out(args, data, human)
    return EXIT_OK if failed == 0 else EXIT_FAIL


def cmd_migrate(args: argparse.Namespace) -> int:
    state = StateDir(args.state)
    before = state.version()
    state.lock()  # refuses while a gateway runs; migrates under the lock
    state.unlock()
    after = state.version()
    steps = [] if before is None else list(range(before, after or before))
    out(
        args,
        {"from": before, "to": after, "current": STATE_VERSION, "steps": len(steps)},
        f"{state.path}: state version {after}"
        + (f" (migrated from {before})" if steps else " (already current)"),
    )
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Register `doctor` and `migrate` on the `streembit-gateway` subparsers."""
    sp = sub.add_parser(
        "doctor",
        help="check this installation and print what to fix",
        description=_described("doctor"),
    )
    add_json(sp)
    sp.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config file (default {DEFAULT_CONFIG}; without it and with --state: the "
        "config a gateway running on that folder loaded, or none for the demo)",
    )
    sp.add_argument("--state", type=Path, help="state folder (default: the config's state_dir)")
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser(
        "migrate",
        help="bring a state folder to this version's schema (refuses while running)",
        description=_described("migrate"),
    )
    add_json(sp)
    sp.add_argument("--state", required=True, type=Path)
    sp.set_defaults(func=cmd_migrate)
