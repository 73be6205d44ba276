"""Checks of device access: GPIO and serial ports for the Things that need them."""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.ops.doctor.base import Check, _fail, _ok, _user


# --------------------------------------------------------------------------- devices
def _uses(cfg: GatewayConfig, driver: str) -> list[str]:
    return [t.name for t in cfg.things if t.driver == driver]


def check_gpio(cfg: GatewayConfig, dev: Path = Path("/dev")) -> list[Check]:
    users = [
        t.name
        for t in cfg.things
        if t.driver == "gpio" and str(t.driver_settings.get("pin_factory", "")) != "mock"
    ]
    chips = sorted(glob.glob(str(dev / "gpiochip*")))
    if not users:
        return [_ok("GPIO", "no Thing uses GPIO")]
    if not chips:
        return [
            _fail(
                "GPIO",
                f"{', '.join(users)} use GPIO but there is no {dev}/gpiochip*",
                "run on a Raspberry Pi (or a board with a GPIO character device)",
            )
        ]
    denied = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if denied:
        return [
            _fail(
                "GPIO",
                f"{_user()} cannot open {', '.join(denied)}",
                f"sudo usermod -aG gpio {_user()} (and restart the service); Debian "
                "without the gpio group: deploy/install.sh adds a udev rule for it",
            )
        ]
    return [
        _ok(
            "GPIO",
            f"{', '.join(Path(c).name for c in chips)} readable and writable "
            f"(for {', '.join(users)})",
        )
    ]


def _serial_ports(cfg: GatewayConfig) -> dict[str, list[str]]:
    ports: dict[str, list[str]] = {}
    for t in cfg.things:
        port = None
        if t.driver == "serial":
            port = t.driver_settings.get("port")
        elif t.driver == "companion":
            port = t.driver_settings.get("serial")
        if isinstance(port, str) and port:
            ports.setdefault(port, []).append(t.name)
    return ports


def check_serial(cfg: GatewayConfig) -> list[Check]:
    ports = _serial_ports(cfg)
    if not ports:
        return [_ok("serial", "no Thing uses a serial port")]
    checks: list[Check] = []
    for port, things in sorted(ports.items()):
        p = Path(port)
        who = ", ".join(things)
        if not p.exists():
            checks.append(
                _fail(
                    "serial",
                    f"{port} (for {who}) is missing",
                    "plug the adapter in; ls -l /dev/serial/by-id/ shows the stable "
                    "name to put in the config",
                )
            )
        elif not stat.S_ISCHR(p.stat().st_mode):
            checks.append(_fail("serial", f"{port} (for {who}) is not a character device"))
        elif not os.access(p, os.R_OK | os.W_OK):
            checks.append(
                _fail(
                    "serial",
                    f"{_user()} cannot open {port} (for {who})",
                    f"sudo usermod -aG dialout {_user()} (and restart the service)",
                )
            )
        else:
            checks.append(_ok("serial", f"{port} readable and writable (for {who})"))
    return checks
