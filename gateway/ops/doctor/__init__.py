"""The checks of `streembit-gateway doctor`: what is wrong with this installation, and the fix.

Each check returns `Check(name, status, detail, fix)`, status "ok", "warn" or "fail". Nothing
here changes anything: the fixes are printed for a person to run. Checks: the config file, the
state folder (permissions, owner, schema version, free space), the keys, owner and ACL, the
audit log, whether a gateway runs on the folder (and whether its config changed since), GPIO and
serial access for the Things that need them, the MQTT broker, the DHT, and the clock.

Modules: `base` (Check), `files`, `service`, `devices`, `network`; the clock check and the
order of all checks are here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from gateway.ops import runinfo
from gateway.ops.doctor.base import Check, Status, _fail, _ok
from gateway.ops.doctor.devices import check_gpio, check_serial
from gateway.ops.doctor.files import check_audit, check_config, check_keys, check_state
from gateway.ops.doctor.network import LOGIN_REFUSED, check_broker, check_dht, mqtt_probe
from gateway.ops.doctor.service import check_running, service_installed

__all__ = [
    "DEFAULT_CONFIG",
    "LOGIN_REFUSED",
    "Check",
    "Status",
    "check_audit",
    "check_broker",
    "check_clock",
    "check_config",
    "check_dht",
    "check_gpio",
    "check_keys",
    "check_running",
    "check_serial",
    "check_state",
    "mqtt_probe",
    "run_checks",
    "service_installed",
]

DEFAULT_CONFIG: Final = Path("/etc/streembit-gateway/gateway.toml")
EARLIEST_SANE_TIME: Final = 1_735_689_600  # 2025-01-01: a Pi without RTC before NTP sync


# --------------------------------------------------------------------------- clock
def check_clock(now: Callable[[], float] = time.time) -> list[Check]:
    t = now()
    if t < EARLIEST_SANE_TIME:
        return [
            _fail(
                "clock",
                f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(t))}: "
                "tokens, ACL validity and schedules need the right time",
                "enable time sync: sudo timedatectl set-ntp true (a Pi has no RTC)",
            )
        ]
    return [_ok("clock", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t)))]


# --------------------------------------------------------------------------- all
def _no_default_config(state_dir: Path | None) -> tuple[list[Check], Path | None]:
    """No --config and nothing at DEFAULT_CONFIG: a dev demo (`streembit-gateway demo --state
    DIR`) runs without a file. Check the file a gateway running on DIR loaded, if any; else say
    there is none (not a failure when a state folder was given)."""
    if state_dir is None:
        return [
            _fail(
                "config",
                f"no config file at {DEFAULT_CONFIG}",
                "give --config FILE, or --state DIR for a gateway run without one (the demo)",
            )
        ], None
    loaded = runinfo.config_file(str((runinfo.read(state_dir) or {}).get("config") or ""))
    if loaded is not None:
        return [], loaded
    return [
        _ok("config", f"none ({DEFAULT_CONFIG} does not exist; the demo runs without one)")
    ], None


def run_checks(config_path: Path | None, state_override: Path | None = None) -> list[Check]:
    """Every check. CONFIG_PATH None: DEFAULT_CONFIG if it exists (an installed gateway)."""
    if config_path is None:
        config_path = DEFAULT_CONFIG
        if not DEFAULT_CONFIG.exists():
            found, loaded = _no_default_config(state_override)
            if loaded is None:
                return _checks_without_config(found, state_override)
            config_path = loaded
    checks, cfg = check_config(config_path)
    state_dir = state_override or (cfg.state_dir if cfg else None)
    if state_dir is None:
        return checks
    checks += check_state(state_dir)
    if Path(state_dir).is_dir():
        checks += check_keys(state_dir)
        checks += check_audit(state_dir)
    running, run = check_running(state_dir, config_path) if Path(state_dir).is_dir() else ([], {})
    checks += running
    if cfg is not None:
        checks += check_gpio(cfg)
        checks += check_serial(cfg)
        checks += check_dht(cfg, run)
    checks += check_broker(cfg, state_dir)
    checks += check_clock()
    return checks


def _checks_without_config(checks: list[Check], state_dir: Path | None) -> list[Check]:
    """The checks that need no config file: the state folder, keys, audit log, the running
    gateway and its HTTP, the clock."""
    if state_dir is None:
        return checks
    checks += check_state(state_dir)
    if not Path(state_dir).is_dir():
        return checks
    checks += check_keys(state_dir)
    checks += check_audit(state_dir)
    running, _run = check_running(state_dir, None)
    checks += running
    checks += check_clock()
    return checks
