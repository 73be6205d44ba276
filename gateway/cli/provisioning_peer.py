"""`streembit-peer` provisioning commands: owner-qr, claim, transfer (docs/provisioning.md).

    streembit-peer owner-qr --key FILE [--png OUT.png] [--svg OUT.svg] [--bootstrap HOST:PORT]...
    streembit-peer claim (PAYLOAD | --qr IMAGE) --key OWNER_KEY [--bootstrap HOST:PORT]
    streembit-peer transfer --key OWNER_KEY --to NEW_OWNER_PUBFILE GW_ID
                            [--via GATEWAY_PAYLOAD | --bootstrap HOST:PORT]

`claim` connects to the addresses in the gateway's QR (or finds the gateway in the DHT through
--bootstrap); `transfer` finds the gateway in the DHT, or connects to the addresses of a gateway
QR given with --via. Bad input exits 2; a refusal by the gateway exits 1 with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from gateway.cli.common import EXIT_OK, add_json, id_arg, out
from gateway.cli.common import fail as report  # provisioning_gateway.report: same, lighter import
from gateway.cli.peer_net import answer, host_arg
from gateway.config import parse_hostport
from gateway.errors import IdentityError, P2PError, ProvisioningError, StreembitError
from gateway.identity import KeyPair, PublicIdentity, load_keypair, load_public

if TYPE_CHECKING:  # the network side (aiohttp, the DHT) is imported by the commands using it
    from gateway.peer import PeerClient, PeerConnection

Address = tuple[str, int]
CLAIM_HINT: Final = (
    "compare this owner id with the one the gateway's audit log shows "
    "(streembit-gateway audit --state ...)"
)


def _key_arg(args: argparse.Namespace) -> Path:
    key = getattr(args, "key", None)
    if not key:
        raise IdentityError("--key KEY is needed", code="no_key")
    return Path(key)


def _bootstrap(args: argparse.Namespace) -> list[Address]:
    boot = []
    for text in getattr(args, "bootstrap", None) or []:
        try:
            boot.append(parse_hostport(text))
        except ValueError as exc:
            raise ProvisioningError(f"--bootstrap: {exc}", code="bad_address") from None
    return boot


# --------------------------------------------------------------------------- owner-qr
def cmd_owner_qr(args: argparse.Namespace) -> int:
    from gateway.provisioning import payload as pl  # (not imported for the other commands)

    path = _key_arg(args)
    try:
        owner = load_public(path)
    except IdentityError:
        owner = load_keypair(path).public
    _bootstrap(args)  # check the hints: HOST:PORT each
    hints = list(getattr(args, "bootstrap", None) or [])
    try:
        text = pl.OwnerPayload(owner, tuple(hints[: pl.MAX_REPEATED])).encode()
        from gateway.provisioning.qr import print_terminal, write_png, write_svg

        if args.png:
            write_png(text, Path(args.png))
        if args.svg:
            write_svg(text, Path(args.svg))
    except ProvisioningError as exc:
        return report(args, exc)
    except OSError as exc:
        return report(
            args, ProvisioningError(f"cannot write: {exc.strerror}", code="image_write_failed")
        )
    data = {
        "owner": owner.id,
        "payload": text,
        "bootstrap": hints,
        "png": args.png,
        "svg": args.svg,
    }

    def human() -> str:
        print_terminal(text)
        return (
            f"owner {owner.id}\npayload: {text}\n"
            "show this to the gateway: streembit-gateway provision --state DIR --camera "
            "(or --qr PHOTO, or --payload TEXT)"
        )

    out(args, data, human)
    return EXIT_OK


# --------------------------------------------------------------------------- network
async def _connect_gateway(
    client: PeerClient,
    gateway: PublicIdentity,
    addrs: tuple[str, ...],
    boot: list[Address],
    host: str | None = None,
) -> PeerConnection:
    """Connect to GATEWAY at one of ADDRS, else find it in the DHT through BOOT."""
    from gateway.peer import PeerConnectionError
    from gateway.peer.find import connect, ephemeral_dht, find_contact

    errors: list[str] = []
    for url in addrs:
        try:
            return await client.connect(url, gateway)
        except PeerConnectionError as exc:
            errors.append(f"{url}: {exc}")
    if not boot:
        raise PeerConnectionError(
            "cannot reach the gateway: "
            + ("; ".join(errors) or "its QR lists no address")
            + " (pass --bootstrap HOST:PORT to look it up in the DHT)",
            code="connect_failed",
        )
    async with ephemeral_dht(boot, host) as dht:
        contact = await find_contact(dht, gateway.id)
        if contact.identity.id != gateway.id:
            raise P2PError("the DHT answered for another key", code="record_wrong_key")
        return await connect(client, contact)


def _run(
    args: argparse.Namespace,
    key: KeyPair,
    gateway: PublicIdentity,
    addrs: tuple[str, ...],
    action: Callable[[PeerConnection], Awaitable[dict[str, Any]]],
    human: Callable[[dict[str, Any]], str],
) -> int:
    from gateway.peer import PeerClient

    boot = _bootstrap(args)

    async def main() -> int:
        async with PeerClient(key) as client:
            conn = await _connect_gateway(client, gateway, addrs, boot, host_arg(args))

            def show(result: dict[str, Any]) -> None:
                out(args, result, lambda: human(result))

            return await answer(args, conn, action(conn), show)

    return asyncio.run(main())


def cmd_claim(args: argparse.Namespace) -> int:
    from gateway.provisioning import payload as pl

    key = load_keypair(_key_arg(args))
    try:
        if args.qr:
            from gateway.provisioning.qr import read_payload_text

            text = read_payload_text(Path(args.qr))
        elif args.payload:
            text = args.payload
        else:
            raise ProvisioningError("give the gateway's PAYLOAD or --qr IMAGE", code="no_qr")
        gp = pl.decode_gateway(text)
        if gp.setup_code is None:
            raise ProvisioningError(
                "this gateway QR carries no setup code: the gateway is already owned",
                code="payload_malformed",
            )
        code = gp.setup_code
    except StreembitError as exc:
        return report(args, exc)

    async def action(conn: PeerConnection) -> dict[str, Any]:
        return await conn.claim(code)

    def human(r: dict[str, Any]) -> str:
        return f"claimed gateway {r.get('gateway')}: you ({r.get('owner')}) are its owner"

    return _run(args, key, gp.gateway, gp.addrs, action, human)


def cmd_transfer(args: argparse.Namespace) -> int:
    from gateway.provisioning import payload as pl
    from gateway.provisioning.transfer import sign_transfer

    owner = load_keypair(_key_arg(args))
    new_owner = load_public(Path(args.to))
    gateway_id: str = args.gateway_id
    addrs: tuple[str, ...] = ()
    gateway: PublicIdentity | None = None
    try:
        if args.via:
            gp = pl.decode_gateway(args.via)
            if gp.gateway.id != gateway_id:
                raise ProvisioningError(
                    f"--via is the QR of gateway {gp.gateway.id}, not {gateway_id}",
                    code="payload_kind",
                )
            gateway, addrs = gp.gateway, gp.addrs
        statement = sign_transfer(owner, gateway_id, new_owner)
    except StreembitError as exc:
        return report(args, exc)

    async def action(conn: PeerConnection) -> dict[str, Any]:
        return await conn.transfer(statement)

    def human(r: dict[str, Any]) -> str:
        return f"gateway {r.get('gateway')} now belongs to {r.get('owner')}"

    if gateway is None:  # find the gateway's key and addresses in the DHT
        from gateway.peer.find import ephemeral_dht, find_contact

        boot = _bootstrap(args)

        async def lookup() -> tuple[PublicIdentity, tuple[str, ...]]:
            async with ephemeral_dht(boot, host_arg(args)) as dht:
                contact = await find_contact(dht, gateway_id)
            return contact.identity, contact.addrs

        gateway, addrs = asyncio.run(lookup())
    return _run(args, owner, gateway, addrs, action, human)


# --------------------------------------------------------------------------- parser
def add_commands(sub: Any) -> None:
    """Register owner-qr, claim and transfer on the `streembit-peer` subparsers SUB."""

    def cmd(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        add_json(sp)
        sp.add_argument("--key", default=argparse.SUPPRESS, help="your key file")
        sp.add_argument(
            "--bootstrap",
            action="append",
            default=argparse.SUPPRESS,
            metavar="HOST:PORT",
            help="a DHT node (repeatable)",
        )
        sp.set_defaults(func=func)
        return sp

    sp = cmd(
        "owner-qr",
        "show the owner QR (your public key) for a gateway to scan; --bootstrap adds DHT hints",
        cmd_owner_qr,
    )
    sp.add_argument("--png", help="also write the QR to this PNG file")
    sp.add_argument("--svg", help="also write the QR to this SVG file")

    sp = cmd("claim", "claim an unclaimed gateway with its QR (you become the owner)", cmd_claim)
    sp.add_argument("payload", nargs="?", metavar="PAYLOAD", help="the gateway QR's text")
    sp.add_argument("--qr", help="a photo or screenshot of the gateway's QR instead")

    sp = cmd("transfer", "hand a gateway you own to another key (signed by your key)", cmd_transfer)
    sp.add_argument("--to", required=True, help="the new owner's public key file")
    sp.add_argument("--via", help="the gateway QR's text (its key and addresses; no DHT needed)")
    sp.add_argument("gateway_id", metavar="GW_ID", type=id_arg)


__all__ = ["add_commands"]
