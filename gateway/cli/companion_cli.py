"""`streembit-gateway companion broker|flash|pair`: the ESP32 MicroPython companions.

    companion broker --state DIR --out FOLDER [--host H]... [--port 8883]
        write the mosquitto configuration (TLS listener with the gateway's broker certificate,
        per-device accounts, topic ACL) into FOLDER
    companion flash --port PORT [--firmware FILE|NAME] [--erase]
        esptool for the MicroPython firmware image, mpremote for umqtt.simple and the companion;
        without --firmware the board must already run MicroPython (checked first: a blank board
        needs --firmware)
    companion pair --port PORT --state DIR --device NAME --channel NAME=KIND:PIN ...
        make (or reuse) the board's pairing, copy its companion.json, add it to the broker

Every one takes --dry-run: print what it would do (secrets shown as <secret>) and change nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.cli.common import EXIT_OK, add_json, note, out
from gateway.companion import broker as broker_mod
from gateway.companion import flash
from gateway.errors import ProvisioningError, StreembitError
from gateway.state import StateDir

CHANNEL_KINDS = ("relay", "input", "ds18b20", "dht11", "dht22", "adc")
WIFI_PASSWORD_ENV = "STREEMBIT_WIFI_PASSWORD"  # noqa: S105 - a variable name


def _progress(args: argparse.Namespace) -> Any:
    def say(line: str) -> None:
        print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)

    return say


def parse_channel(text: str) -> tuple[str, dict[str, Any]]:
    """NAME=KIND:PIN[:key=value,...] -> (name, spec), e.g. relay=relay:5:active_low=true."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not name or len(parts) < 2 or parts[0] not in CHANNEL_KINDS:
        raise ProvisioningError(
            f"--channel {text!r}: expected NAME=KIND:PIN[:key=value,...] with KIND one of "
            f"{', '.join(CHANNEL_KINDS)}",
            code="bad_channel",
        )
    if not parts[1].isdigit() or int(parts[1]) > 48:
        raise ProvisioningError(
            f"--channel {text!r}: PIN must be a GPIO number", code="bad_channel"
        )
    spec: dict[str, Any] = {"kind": parts[0], "pin": int(parts[1])}
    for opt in ":".join(parts[2:]).split(","):
        if not opt:
            continue
        key, sep, val = opt.partition("=")
        if not sep or not key:
            raise ProvisioningError(f"--channel {text!r}: bad option {opt!r}", code="bad_channel")
        spec[key] = {"true": True, "false": False}.get(val.lower(), val)
        if isinstance(spec[key], str):
            try:
                spec[key] = float(val) if "." in val else int(val)
            except ValueError:
                pass
    return name, spec


