"""A person's first run: the mistakes everybody makes once, each a clear line and the right exit
status (2 for usage, config and input files), never a traceback; data on stdout, notes on stderr.

All against the installed command lines as subprocesses, and real listeners on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from device_drivers.registry import create_driver
from gateway.ops import doctor
from gateway.things.resolution import resolution, rounded
from tests.helpers import GW, PEER, one_error_line
from tests.helpers import run_cli as run


@contextmanager
def demo(state: Path, *args: str) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [GW, "demo", "--state", str(state), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- ids
def test_init_prints_the_id_alone_and_the_note_on_stderr(tmp_path: Path) -> None:
    first = run(GW, "init", "--state", tmp_path / "gw")
    again = run(GW, "init", "--state", tmp_path / "gw")
    assert first.returncode == again.returncode == 0
    assert first.stdout == again.stdout and len(first.stdout.strip()) == 43
    assert first.stdout.count("\n") == 1  # exactly what GW=$(...) should capture
    assert "created the gateway key" in first.stderr
    assert "already had the gateway key" in again.stderr


def test_an_id_is_checked_where_it_is_read(tmp_path: Path) -> None:
    run(PEER, "keygen", "--key", tmp_path / "owner.key")
    gw = run(GW, "init", "--state", tmp_path / "gw").stdout.strip()
    two_lines = f"{gw}\n(already had the gateway key in {tmp_path / 'gw'})"
    argvs: list[list[str | Path]] = [
        [PEER, "token", "--key", tmp_path / "owner.key", "--gateway", two_lines],
        [PEER, "acl", "grant", "--key", tmp_path / "owner.key", "--acl", tmp_path / "a.jws",
         "--gateway", two_lines, "--subject", tmp_path / "owner.key.pub", "--things", "*",
         "--ops", "all"],
    ]  # fmt: skip
    for argv in argvs:
        proc = run(*argv)
        assert proc.returncode == 2 and "argument --gateway: not an id" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "a.jws").exists()
    revoke = run(PEER, "acl", "revoke", "--key", tmp_path / "owner.key", "--acl",
                 tmp_path / "a.jws", "--gateway", gw, "--subject", "alice.key.pub")  # fmt: skip
    assert revoke.returncode == 2
    assert "neither a public key file nor an id" in one_error_line(revoke)


def test_acl_grant_ops_all(tmp_path: Path) -> None:
    run(PEER, "keygen", "--key", tmp_path / "owner.key")
    gw = run(GW, "init", "--state", tmp_path / "gw").stdout.strip()
    grant = run(PEER, "acl", "grant", "--key", tmp_path / "owner.key", "--acl",
                tmp_path / "a.jws", "--gateway", gw, "--subject", tmp_path / "owner.key.pub",
                "--things", "*", "--ops", "all", "--json")  # fmt: skip
    assert grant.returncode == 0, grant.stderr
    (g,) = json.loads(grant.stdout)["grants"]
    assert sorted(g["ops"]) == sorted(
        ["readproperty", "writeproperty", "observeproperty", "invokeaction", "subscribeevent"]
    )


# --------------------------------------------------------------------------- key files
def test_a_public_key_for_a_private_one_and_the_mirror_case(tmp_path: Path) -> None:
    assert run(PEER, "keygen", "--key", tmp_path / "alice.key").returncode == 0
    pub = tmp_path / "alice.key.pub"
    pub.chmod(0o644)  # as keygen leaves it: the permission check must not come first
    gw = run(GW, "init", "--state", tmp_path / "gw").stdout.strip()
    token = run(PEER, "token", "--key", pub, "--gateway", gw)
    assert token.returncode == 2
    line = one_error_line(token)
    assert f"this is a public key; use the private key file {tmp_path / 'alice.key'}" in line
    assert "chmod" not in line
    owner = run(GW, "provision", "--state", tmp_path / "gw", "--owner-key",
                tmp_path / "alice.key")  # fmt: skip
    assert owner.returncode == 2
    assert f"this is a private key; give the public key file {pub}" in one_error_line(owner)
    assert run(PEER, "id", "--key", tmp_path / "alice.key").returncode == 0  # either works here
    assert run(PEER, "id", "--key", pub).returncode == 0


# --------------------------------------------------------------------------- ports
def _taken(kind: int) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock, int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("flag", "kind", "what"),
    [
        ("--http-port", socket.SOCK_STREAM, "port"),
        ("--ws-port", socket.SOCK_STREAM, "port"),
        ("--dht-port", socket.SOCK_DGRAM, "UDP port"),
    ],
)
def test_a_port_in_use_is_one_line_and_nothing_starts(
    tmp_path: Path, flag: str, kind: int, what: str
) -> None:
    sock, port = _taken(kind)
    free = {"--http-port": "0", "--ws-port": "0", "--dht-port": "0"}
    free[flag] = str(port)
    with sock:
        proc = run(GW, "demo", "--state", tmp_path / "gw", *[x for kv in free.items() for x in kv])
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert f"{what} {port} is in use ({flag} to choose another)" in line
    assert "driver" not in proc.stderr and proc.stdout == ""
    # nothing was started: no Thing, no audit record of a start, the folder free again
    assert not (tmp_path / "gw" / "running.json").exists()
    with demo(tmp_path / "gw", "--http-port", "0", "--no-p2p") as ready:
        assert ready["http"].startswith("http://127.0.0.1:")


def test_a_config_port_in_use_names_the_config_key(tmp_path: Path) -> None:
    sock, port = _taken(socket.SOCK_STREAM)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "gw"}"\n[gateway.http]\nport = {port}\n'
        '[[things]]\nname = "porch"\ntype = "switch"\ndriver = "sim"\n'
    )
    with sock:
        proc = run(GW, "run", "--config", cfg, "--create-key")
    assert proc.returncode == 2
    assert f"port {port} is in use (--http-port, or [gateway.http] port in {cfg}" in (
        one_error_line(proc)
    )


# --------------------------------------------------------------------------- config
def test_check_config_and_run_refuse_the_same_config_alike(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "gw"}"\n'
        '[[things]]\nname = "lamp"\ntype = "switch"\ndriver = "simm"\n'
    )
    check = run(GW, "check-config", cfg)
    assert not (tmp_path / "gw").exists()  # check-config creates nothing
    start = run(GW, "run", "--config", cfg, "--create-key", "--http-port", "0", "--no-p2p")
    assert check.returncode == start.returncode == 2
    assert one_error_line(check) == one_error_line(start)
    assert "unknown driver backend 'simm'" in check.stderr and check.stdout == ""
    cfg.write_text(cfg.read_text().replace('"simm"', '"sim"'))
    good = run(GW, "check-config", cfg)
    assert good.returncode == 0 and "OK (1 things: lamp)" in good.stdout
    # a driver setting the driver refuses: the same path as `run`, without starting anything
    cfg.write_text(cfg.read_text() + '[things.driver_settings]\nsafe_output = "yes"\n')
    bad = run(GW, "check-config", cfg)
    assert bad.returncode == 2 and "safe_output" in one_error_line(bad)


# --------------------------------------------------------------------------- doctor
def test_doctor_on_a_healthy_dev_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "DEFAULT_CONFIG", tmp_path / "etc" / "gateway.toml")
    with demo(tmp_path / "gw", "--http-port", "0", "--no-p2p"):
        checks = doctor.run_checks(None, tmp_path / "gw")
    by_name = {c.name: c for c in checks}
    assert by_name["config"].status == "ok" and "does not exist" in by_name["config"].detail
    assert "(file)" not in by_name["config"].detail
    assert by_name["gateway"].status == "ok" and by_name["HTTP"].status == "ok"
    assert [c for c in checks if c.status == "fail"] == []
    # without --state and without a config there is nothing to check: say what to give
    (alone,) = doctor.run_checks(None, None)
    assert alone.status == "fail" and "--config FILE" in alone.fix


def test_doctor_names_a_missing_config_file_plainly(tmp_path: Path) -> None:
    proc = run(GW, "doctor", "--config", tmp_path / "nope.toml", "--json")
    assert proc.returncode == 1
    (first, *_) = json.loads(proc.stdout)["checks"]
    assert first["detail"] == f"{tmp_path / 'nope.toml'}: not an existing config file"


# --------------------------------------------------------------------------- state folder
def test_a_read_only_state_folder_says_so(tmp_path: Path) -> None:
    state = tmp_path / "gw"
    assert run(GW, "init", "--state", state).returncode == 0
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("this test needs `unshare` (util-linux) for a private mount", pytrace=False)
    ns = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    script = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
        'exec "$2" demo --state "$1" --http-port 0 --no-p2p'
    )
    proc = subprocess.run(
        [unshare, *ns, "sh", "-c", script, "sh", str(state), GW],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "unshare failed" in proc.stderr:
        pytest.fail(f"cannot make a mount namespace: {proc.stderr.strip()}", pytrace=False)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"the state folder {state} is read-only (mounted read-only?)" in line
    assert "chown" not in line


# --------------------------------------------------------------------------- values
def test_temperatures_are_rounded_to_the_sensor_resolution() -> None:
    sim = create_driver("sim", "living-room", "thermostat", {})
    assert resolution(sim, "temperature") == 0.1
    assert resolution(sim, "heater") is None
    ds = create_driver("onewire", "hall", "sensor", {"temperature": {"ds18b20": "28-0316a2794eff"}})
    assert resolution(ds, "temperature") == 0.0625
    dht = create_driver("onewire", "bath", "sensor", {"dht22": "iio:device0"})
    assert resolution(dht, "humidity") == 0.1
    assert rounded(20.080277496948078, 0.1) == 20.1
    assert repr(rounded(20.15000000000001, 0.1)) in ("20.1", "20.2")
    assert rounded(20.08, 0.0625) == 20.0625
    assert rounded(20.08, None) == 20.08


def test_the_demo_reports_rounded_temperatures_and_its_provisioning(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    proc = subprocess.Popen(
        [GW, "demo", "--state", str(tmp_path / "gw"), "--http-port", "0", "--no-p2p"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]  # ready, status, web app, 2 Things, hint
        assert "not provisioned yet" in lines[-1], lines
        url = lines[0].split(" ready at ")[1].strip()
        gw = run(GW, "init", "--state", tmp_path / "gw").stdout.strip()
        run(PEER, "keygen", "--key", keys / "owner.key")
        assert run(GW, "provision", "--state", tmp_path / "gw", "--owner-key",
                   keys / "owner.key.pub").returncode == 0  # fmt: skip
        pinned = proc.stdout.readline()
        assert pinned.startswith("  provisioned: owner ") and pinned.endswith(" pinned\n")
        run(PEER, "acl", "grant", "--key", keys / "owner.key", "--acl", keys / "a.jws",
            "--gateway", gw, "--subject", keys / "owner.key.pub", "--things", "*",
            "--ops", "all")  # fmt: skip
        assert run(GW, "acl", "apply", "--state", tmp_path / "gw", keys / "a.jws").returncode == 0
        token = run(PEER, "token", "--key", keys / "owner.key", "--gateway", gw).stdout.strip()
        for _ in range(3):
            got = subprocess.run(
                ["curl", "-s", "-H", f"Authorization: Bearer {token}",
                 f"{url}/things/living-room/properties/temperature"],
                capture_output=True, text=True, timeout=30, check=False,
            ).stdout  # fmt: skip
            value = json.loads(got)
            assert isinstance(value, float) and len(got) <= 5 and round(value, 1) == value, got
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_folder_without_its_write_bit_says_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.state import StateDir, StateError

    st = StateDir(tmp_path / "gw")
    st.ensure()
    (tmp_path / "gw").chmod(0o500)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root would be let through
    with pytest.raises(StateError) as exc:
        st.ensure()
    assert exc.value.code == "state_read_only"
    assert str(exc.value) == (
        f"the state folder {st.path} is read-only (mode 500); run: chmod 700 {st.path}"
    )


def test_an_acl_for_another_gateway_names_both(tmp_path: Path) -> None:
    run(PEER, "keygen", "--key", tmp_path / "owner.key")
    mine = run(GW, "init", "--state", tmp_path / "gw").stdout.strip()
    other = run(GW, "init", "--state", tmp_path / "other").stdout.strip()
    run(GW, "provision", "--state", tmp_path / "gw", "--owner-key", tmp_path / "owner.key.pub")
    grant = run(PEER, "acl", "grant", "--key", tmp_path / "owner.key", "--acl",
                tmp_path / "a.jws", "--gateway", other, "--subject", tmp_path / "owner.key.pub",
                "--things", "*", "--ops", "all")  # fmt: skip
    assert grant.returncode == 0, grant.stderr
    apply = run(GW, "acl", "apply", "--state", tmp_path / "gw", tmp_path / "a.jws")
    assert apply.returncode == 1
    line = one_error_line(apply)
    assert f"is the ACL of gateway '{other}', not of this gateway {mine}" in line
