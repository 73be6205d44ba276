"""`streembit-peer audit verify GW_ID`: check a gateway's audit log from afar (docs/audit.md §6).

    streembit-peer --bootstrap HOST:PORT --key OWNER_KEY audit verify [--checkpoint FILE ...]
        [--save-checkpoint FILE] [--json] -- GW_ID

Finds the gateway by its id (as every network command: the DHT or the cached contact record),
fetches its newest signed checkpoint (op `auditcheckpoint`) and then every audit record, page
by page (op `auditrecords`), and runs the same chain walk as `streembit-gateway audit verify`
(gateway/audit/verify.py `ChainWalk`): every checkpoint must be signed by the key of the gateway
the id names, and the records must form one hash chain that contains each checkpoint's head.
Prints OK with the count and the head, or the first record that does not fit and why; exit 1
then (or when the gateway refuses: the owner's key only). Progress goes to stderr for long logs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from gateway.cli.common import EXIT_FAIL, EXIT_OK, SETTLES_GC, id_arg, out, settle_gc
from gateway.codes import Code
from gateway.errors import IdentityError, P2PError

if TYPE_CHECKING:
    from gateway.audit.remote import Page
    from gateway.audit.verify import Report
    from gateway.identity import KeyPair
    from gateway.peer import PeerConnection

PROGRESS_S: Final = 1.0  # a progress line on stderr at most this often (none for short logs)
#: A page refused `rate_limited` (the gateway's per-peer message rate, docs/protocol.md §5.1) is
#: asked for again after a pause that doubles from RETRY_S, at most RETRIES times in a row.
RETRY_S: Final = 0.1
RETRIES: Final = 8


async def _page(conn: PeerConnection, after: int) -> Page:
    from gateway.audit.remote import parse_page
    from gateway.peer import PeerRequestError

    pause = RETRY_S
    for _ in range(RETRIES):
        try:
            return parse_page(await conn.audit_records(after), after)
        except PeerRequestError as exc:
            if exc.code != Code.RATE_LIMITED:
                raise
        await asyncio.sleep(pause)
        pause *= 2
    return parse_page(await conn.audit_records(after), after)


async def fetch_and_verify(
    conn: PeerConnection, given: list[str], save: Path | None = None
) -> Report:
    """The gateway's checkpoint and all its records over CONN, checked against its key (and the
    checkpoints GIVEN, kept by the owner earlier)."""
    from gateway.audit.verify import ChainWalk, Report, check_checkpoints

    report = Report(journal=False)
    text = await conn.audit_checkpoint()  # first: the records fetched next cover it
    sources = [("the gateway's checkpoint", text)] if text is not None else []
    sources += [(f"given checkpoint {n}", t) for n, t in enumerate(given, 1)]
    cps = check_checkpoints(sources, conn.gateway, report)
    if save is not None and text is not None and not report.problems:
        await asyncio.to_thread(save.write_text, text + "\n", encoding="ascii")
    walk = ChainWalk(cps)
    after, target, shown = 0, None, time.monotonic()
    while True:
        page = await _page(conn, after)
        for rec in page.records:
            walk.add(rec)
        if page.records:
            after = page.records[-1].id
        target = page.last if target is None else target  # the log's end when we started
        if not page.more or after >= target:
            break
        if time.monotonic() - shown >= PROGRESS_S:
            shown = time.monotonic()
            print(f"fetched {walk.records} of about {target} audit records", file=sys.stderr)
    return walk.finish(report)


def _human(report: Report, gateway_id: str) -> str:
    text = report.human()
    if report.ok:
        text += f"\nhead {report.head}"
    return f"gateway {gateway_id}: {text}"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if not getattr(args, "key", None):
        raise IdentityError("--key KEY (the owner's key) is needed", code="no_key")
    from gateway.audit.verify import read_given
    from gateway.cli.peer_net import _bootstrap, answer, cache_arg, host_arg
    from gateway.identity import load_keypair

    key = load_keypair(Path(args.key))
    given = [read_given(Path(f)) for f in args.checkpoint]  # refused before any traffic
    save = Path(args.save_checkpoint) if args.save_checkpoint else None
    boot = _bootstrap(args)
    from gateway.peer import PeerClient
    from gateway.peer.cache import connect_by_id

    settle_gc()  # start-up done (common.py)

    async def main(key: KeyPair) -> int:
        status = EXIT_OK

        def show(report: Report) -> None:
            nonlocal status
            shown: dict[str, Any] = {"gateway": args.gateway_id, **report.as_dict()}
            out(args, shown, lambda: _human(report, args.gateway_id))
            status = EXIT_OK if report.ok else EXIT_FAIL

        host, cache = host_arg(args), cache_arg(args)
        async with PeerClient(key) as client:
            conn = await connect_by_id(
                client, args.gateway_id, bootstrap=boot, host=host, cache=cache
            )
            if conn.gateway.id != args.gateway_id:  # the contact record is checked; be sure
                await conn.close()
                raise P2PError("the gateway's key does not match its id", code="bad_reply")
            code = await answer(args, conn, fetch_and_verify(conn, given, save), show)
        return code if code != EXIT_OK else status

    return asyncio.run(main(key))


def add_command(sub: Any) -> None:
    """Register `audit verify` on the `streembit-peer` subcommands SUB."""
    from gateway.cli.peer_net import net  # loaded by the parser anyway (add_network_commands)

    what = "check a gateway's audit log from afar (the owner's key)"
    group = sub.add_parser("audit", help=what, description=what)
    actions = group.add_subparsers(metavar="ACTION")
    sp = actions.add_parser(
        "verify",
        help="fetch the signed checkpoint and every record; check the hash chain",
        description=__doc__,
    )
    net(sp)  # the options of every network command (peer_net.py), before or after `verify`
    sp.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint you kept earlier (--save-checkpoint, GET /audit/checkpoint): the log "
        "must still contain it; repeatable",
    )
    sp.add_argument(
        "--save-checkpoint",
        metavar="FILE",
        help="keep the gateway's checkpoint in FILE (if it verifies), for a later --checkpoint",
    )
    sp.add_argument("gateway_id", metavar="GW_ID", type=id_arg)
    sp.set_defaults(func=cmd_audit_verify, **{SETTLES_GC: True})
