"""deploy/install.sh and the files it installs: shellcheck, `systemd-analyze verify` of the
unit, the udev rules, a dry run that changes nothing, and a real install into a throwaway root
folder (`--root`), then an upgrade in place (config, keys, ACL and audit log kept; the state
folder migrated forward), then uninstall and purge."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.acl import Grant, new_acl, sign_acl, with_grant
from gateway.audit import AuditLog, AuditRecord
from gateway.identity import generate_keypair, write_keypair
from gateway.state import STATE_VERSION

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "install.sh"
UNIT = DEPLOY / "streembit-gateway.service"
INSTALL_TIMEOUT_S = 600  # pip resolves and installs every dependency on a fresh root
TOOL_TIMEOUT_S = 60


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: apt-get install {package} (deploy/dev.sh test does)")
    return path


def run(*args: str | Path, ok: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", TOOL_TIMEOUT_S),
        **kw,  # type: ignore[call-overload]
    )
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def verify_unit(root: Path, unit: str = "/etc/systemd/system/streembit-gateway.service") -> str:
    """systemd-analyze verify inside ROOT (the systemd units it depends on copied in)."""
    sysunits = root / "usr/lib/systemd/system"
    if not sysunits.exists():
        shutil.copytree("/usr/lib/systemd/system", sysunits, symlinks=True)
    proc = run(
        need("systemd-analyze", "systemd"), "verify", "--man=no", f"--root={root}", unit, ok=False
    )
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else " [failed]")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ids(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2]), int(f[3])
    raise AssertionError(f"no user {name}")


def group_members(root: Path) -> dict[str, list[str]]:
    out = {}
    for line in (root / "etc/group").read_text().splitlines():
        f = line.split(":")
        out[f[0]] = [m for m in f[3].split(",") if m]
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- static checks
def test_scripts_pass_shellcheck() -> None:
    scripts = sorted(DEPLOY.glob("*.sh"))
    assert INSTALL in scripts
    run(need("shellcheck", "shellcheck"), "--severity=style", *scripts)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    bin_dir = tmp_path / "opt/streembit-gateway/venv/bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "streembit-gateway"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system/streembit-gateway.service")
    assert verify_unit(tmp_path) == ""  # no error, no warning
    # the check does catch mistakes: a bad value is reported
    bad = tmp_path / "etc/systemd/system/streembit-gateway.service"
    bad.write_text(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
    assert "Failed to parse" in verify_unit(tmp_path)


def test_unit_settings() -> None:
    lines = [x.strip() for x in UNIT.read_text().splitlines() if x.strip() and x[0] != "#"]
    for wanted in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "User=streembit",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/streembit-gateway",
        "StateDirectory=streembit-gateway",
        "StateDirectoryMode=0700",
        "CapabilityBoundingSet=",
        "DeviceAllow=char-gpiochip rw",
        "DeviceAllow=char-ttyUSB rw",
        "WantedBy=multi-user.target",
    ):
        assert wanted in lines, wanted
    exec_start = next(x for x in lines if x.startswith("ExecStart="))
    assert exec_start.endswith("run --config /etc/streembit-gateway/gateway.toml")


def test_udev_rules_are_well_formed() -> None:
    rules = (DEPLOY / "70-streembit-gateway.rules").read_text()
    token = re.compile(r'^(?P<key>[A-Z_]+)(\{[^}]+\})?(?P<op>==|!=|\+=|:=|=)"[^"]*"$')
    match_ops, assign_ops = {"==", "!="}, {"=", "+=", ":="}
    n = 0
    for line in rules.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        n += 1
        parts = [p.strip() for p in line.split(", ")]
        ops = []
        for p in parts:
            m = token.match(p)
            assert m, f"bad token {p!r} in: {line}"
            ops.append(m.group("op"))
        assert any(o in match_ops for o in ops) and any(o in assign_ops for o in ops), line
    assert n >= 6
    assert 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in rules
    assert 'ATTRS{idVendor}=="10c4", GROUP="dialout", MODE="0660"' in rules


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = run(INSTALL, "--dry-run", "--root", root).stdout
    assert list(root.iterdir()) == []
    for action in (
        "+ groupadd --system --root",
        "+ useradd --system --root",
        "-m venv",
        "-m pip install",
        "streembit-gateway.service (mode 0644, root:root)",
        "70-streembit-gateway.rules",
        "conf.d/streembit.conf",
        "+ write " + str(root) + "/etc/streembit-gateway/gateway.toml (mode 0640, root:streembit",
        "init --state " + str(root) + "/var/lib/streembit-gateway",
        "migrate --state",
        "install -d -m 0700 -o streembit -g streembit " + str(root) + "/var/lib/streembit-gateway",
    ):
        assert action in out, action
    # on the real system too: nothing installed, the service actions are listed
    assert not Path("/opt/streembit-gateway").exists()
    out = run(INSTALL, "--dry-run", "--no-apt").stdout
    assert "+ systemctl enable streembit-gateway.service" in out
    assert "+ timeout 90 systemctl restart streembit-gateway.service" in out
    assert not Path("/opt/streembit-gateway").exists()
    out = run(INSTALL, "--dry-run", "--uninstall", "--purge", "--yes", "--root", root).stdout
    assert "kept" not in out and list(root.iterdir()) == []
    bad = run(INSTALL, "--purge", "--root", root, ok=False)
    assert bad.returncode != 0 and "--purge goes with --uninstall" in bad.stderr


def test_dry_run_with_optional_parts(tmp_path: Path) -> None:
    out = run(INSTALL, "--dry-run", "--root", tmp_path, "--with", "qr-images",
              "--with=flash,qr-images").stdout  # fmt: skip
    assert "with the optional parts: qr-images flash" in out
    pip = next(line for line in out.splitlines() if "-m pip install" in line and "--upgrade pip"
               not in line)  # fmt: skip
    assert pip.endswith(f"--upgrade {REPO}\\[qr-images\\,flash\\]"), pip  # printf %q quoting
    assert list(tmp_path.iterdir()) == []
    for bad, said in (("qr", "--with qr: unknown extra (known: qr-images flash td-validation)"),
                      ("", "--with needs an extra")):  # fmt: skip
        refused = run(INSTALL, "--dry-run", "--root", tmp_path, "--with", bad, ok=False)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    assert "--with EXTRA[,EXTRA]" in run(INSTALL, "--help").stdout


# --------------------------------------------------------------------------- real install
def _pip_env() -> dict[str, str]:
    # the test does not need bytecode in the throwaway venv (the real install compiles it)
    return dict(os.environ, PIP_NO_COMPILE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")


def test_install_upgrade_uninstall_into_a_throwaway_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env = _pip_env()
    t0 = time.monotonic()
    first = run(
        INSTALL, "--root", root, "--lan-ip", "192.168.1.20", env=env, timeout=INSTALL_TIMEOUT_S
    ).stdout
    first_s = time.monotonic() - t0
    assert "streembit-gateway installed. Gateway id: " in first

    # --- what is there
    passwd = (root / "etc/passwd").read_text()
    assert re.search(
        r"^streembit:x:\d+:\d+:Streembit thing gateway:/var/lib/streembit-gateway:"
        r"/usr/sbin/nologin$",
        passwd,
        re.M,
    )
    members = group_members(root)
    for g in ("gpio", "dialout", "bluetooth"):
        assert members[g] == ["streembit"], g
    uid, gid = ids(root, "streembit")
    state, conf = root / "var/lib/streembit-gateway", root / "etc/streembit-gateway"
    assert (mode(state), state.stat().st_uid, state.stat().st_gid) == (0o700, uid, gid)
    assert (mode(conf), conf.stat().st_uid, conf.stat().st_gid) == (0o750, 0, gid)
    cfg = conf / "gateway.toml"
    assert (mode(cfg), cfg.stat().st_uid, cfg.stat().st_gid) == (0o640, 0, gid)
    assert 'public_ws = ["ws://192.168.1.20:8081/p2p"]' in cfg.read_text()
    key = state / "gateway.key"
    assert (mode(key), key.stat().st_uid) == (0o600, uid)
    assert (state / "VERSION").read_text() == f"{STATE_VERSION}\n"
    unit = root / "etc/systemd/system/streembit-gateway.service"
    assert unit.read_bytes() == UNIT.read_bytes() and mode(unit) == 0o644
    rules = root / "etc/udev/rules.d/70-streembit-gateway.rules"
    assert rules.read_bytes() == (DEPLOY / "70-streembit-gateway.rules").read_bytes()
    mqtt = root / "etc/mosquitto/conf.d"
    assert "allow_anonymous false" in (mqtt / "streembit.conf").read_text()
    assert mode(mqtt / "passwd") == 0o600 and (mqtt / "passwd").read_bytes() == b""
    assert "version=0.1.0" in (root / "opt/streembit-gateway/INSTALLED").read_text()
    assert verify_unit(root) == ""  # the installed unit, with its real ExecStart, verifies

    # --- the installed gateway runs: check its config, then ask doctor about this install
    gw = root / "opt/streembit-gateway/venv/bin/streembit-gateway"
    run(gw, "check-config", cfg)
    doctor = run(gw, "doctor", "--config", cfg, "--state", state, "--json", ok=False).stdout
    checks = {c["name"]: c["status"] for c in json.loads(doctor)["checks"]}
    for name in ("config", "state permissions", "state version", "gateway key", "audit log"):
        assert checks[name] == "ok", (name, doctor)
    assert checks["owner"] == "warn"  # not provisioned yet: doctor says how

    # --- the owner uses it: owner pinned, an ACL, audit records; the admin edits the config
    owner = generate_keypair()
    write_keypair(tmp_path / "owner.key", owner)
    run(gw, "provision", "--state", state, "--owner-key", tmp_path / "owner.key.pub")
    gw_id = json.loads(run(gw, "init", "--state", state, "--json").stdout)["id"]
    acl = with_grant(new_acl(gw_id), Grant.for_key(generate_keypair().public, things=["*"]))
    (tmp_path / "acl.jws").write_text(sign_acl(acl, owner))
    run(gw, "acl", "apply", "--state", state, tmp_path / "acl.jws")
    log = AuditLog.open(state / "audit.sqlite3")
    log.append_nowait(AuditRecord(time.time(), "system", "local", "test", "", "", True, "t", "ok"))
    log.close()
    cfg.write_text(cfg.read_text().replace('name = "raspberrypi gateway"', 'name = "Hall"'))
    (state / "VERSION").write_text("1\n")  # as an older release left it...
    os.chmod(state / "acl.jws", 0o640)  # ...with a group-readable ACL
    kept = {p: sha(p) for p in (cfg, key, state / "owner.pub", state / "acl.jws")}
    records = len(AuditLog.open(state / "audit.sqlite3").query(limit=1000))

    # --- run it again: an upgrade in place, with an optional part (pyproject.toml's extras)
    venv_python = root / "opt/streembit-gateway/venv/bin/python"
    assert run(venv_python, "-c", "import jsonschema", ok=False).returncode != 0  # not core
    t0 = time.monotonic()
    second = run(
        INSTALL, "--root", root, "--lan-ip", "192.168.1.20", "--with", "td-validation",
        env=env, timeout=INSTALL_TIMEOUT_S,
    ).stdout  # fmt: skip
    upgrade_s = time.monotonic() - t0
    assert "upgrading streembit-gateway in place" in second
    assert "extras=td-validation" in (root / "opt/streembit-gateway/INSTALLED").read_text()
    run(venv_python, "-c", "from gateway.wot import validate_td")
    again = run(INSTALL, "--dry-run", "--root", root).stdout  # an upgrade keeps the extras
    assert "with the optional parts: td-validation" in again
    assert "keeping /etc/streembit-gateway/gateway.toml" in second
    assert "(migrated from 1)" in second
    for path, digest in kept.items():
        assert sha(path) == digest, path
    assert 'name = "Hall"' in cfg.read_text()
    assert (conf / "gateway.toml.dist").exists()
    assert (state / "VERSION").read_text() == f"{STATE_VERSION}\n"
    assert mode(state / "acl.jws") == 0o600
    log = AuditLog.open(state / "audit.sqlite3")
    assert len(log.query(limit=1000)) >= records
    log.close()
    assert all(p.stat().st_uid == uid for p in state.iterdir())
    assert passwd == (root / "etc/passwd").read_text()  # the same user, not a second one
    assert upgrade_s < first_s  # dependencies are kept, only the gateway is reinstalled

    # --- uninstall keeps config and state; purge needs --yes
    run(INSTALL, "--root", root, "--uninstall")
    for gone in (
        "opt/streembit-gateway",
        "etc/systemd/system/streembit-gateway.service",
        "etc/udev/rules.d/70-streembit-gateway.rules",
        "etc/mosquitto/conf.d/streembit.conf",
    ):
        assert not (root / gone).exists(), gone
    assert sha(key) == kept[key] and sha(cfg) == kept[cfg]
    assert "streembit:" in (root / "etc/passwd").read_text()
    refused = run(
        INSTALL, "--root", root, "--uninstall", "--purge", ok=False, stdin=subprocess.DEVNULL
    )
    assert refused.returncode != 0 and "add --yes" in refused.stderr and key.exists()
    run(INSTALL, "--root", root, "--uninstall", "--purge", "--yes")
    assert not state.exists() and not conf.exists()
    assert "streembit:" not in (root / "etc/passwd").read_text()
    print(f"install {first_s:.1f} s, upgrade {upgrade_s:.1f} s", file=sys.stderr)
