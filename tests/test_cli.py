"""The command lines, run as a user would run them (subprocesses of the installed scripts)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.audit import AuditLog

BIN = Path(sys.executable).parent
GW = str(BIN / "streembit-gateway")
PEER = str(BIN / "streembit-peer")


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def j(*args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, str]:
    st, k = tmp_path / "state", tmp_path / "keys"
    k.mkdir()
    gw = j(GW, "init", "--state", str(st))["id"]
    owner = j(PEER, "keygen", "--key", str(k / "owner"))["id"]
    user = j(PEER, "keygen", "--key", str(k / "user"))["id"]
    return {
        "st": str(st),
        "k": str(k),
        "gw": gw,
        "owner": owner,
        "user": user,
        "acl": str(k / "acl.jws"),
    }


def test_keygen_writes_private_0600_and_pub(setup: dict[str, str]) -> None:
    key = Path(setup["k"]) / "owner"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_name("owner.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert j(PEER, "id", "--key", str(key) + ".pub")["id"] == setup["owner"]
    again = run(PEER, "keygen", "--key", str(key), ok=False)
    assert again.returncode != 0 and "exists" in again.stderr


def test_init_is_stable(setup: dict[str, str]) -> None:
    assert j(GW, "init", "--state", setup["st"])["id"] == setup["gw"]


def test_provision_pins_and_refuses_another_owner(setup: dict[str, str]) -> None:
    s = setup
    out = j(GW, "provision", "--state", s["st"], "--owner-key", f"{s['k']}/owner.pub")
    assert out == {"owner": s["owner"], "gateway": s["gw"]}
    other = run(GW, "provision", "--state", s["st"], "--owner-key", f"{s['k']}/user.pub", ok=False)
    assert other.returncode == 1 and "already owned" in other.stderr
    assert (Path(s["st"]) / "owner.pub").read_bytes() == Path(f"{s['k']}/owner.pub").read_bytes()


def test_acl_grant_show_revoke_apply_and_rollback(setup: dict[str, str]) -> None:
    s = setup
    run(GW, "provision", "--state", s["st"], "--owner-key", f"{s['k']}/owner.pub")
    common = ["--key", f"{s['k']}/owner", "--acl", s["acl"], "--gateway", s["gw"]]
    run(
        PEER,
        "acl",
        "grant",
        *common,
        "--subject",
        f"{s['k']}/user.pub",
        "--things",
        "front-door",
        "--ops",
        "readproperty,invokeaction",
        "--not-after",
        "2099-01-01T00:00:00",
        "--schedule",
        "mon-sun 00:00-23:59",
    )
    v1 = Path(s["acl"]).read_text()
    shown = j(PEER, "acl", "show", "--acl", s["acl"])
    assert shown["version"] == 1 and shown["grants"][0]["sub"] == s["user"]
    assert shown["grants"][0]["ops"] == ["invokeaction", "readproperty"]
    assert j(GW, "acl", "apply", "--state", s["st"], s["acl"])["version"] == 1
    run(PEER, "acl", "revoke", *common, "--subject", s["user"])
    assert j(PEER, "acl", "show", "--acl", s["acl"])["version"] == 2
    assert j(GW, "acl", "apply", "--state", s["st"], s["acl"])["version"] == 2
    old = Path(s["k"]) / "old.jws"
    old.write_text(v1)
    installed = (Path(s["st"]) / "acl.jws").read_bytes()
    back = run(GW, "acl", "apply", "--state", s["st"], str(old), ok=False)
    assert back.returncode != 0 and "rollback" in back.stderr.lower()
    assert (Path(s["st"]) / "acl.jws").read_bytes() == installed, "installed ACL unchanged"
    bad = run(
        PEER,
        "acl",
        "grant",
        *common,
        "--subject",
        f"{s['k']}/user.pub",
        "--things",
        "x",
        "--ops",
        "fly",
        ok=False,
    )
    assert bad.returncode == 2 and "unknown operation" in bad.stderr


def test_foreign_signed_acl_refused(setup: dict[str, str]) -> None:
    s = setup
    run(GW, "provision", "--state", s["st"], "--owner-key", f"{s['k']}/owner.pub")
    run(
        PEER,
        "acl",
        "grant",
        "--key",
        f"{s['k']}/user",
        "--acl",
        s["acl"],
        "--gateway",
        s["gw"],
        "--subject",
        f"{s['k']}/user.pub",
        "--things",
        "*",
        "--ops",
        "invokeaction",
    )
    res = run(GW, "acl", "apply", "--state", s["st"], s["acl"], ok=False)
    assert res.returncode != 0
    assert not (Path(s["st"]) / "acl.jws").exists()


def test_token_prints_a_jwt(setup: dict[str, str]) -> None:
    tok = run(PEER, "token", "--key", f"{setup['k']}/user", "--gateway", setup["gw"]).stdout.strip()
    assert tok.count(".") == 2


def _http(url: str, token: str | None = None, method: str = "GET", body: bytes | None = None):  # type: ignore[no-untyped-def]
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def test_demo_serves_and_stops_cleanly_on_sigterm(setup: dict[str, str]) -> None:
    s = setup
    run(GW, "provision", "--state", s["st"], "--owner-key", f"{s['k']}/owner.pub")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            GW,
            "demo",
            "--state",
            s["st"],
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--dht-port",
            "0",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["id"] == s["gw"] and ready["http"].startswith("http://127.0.0.1:")
        assert ready["owner"] == s["owner"]
        assert ready["ws"].startswith("ws://127.0.0.1:") and ready["dht"].startswith("127.0.0.1:")
        assert time.monotonic() - t0 < 10
        tok = run(PEER, "token", "--key", f"{s['k']}/owner", "--gateway", s["gw"]).stdout.strip()
        base = ready["http"] + "/things"
        assert _http(f"{base}/front-door/actions/unlock", tok, "POST")[0] == 200
        assert (
            _http(f"{base}/living-room/properties/targetTemperature", tok, "PUT", b"24")[0] == 204
        )
        assert json.loads(_http(f"{base}/front-door/properties/state", tok)[1]) == "unlocked"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = json.loads((Path(s["st"]) / "thing-settings.json").read_text())
    assert saved["living-room"]["targetTemperature"] == 24.0
    log = AuditLog.open(Path(s["st"]) / "audit.sqlite3")
    try:
        rows = [r.as_dict() for r in log.query(limit=50)]
    finally:
        log.close()
    ops = [r["op"] for r in rows]
    assert ops[0] == "stop", "the shutdown is the newest audit record"
    assert "invokeaction" in ops and "start" in ops
    audit = json.loads(run(GW, "audit", "--state", s["st"], "--json").stdout)
    assert any(r["subject"] == s["owner"] and r["affordance"] == "unlock" for r in audit)


def test_second_gateway_on_same_state_refuses(setup: dict[str, str]) -> None:
    s = setup
    proc = subprocess.Popen(
        [
            GW,
            "demo",
            "--state",
            s["st"],
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--dht-port",
            "0",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())
        second = run(GW, "demo", "--state", s["st"], "--http-port", "0", "--no-p2p", ok=False)
        assert second.returncode == 1 and "another gateway is running" in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


def test_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    res = run(
        GW,
        "run",
        "--config",
        str(Path(__file__).parents[1] / "examples" / "lock.toml"),
        "--state",
        str(tmp_path / "empty"),
        ok=False,
    )
    assert res.returncode == 2 and "streembit-gateway init" in res.stderr
    assert os.environ.get("NO_SUCH") is None
