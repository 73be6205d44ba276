"""Checks of the files: the config, the state folder, the keys, owner and ACL, the audit log."""

from __future__ import annotations

import contextlib
import os
import pwd
import sqlite3
import stat
from pathlib import Path
from typing import Final

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, StreembitError
from gateway.ops.doctor.base import CONNECT_TIMEOUT_S, Check, _fail, _ok, _warn
from gateway.state import KEY_FILE, STATE_VERSION, StateDir

LOW_SPACE_BYTES: Final = 50 * 1024 * 1024  # warn below this much free space for the state


# --------------------------------------------------------------------------- config
def _config_problem(exc: StreembitError) -> str:
    """A config error as a person reads it: `FILE: not an existing config file` rather than
    `FILE: (file): an existing config file` for the problems of the file itself."""
    if isinstance(exc, ConfigError) and exc.key == "(file)":
        return f"{exc.file}: not {exc.expected}"
    return str(exc)


def check_config(path: Path) -> tuple[list[Check], GatewayConfig | None]:
    checks: list[Check] = []
    try:
        cfg = load_config(path)
    except StreembitError as exc:
        return [
            _fail(
                "config",
                _config_problem(exc),
                f"edit {path}, then: streembit-gateway check-config {path}",
            )
        ], None
    checks.append(_ok("config", f"{path}: {len(cfg.things)} things"))
    try:
        st = os.stat(path)
    except OSError:
        return checks, cfg
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode) and mode & 0o002:
        checks.append(
            _fail(
                "config permissions",
                f"{path} is writable by everyone (mode {mode:o})",
                f"chmod 640 {path}",
            )
        )
    return checks, cfg


# --------------------------------------------------------------------------- state
def check_state(state_dir: Path) -> list[Check]:
    state = StateDir(state_dir)
    path = state.path
    if not path.is_dir():
        return [
            _fail(
                "state folder",
                f"{path} does not exist",
                f"sudo install -d -m 700 -o streembit -g streembit {path}",
            )
        ]
    checks: list[Check] = []
    try:
        state.check_permissions()
        checks.append(_ok("state permissions", f"{path}: folder and files private"))
    except StreembitError as exc:
        fix = str(exc).split("run: ", 1)[1] if "run: " in str(exc) else ""
        checks.append(_fail("state permissions", str(exc), fix))
    owner = os.stat(path).st_uid
    strangers = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid != owner:
                    strangers.append(entry.name)
    if strangers:
        try:
            owner_name = pwd.getpwuid(owner).pw_name
        except KeyError:
            owner_name = str(owner)
        checks.append(
            _fail(
                "state ownership",
                f"{', '.join(sorted(strangers))} not owned by the folder's owner ({owner_name}): "
                "the service cannot replace them",
                f"sudo chown -R {owner_name}: {path}",
            )
        )
    try:
        version = state.version()
    except StreembitError as exc:
        checks.append(_fail("state version", str(exc)))
    else:
        if version is None:
            checks.append(
                _warn(
                    "state version",
                    f"{path} is empty (no VERSION yet)",
                    f"streembit-gateway init --state {path}",
                )
            )
        elif version > STATE_VERSION:
            checks.append(
                _fail(
                    "state version",
                    f"version {version} is newer than this gateway's {STATE_VERSION}",
                    "install the newer gateway again (state is never downgraded)",
                )
            )
        elif version < STATE_VERSION:
            steps = "; ".join(m.summary for m in state.pending_migrations())
            checks.append(
                _warn(
                    "state version",
                    f"version {version}, migrated to {STATE_VERSION} at the next start ({steps})",
                    f"streembit-gateway migrate --state {path}",
                )
            )
        else:
            checks.append(_ok("state version", f"version {version} (current)"))
    try:
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if free is not None:
        from gateway.audit.log import MIN_FREE_BYTES

        mib = free / 1024 / 1024
        if free < MIN_FREE_BYTES:
            checks.append(
                _fail(
                    "disk space",
                    f"{mib:.1f} MiB free for {path}: the gateway "
                    "refuses every request (its audit log cannot be written)",
                    "free space on that file system (journalctl --vacuum-size, "
                    "apt-get clean, old files)",
                )
            )
        elif free < LOW_SPACE_BYTES:
            checks.append(
                _warn(
                    "disk space",
                    f"only {mib:.0f} MiB free for {path}",
                    "free space before the audit log fills it",
                )
            )
        else:
            checks.append(_ok("disk space", f"{mib:.0f} MiB free"))
    return checks


def check_keys(state_dir: Path) -> list[Check]:
    from gateway.acl import ACL_FILE, AclStore
    from gateway.identity import load_keypair

    path = Path(state_dir).absolute()
    key = path / KEY_FILE
    if not key.exists():
        return [
            _fail(
                "gateway key",
                f"{key} missing",
                f"sudo -u streembit streembit-gateway init --state {path}",
            )
        ]
    try:
        kp = load_keypair(key)
    except StreembitError as exc:
        fix = str(exc).split("run: ", 1)[1] if "run: " in str(exc) else ""
        return [_fail("gateway key", str(exc), fix)]
    checks = [_ok("gateway key", f"{key}: gateway id {kp.id}")]
    try:
        store = AclStore(path, kp.id)
    except StreembitError as exc:
        return [*checks, _fail("owner", str(exc))]
    if store.owner is None:
        checks.append(
            _warn(
                "owner",
                "not provisioned: nobody can use the gateway yet",
                f"streembit-gateway qr --state {path} (then claim it), or "
                f"streembit-gateway provision --state {path} --owner-key OWNER.pub",
            )
        )
        return checks
    checks.append(_ok("owner", f"owner {store.owner.id}"))
    acl_file = path / ACL_FILE
    if store.current is not None:
        checks.append(
            _ok(
                "ACL",
                f"version {store.current.version}, "
                f"{len(store.current.grants)} grants, signature valid",
            )
        )
    elif acl_file.exists():
        checks.append(
            _fail(
                "ACL",
                f"{acl_file} is refused (bad signature, another gateway's, "
                "or malformed): only the owner has access",
                "install a fresh ACL signed by the owner: streembit-gateway acl "
                "apply / streembit-peer acl push",
            )
        )
    else:
        checks.append(_ok("ACL", "none installed: only the owner has access"))
    return checks


def check_audit(state_dir: Path) -> list[Check]:
    from gateway.audit import AUDIT_FILE

    db = Path(state_dir) / AUDIT_FILE
    if not db.exists():
        return [_ok("audit log", f"{db} not created yet (made at the first start)")]
    try:
        uri = f"file:{db}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=CONNECT_TIMEOUT_S)) as conn:
            result = conn.execute("PRAGMA quick_check").fetchone()
            count = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    except sqlite3.Error as exc:
        return [
            _fail(
                "audit log",
                f"{db}: {exc}",
                "stop the gateway, move the file aside (keep it: it is evidence), start again",
            )
        ]
    if not result or result[0] != "ok":
        return [
            _fail(
                "audit log",
                f"{db}: integrity check failed: {result}",
                "stop the gateway, move the file aside, start again",
            )
        ]
    return [_ok("audit log", f"{count} records, integrity ok")]
