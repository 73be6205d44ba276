"""`streembit-gateway` provisioning commands: provision, qr, reset (docs/provisioning.md).

    streembit-gateway provision --state DIR (--owner-key PUBFILE | --qr IMAGE | --payload TEXT
                                            | --camera [--camera-timeout S])
    streembit-gateway qr --state DIR [--addr ws://HOST:PORT/p2p]... [--config FILE]
                         [--hint HOST:PORT]... [--png OUT.png] [--svg OUT.svg] [--new-code]
    streembit-gateway reset --state DIR [--yes]

Bad input (a malformed payload or image, an unreadable key file, an unconfirmed reset) exits 2,
a refusal (already owned, a running gateway) 1. Every refusal, and every change, is written to
the state folder's audit log; secrets (setup codes, payload text) never are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from gateway.acl import AclStore
from gateway.cli.common import EXIT_OK, add_json, fail, out
from gateway.config import load_config, parse_hostport
from gateway.errors import IdentityError, ProvisioningError, StreembitError
from gateway.identity import load_public
from gateway.provisioning import payload as pl
from gateway.provisioning.events import audit_local, record
from gateway.provisioning.reset import KEPT_FILES, WIPED_FILES, factory_reset
from gateway.provisioning.setup_code import SetupCodeStore, format_code
from gateway.state import StateDir
from gateway.text import clean

#: ProvisioningError codes that mean "your input is bad" (exit 2), not "refused" (exit 1).
MAX_ADDR_BYTES: Final = 200
CAMERA_TIMEOUT_S: Final = 60.0  # as camera.SCAN_TIMEOUT_S (not imported: it loads Pillow)
UNSPECIFIED_HOSTS: Final = ("", "0.0.0.0", "::")  # noqa: S104 (names, not a bind)


def report(args: argparse.Namespace, exc: StreembitError) -> int:
    """Print EXC like every command does; exit 2 for bad input, else 1 (gateway/codes.py)."""
    return fail(args, exc)


# --------------------------------------------------------------------------- provision
def _owner_from_args(args: argparse.Namespace) -> tuple[str, pl.OwnerPayload]:
    if args.owner_key:
        return "owner-key", pl.OwnerPayload(load_public(Path(args.owner_key)))
    if args.payload is not None:
        return "payload", pl.decode_owner(args.payload)
    if args.qr:
        from gateway.provisioning.qr import read_payload_text

        return "qr", pl.decode_owner(read_payload_text(Path(args.qr)))
    from gateway.provisioning.camera import open_source, scan_frames

    source = open_source(args.camera_source)
    print("hold the owner QR (streembit-peer owner-qr) in front of the camera…", file=sys.stderr)
    try:
        found = scan_frames(source, decode=pl.decode_owner, timeout_s=args.camera_timeout)
    finally:
        source.close()
    if not isinstance(found, pl.OwnerPayload):  # decode_owner returns only owner payloads
        raise ProvisioningError("not an owner QR", code="payload_kind")
    return "camera", found


def cmd_provision(args: argparse.Namespace) -> int:
    state = StateDir(args.state)
    kp = state.load_identity()
    source = next(
        (n for n in ("owner_key", "qr", "payload") if getattr(args, n) is not None), "camera"
    )
    try:
        source, owner_payload = _owner_from_args(args)
        owner = owner_payload.owner
        store = AclStore(state.path, kp.id)
        already = store.owner is not None and store.owner.id == owner.id
        if store.owner is not None and not already:
            raise ProvisioningError(
                f"already owned by {store.owner.id}; reset it or have the owner transfer it",
                code="already_owned",
            )
        store.pin_owner(owner)
    except (ProvisioningError, IdentityError) as exc:
        why = f"{exc.code}: {exc}"
        audit_local(state.path, record("provision", allowed=False, reason=why, detail=source))
        return report(args, exc)
    detail = f"owner {owner.id} {'already pinned' if already else 'pinned'} (from {source})"
    audit_local(state.path, record("provision", allowed=True, reason="ok", detail=detail))
    hints = list(owner_payload.bootstrap)
    data: dict[str, Any] = {"owner": owner.id, "gateway": kp.id}
    if source != "owner-key":  # (the --owner-key output is unchanged from earlier versions)
        data.update(source=source, already=already, bootstrap=hints)
    human = (
        f"owner {owner.id} pinned on gateway {kp.id}\n"
        "compare this owner id with the one your own peer shows (streembit-peer id --key ...)"
    )
    if hints:
        human += f"\nbootstrap hints from the QR: {', '.join(hints)}"
    out(args, data, human)
    return EXIT_OK


# --------------------------------------------------------------------------- qr
def _check_addr(url: str) -> str:
    if (
        not url.startswith(("ws://", "wss://"))
        or len(url.encode()) > MAX_ADDR_BYTES
        or not url.isprintable()
        or " " in url
    ):
        raise ProvisioningError(
            f"--addr {clean(url, 60)!r}: expected ws://HOST:PORT/p2p", code="bad_address"
        )
    return url


def _check_hint(text: str) -> str:
    try:
        parse_hostport(text)
    except ValueError as exc:
        raise ProvisioningError(f"--hint: {exc}", code="bad_address") from None
    if len(text.encode()) > MAX_ADDR_BYTES or not text.isprintable():
        raise ProvisioningError(f"--hint {clean(text, 60)!r} is not HOST:PORT", code="bad_address")
    return text


def _addresses(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    addrs = [_check_addr(a) for a in args.addr or []]
    hints = [_check_hint(h) for h in args.hint or []]
    if args.config is not None:
        p2p = load_config(Path(args.config)).p2p
        if not addrs:
            if p2p.public_ws:
                addrs = [_check_addr(a) for a in p2p.public_ws]
            elif p2p.ws_port and p2p.ws_host not in UNSPECIFIED_HOSTS:
                addrs = [f"ws://{p2p.ws_host}:{p2p.ws_port}/p2p"]
        if not hints and p2p.dht_port and p2p.dht_host not in UNSPECIFIED_HOSTS:
            hints = [f"{p2p.dht_host}:{p2p.dht_port}"]
    return addrs[: pl.MAX_REPEATED], hints[: pl.MAX_REPEATED]


def cmd_qr(args: argparse.Namespace) -> int:
    state = StateDir(args.state)
    kp = state.load_identity()
    owner_file = state.path / "owner.pub"
    owner = load_public(owner_file).id if owner_file.exists() else None
    try:
        addrs, hints = _addresses(args)
        code: bytes | None = None
        if owner is None:
            setup = SetupCodeStore(state.path)
            before = setup.current()
            code = setup.ensure(new=args.new_code)
            if code != before:
                audit_local(
                    state.path,
                    record(
                        "setupcode", allowed=True, reason="ok", detail="new one-time setup code"
                    ),
                )
        elif args.new_code:
            raise ProvisioningError(
                f"owned by {owner}: claiming is closed, so there is no setup code",
                code="already_owned",
            )
        text = pl.GatewayPayload(kp.public, tuple(addrs), tuple(hints), code).encode()
        from gateway.provisioning.qr import print_terminal, write_png, write_svg

        if args.png:
            write_png(text, Path(args.png))
        if args.svg:
            write_svg(text, Path(args.svg))
    except StreembitError as exc:
        why = f"{exc.code}: {exc}"
        audit_local(state.path, record("qr", allowed=False, reason=why))
        return report(args, exc)
    except OSError as exc:
        err = ProvisioningError(
            f"cannot write the image: {exc.strerror}", code="image_write_failed"
        )
        return report(args, err)
    data: dict[str, Any] = {
        "gateway": kp.id,
        "addrs": addrs,
        "bootstrap": hints,
        "owner": owner,
        "setup_code": format_code(code) if code else None,
        "payload": text,
        "png": args.png,
        "svg": args.svg,
    }

    def human() -> str:
        print_terminal(text)
        lines = [f"gateway {kp.id}"]
        lines += [f"  address {a}" for a in addrs] or [
            "  no address: claimers need --bootstrap (pass --addr ws://HOST:PORT/p2p)"
        ]
        if code:
            lines.append(f"  one-time setup code {format_code(code)} (works once)")
            lines.append("claim it with: streembit-peer claim PAYLOAD --key OWNER_KEY")
        else:
            lines.append(f"  owned by {owner}: claiming is closed")
        lines.append(f"payload: {text}")
        return "\n".join(lines)

    out(args, data, human)
    return EXIT_OK


# --------------------------------------------------------------------------- reset
def _confirmed(path: Path) -> str | None:
    """None if the person confirmed the reset, else why not."""
    if not sys.stdin.isatty():
        return "a factory reset needs confirmation: add --yes"
    try:
        answer = input(
            f"Factory reset of {path}: deletes the gateway key, the owner, the ACL, the "
            "setup code and the companion pairings (the audit log stays).\n"
            "Type 'reset' to go on: "
        )
    except EOFError:
        answer = ""
    return None if answer.strip() == "reset" else "not confirmed; nothing changed"


def cmd_reset(args: argparse.Namespace) -> int:
    path = StateDir(args.state).path
    refusal = None if args.yes else _confirmed(path)
    if refusal is not None:
        exc = ProvisioningError(refusal, code="reset_unconfirmed")
        audit_local(path, record("reset", allowed=False, reason=f"{exc.code}: {exc}"))
        return report(args, exc)
    try:
        removed = factory_reset(path)  # audits itself, refused or done
    except ProvisioningError as exc:
        return report(args, exc)
    data = {"reset": True, "state": str(path), "removed": removed, "kept": list(KEPT_FILES)}
    out(
        args,
        data,
        f"factory reset of {path}: removed {', '.join(removed) or 'nothing'}; "
        "the audit log was kept.\nmake a new identity with: streembit-gateway init --state "
        f"{path}",
    )
    return EXIT_OK


# --------------------------------------------------------------------------- parser
def add_commands(sub: Any) -> None:
    """Register provision, qr and reset on the `streembit-gateway` subparsers SUB."""

    def cmd(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        add_json(sp)
        sp.add_argument("--state", required=True, type=Path)
        sp.set_defaults(func=func)
        return sp

    sp = cmd(
        "provision",
        "pin the owner's public key (the root of trust): from a key file, a QR image, "
        "the QR text or the camera",
        cmd_provision,
    )
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--owner-key", help="the owner's public key file (PEM or JWK)")
    src.add_argument("--qr", help="a photo or screenshot of the owner QR (streembit-peer owner-qr)")
    src.add_argument("--payload", help="the owner QR's text (SB:...)")
    src.add_argument("--camera", action="store_true", help="scan the owner QR with the camera")
    sp.add_argument(
        "--camera-timeout",
        type=float,
        default=CAMERA_TIMEOUT_S,
        help=f"seconds to look (default {CAMERA_TIMEOUT_S:g})",
    )
    sp.add_argument(
        "--camera-source",
        default=None,
        help="picamera2 (default, or $STREEMBIT_CAMERA) or dir:FOLDER of frames",
    )

    sp = cmd(
        "qr",
        "show the gateway's QR: its id, addresses and one-time setup code (while unclaimed)",
        cmd_qr,
    )
    sp.add_argument("--addr", action="append", help="a ws:// URL peers reach it at (repeatable)")
    sp.add_argument("--config", type=Path, help="take the addresses from this config file")
    sp.add_argument("--hint", action="append", help="a DHT node HOST:PORT to add (repeatable)")
    sp.add_argument("--png", help="also write the QR to this PNG file")
    sp.add_argument("--svg", help="also write the QR to this SVG file")
    sp.add_argument("--new-code", action="store_true", help="replace the setup code")

    sp = cmd(
        "reset",
        "factory reset (local only): delete " + ", ".join(WIPED_FILES) + "; keep the audit log",
        cmd_reset,
    )
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
