"""Checks of the running gateway: the systemd service, its runinfo and its HTTP metrics."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from gateway.ops import runinfo
from gateway.ops.doctor.base import Check, _fail, _ok, _warn
from gateway.state import StateDir

SERVICE: Final = "streembit-gateway"
#: where a systemd unit of the gateway is installed (deploy/install.sh: the first)
UNIT_DIRS: Final = (
    Path("/etc/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
HTTP_TIMEOUT_S: Final = 3.0


# --------------------------------------------------------------------------- running
def service_installed(unit_dirs: Iterable[Path] | None = None) -> bool:
    """True when a systemd unit of the gateway is installed (deploy/install.sh), in one of
    UNIT_DIRS (the module's folders unless others are given)."""
    dirs = UNIT_DIRS if unit_dirs is None else unit_dirs
    return any((Path(d) / f"{SERVICE}.service").exists() for d in dirs)


def _how_to_start(
    state_dir: Path, config_path: Path | None, unit_dirs: Iterable[Path] | None
) -> str:
    if service_installed(unit_dirs):
        return f"sudo systemctl start {SERVICE} (logs: journalctl -u {SERVICE})"
    config = str(config_path) if config_path is not None else "FILE"
    return (
        f"no {SERVICE} service is installed: start it yourself, `deploy/dev.sh demo --state "
        f"{state_dir}` (the demo) or `streembit-gateway run --config {config} --state {state_dir}`"
    )


def check_running(
    state_dir: Path, config_path: Path | None, unit_dirs: Iterable[Path] | None = None
) -> tuple[list[Check], dict[str, Any]]:
    state = StateDir(state_dir)
    run = runinfo.read(state.path) or {}
    if not state.is_locked_elsewhere():
        return [
            _warn(
                "gateway",
                "not running on this state folder",
                _how_to_start(state_dir, config_path, unit_dirs),
            )
        ], {}
    checks = [_ok("gateway", f"running (pid {run.get('pid', '?')}) at {run.get('http', '?')}")]
    drift = runinfo.drift(run, config_path)
    if drift is not None:
        as_service = run.get("service")  # what the running gateway said of itself
        if not isinstance(as_service, bool):
            as_service = service_installed(unit_dirs)  # written by an older version
        restart = (
            f"sudo systemctl restart {SERVICE}"
            if as_service
            else "stop the gateway (Ctrl-C) and start it again"
        )
        checks.append(_warn("config changed", drift.message(), restart))
    url = str(run.get("http", ""))
    if url:
        try:
            with urllib.request.urlopen(  # noqa: S310 (our own http:// URL)
                f"{url}/.well-known/wot", timeout=HTTP_TIMEOUT_S
            ) as resp:
                checks.append(_ok("HTTP", f"{url} answers ({resp.status})"))
        except OSError as exc:
            checks.append(
                _fail("HTTP", f"{url} does not answer: {exc}", f"journalctl -u {SERVICE} -n 50")
            )
    return checks, run


def _metric(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310
            text = resp.read(1024 * 1024).decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            with contextlib.suppress(ValueError):
                return float(line.split()[1])
    return None