def find_firmware(name: str, folder: Path | None) -> Path:
    """A firmware image: the file NAME, or the one .bin in FOLDER whose name contains NAME."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if folder is None or not folder.is_dir():
        raise ProvisioningError(
            f"firmware {name!r}: no such file (name a .bin file, or a folder with --firmware-dir)",
            code="no_firmware",
        )
    hits = sorted(p for p in folder.glob("*.bin") if name in p.name)
    if len(hits) != 1:
        found = ", ".join(p.name for p in hits) or "none"
        raise ProvisioningError(
            f"firmware {name!r} in {folder}: {len(hits)} matches ({found}); name one image",
            code="no_firmware",
        )
    return hits[0]


# -- broker


def cmd_broker(args: argparse.Namespace) -> int:
    hosts = args.host or ["127.0.0.1", "localhost"]
    if args.dry_run:
        plan = {
            "dry_run": True,
            "folder": str(args.out),
            "files": [
                broker_mod.CONF_FILE,
                broker_mod.PASSWD_FILE,
                broker_mod.ACL_FILE,
                broker_mod.CERT_FILE,
                broker_mod.KEY_FILE,
            ],
            "listener": f"{args.bind}:{args.port} (TLS)",
            "certificate_hosts": hosts,
            "readers": args.reader,
        }
        out(
            args,
            plan,
            lambda: "\n".join(
                [
                    f"would write into {args.out}: {', '.join(plan['files'])}",
                    f"  TLS listener {args.bind}:{args.port}, certificate for {', '.join(hosts)} "
                    "(kept if it exists)",
                    "  accounts: the gateway, every paired board"
                    + (f", readers {', '.join(args.reader)}" if args.reader else ""),
                    "  and the gateway's broker account into "
                    f"{args.state}/{broker_mod.CREDENTIALS_FILE}",
                ]
            ),
        )
        return EXIT_OK
    files = broker_mod.write_broker_config(
        StateDir(args.state),
        args.out,
        hosts=hosts,
        port=args.port,
        bind=args.bind,
        plain_port=args.plain_port,
        readers=args.reader,
        extra=args.extra,
        owner=args.owner,
    )
    data = {
        "conf": str(files.conf),
        "users": list(files.users),
        "cert": str(files.cert),
        "cert_created": files.cert_created,
    }
    out(
        args,
        data,
        lambda: (
            f"wrote {files.conf}, {files.passwd.name}, {files.acl.name} "
            f"({len(files.users)} accounts)"
            f"\ncertificate {files.cert} ({'new' if files.cert_created else 'kept'})"
            f"\nrun: mosquitto -c {files.conf}   (or include it, then reload mosquitto)"
        ),
    )
    return EXIT_OK


# -- flash


def _port(args: argparse.Namespace) -> str:
    """--port; a dry run without one shows the steps with PORT in its place."""
    if args.port:
        return str(args.port)
    if args.dry_run:
        return "PORT"
    raise StreembitError(
        "--port: name the board's serial port, e.g. /dev/ttyUSB0 (only --dry-run goes without)",
        code="usage",
    )


def cmd_flash(args: argparse.Namespace) -> int:
    port = _port(args)
    firmware = find_firmware(args.firmware, args.firmware_dir) if args.firmware else None
    if not args.dry_run:  # the tools are there (the `flash` extra), before anything is said
        flash.check_tools(("mpremote", "esptool") if firmware or args.erase else ("mpremote",))
    if firmware is None:
        note(
            args,
            "no --firmware: the board must already run MicroPython (the first step checks); "
            "a blank board needs --firmware FILE",
        )
    steps = flash.flash_plan(
        port,
        firmware=firmware,
        chip=args.chip,
        baud=args.baud,
        erase=args.erase,
        offset=args.offset,
        install_umqtt=not args.no_umqtt,
    )
    if firmware is not None:  # refuse a file that is not an ESP firmware image, offline
        steps.insert(
            0,
            flash.Step(
                f"check the firmware image {firmware.name}",
                flash.esptool("--chip", args.chip, "image-info", str(firmware)),
            ),
        )
    return _run_or_show(args, steps, {})


def _run_or_show(args: argparse.Namespace, steps: list[flash.Step], extra: dict[str, Any]) -> int:
    if args.dry_run:
        data = {
            "dry_run": True,
            **extra,
            "steps": [{"what": s.what, "argv": list(s.argv)} for s in steps],
        }
        lines = [f"would run {len(steps)} steps:"]
        lines += [f"  {i}. {s.what}\n     {s.shown()}" for i, s in enumerate(steps, 1)]
        out(args, data, "\n".join(lines))
        return EXIT_OK
    flash.run_steps(steps, _progress(args))
    if getattr(args, "json", False):
        print(json.dumps({"ok": True, **extra, "steps": len(steps)}), flush=True)
    return EXIT_OK


# -- pair


def _wifi_password(args: argparse.Namespace) -> str | None:
    if args.wifi_password_file:
        return Path(args.wifi_password_file).read_text().strip()
    return os.environ.get(WIFI_PASSWORD_ENV)


def cmd_pair(args: argparse.Namespace) -> int:
    from gateway.provisioning import pairing

    channels = dict(parse_channel(c) for c in args.channel)
    if not channels:
        raise ProvisioningError("name the board's channels with --channel", code="bad_channel")
    state = StateDir(args.state)
    if not args.dry_run:
        flash.check_tools(("mpremote",))  # before the pairing is made
    creds = broker_mod.load_credentials(state)
    link = "serial" if args.serial else "mqtt"
    host, port = args.broker_host, args.broker_port
    ca_pem = None
    if link == "mqtt" and not args.no_tls:
        if creds is None:
            raise ProvisioningError(
                "no broker certificate yet: run `streembit-gateway companion broker` first "
                "(or --no-tls for a plain broker)",
                code="no_broker",
            )
        ca_pem = Path(creds.ca_file).read_text()
    if args.dry_run:
        rec = {
            "device": args.device,
            "gateway": state.load_identity().id,
            "hmac_key": "",
            "broker": {"host": host, "port": port},
            "username": f"companion-{args.device}",
            "password": "",
        }
    else:
        rec = pairing.companion_pairing(state, args.device, host, port)
    cfg = flash.board_config(
        rec,
        channels=channels,
        ca_pem=ca_pem,
        wifi_ssid=args.wifi_ssid,
        wifi_password=_wifi_password(args),
        link=link,
    )
    snippet = _thing_snippet(args.device, channels, link, host, port, args.serial)
    extra = {"device": args.device, "config": flash.redacted(cfg), "gateway_config": snippet}
    with tempfile.TemporaryDirectory(prefix="streembit-pair-") as tmp:
        cfg_file = Path(tmp) / "companion.json"
        steps = flash.pair_plan(_port(args), cfg_file)
        if args.dry_run:
            if not getattr(args, "json", False):
                print("would write the board's companion.json:")
                print(json.dumps(flash.redacted(cfg), indent=1))
            return _run_or_show(args, steps, extra)
        fd = os.open(cfg_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(cfg, fh, separators=(",", ":"))
        _progress(args)(f"paired {args.device} with gateway {rec['gateway']}")
        rc = _run_or_show(args, steps, extra)
    files = broker_mod.rewrite_broker_config(state)
    say = _progress(args)
    if files is not None:
        say(f"broker accounts updated in {files.folder}: reload mosquitto to admit {args.device}")
    say("gateway config for this board (add to your config file):\n" + snippet)
    return rc


def _thing_snippet(
    device: str,
    channels: dict[str, dict[str, Any]],
    link: str,
    host: str,
    port: int,
    serial: str | None,
) -> str:
    where = f'serial = "{serial}"' if link == "serial" else f'broker = "mqtts://{host}:{port}"'
    out_lines: list[str] = []
    for name, spec in channels.items():
        kind = spec["kind"]
        if kind == "relay":
            typ, role = "switch", "output"
        elif kind == "input":
            typ, role = "sensor", "contact"
        elif kind in ("dht11", "dht22") and spec.get("value") == "humidity":
            typ, role = "sensor", "humidity"
        else:
            typ, role = "sensor", "temperature"
        out_lines += [
            "[[things]]",
            f'name = "{device}-{name}"'.replace("_", "-"),
            f'type = "{typ}"',
            'driver = "companion"',
            "[things.driver_settings]",
            f'device = "{device}"',
            where,
            f'channels = {{ {role} = "{name}" }}',
        ]
        if typ == "sensor":
            out_lines += ["[things.safety]", f'kinds = ["{role}"]']
        out_lines.append("")
    return "\n".join(out_lines)


# -- registration


def add_commands(sub: Any) -> None:
    """Add `companion broker|flash|pair` to the `streembit-gateway` subparsers SUB."""
    what = "ESP32 MicroPython companions: broker, flash, pair"
    top = sub.add_parser("companion", help=what, description=what)
    csub = top.add_subparsers(metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = csub.add_parser(name, help=help, description=help)
        add_json(sp)
        sp.add_argument("--dry-run", action="store_true", help="print what would be done")
        return sp

    sp = action("broker", "write the mosquitto configuration for the companions")
    sp.add_argument("--state", required=True, type=Path)
    sp.add_argument("--out", required=True, type=Path, help="folder for the broker's files")
    sp.add_argument(
        "--host",
        action="append",
        default=[],
        help="broker host name or address the boards use (repeatable)",
    )
    sp.add_argument("--port", type=int, default=8883, help="TLS listener port (8883)")
    sp.add_argument("--bind", default="0.0.0.0", help="TLS listener address (0.0.0.0)")  # noqa: S104
    sp.add_argument("--plain-port", type=int, help="also a plain listener on 127.0.0.1:N")
    sp.add_argument(
        "--reader",
        action="append",
        default=[],
        help="a read-only account (WoT consumers, Home Assistant): reader-NAME",
    )
    sp.add_argument("--owner", help="give the secret files to this user (e.g. mosquitto)")
    sp.add_argument("--extra", action="append", default=[], help=argparse.SUPPRESS)
    sp.set_defaults(func=cmd_broker)

    sp = action("flash", "flash MicroPython and the companion onto a board")
    sp.add_argument("--port", help="the board's serial port, e.g. /dev/ttyUSB0 (not for --dry-run)")
    sp.add_argument("--firmware", help="MicroPython image: a .bin file or a name in --firmware-dir")
    sp.add_argument("--firmware-dir", type=Path, help="folder of downloaded firmware images")
    sp.add_argument("--chip", default="esp32")
    sp.add_argument("--baud", type=int, default=flash.DEFAULT_BAUD)
    sp.add_argument(
        "--offset",
        default=flash.FIRMWARE_OFFSET_ESP32,
        help="firmware offset (ESP32 0x1000; ESP32-S3/C3 0x0)",
    )
    sp.add_argument("--erase", action="store_true", help="erase the whole flash first")
    sp.add_argument("--no-umqtt", action="store_true", help="umqtt.simple is already there")
    sp.set_defaults(func=cmd_flash)

    sp = action("pair", "write a board's per-device config (keys, broker, channels)")
    sp.add_argument("--port", help="the board's serial port (not for --dry-run)")
    sp.add_argument("--state", required=True, type=Path)
    sp.add_argument("--device", required=True, help="the board's name: a-z, 0-9, '-'")
    sp.add_argument(
        "--channel",
        action="append",
        default=[],
        help="NAME=KIND:PIN[:key=value,...], KIND: " + ", ".join(CHANNEL_KINDS),
    )
    sp.add_argument("--broker-host", default="127.0.0.1", help="the broker as the board sees it")
    sp.add_argument("--broker-port", type=int, default=8883)
    sp.add_argument("--no-tls", action="store_true", help="plain MQTT (not recommended)")
    sp.add_argument(
        "--serial",
        metavar="GATEWAY_PORT",
        help="link over USB serial instead of MQTT (the port on the gateway)",
    )
    sp.add_argument("--wifi-ssid")
    sp.add_argument(
        "--wifi-password-file",
        type=Path,
        help=f"file with the Wi-Fi password (or ${WIFI_PASSWORD_ENV})",
    )
    sp.set_defaults(func=cmd_pair)
