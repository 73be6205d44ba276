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

from gateway.audit import AUDIT_FILE, AuditLog

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
    log = AuditLog.open(Path(s["st"]) / AUDIT_FILE)
    try:  # each local install and the refused rollback are audited, newest first
        applied = [r for r in log.query(limit=50) if r.op == "aclapply"]
    finally:
        log.close()
    assert [(r.allowed, r.binding, r.affordance) for r in applied] == [
        (False, "local", "acl"),
        (True, "local", "acl"),
        (True, "local", "acl"),
    ]
    assert applied[0].reason.startswith("acl_rollback") and applied[0].subject.startswith("local:")
    assert [r.detail for r in applied[1:]] == [
        "ACL version 2 installed (0 grants)",
        "ACL version 1 installed (1 grants)",
    ]
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
    log = AuditLog.open(Path(s["st"]) / AUDIT_FILE)
    try:
        refused = [r for r in log.query(limit=50) if r.op == "aclapply"]
    finally:
        log.close()
    assert len(refused) == 1 and not refused[0].allowed
    assert refused[0].reason.startswith("acl_")


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
    log = AuditLog.open(Path(s["st"]) / AUDIT_FILE)
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


def _owner_signed(s: dict[str, str], payload: bytes) -> str:
    from joserfc import jws

    from gateway.identity import load_keypair

    owner = load_keypair(Path(s["k"]) / "owner")
    header = {"alg": "ES256", "typ": "streembit-acl+jws", "kid": owner.id}
    return jws.serialize_compact(header, payload, owner.jose_key(), algorithms=["ES256"])


def test_malformed_owner_signed_acls_are_refused_with_a_code(setup: dict[str, str]) -> None:
    s = setup
    run(GW, "provision", "--state", s["st"], "--owner-key", f"{s['k']}/owner.pub")
    common = ["--key", f"{s['k']}/owner", "--acl", s["acl"], "--gateway", s["gw"]]
    run(PEER, "acl", "grant", *common, "--subject", f"{s['k']}/user.pub", "--things", "x",
        "--ops", "readproperty")  # fmt: skip
    good = json.loads(run(PEER, "acl", "show", "--acl", s["acl"], "--json").stdout)
    payload = {k: good[k] for k in ("gateway", "version", "iat", "grants", "revoked")}
    payload["version"] = 5
    role = json.loads(json.dumps(payload))
    role["grants"][0]["role"] = []
    text = json.dumps(payload, separators=(",", ":")).encode()
    deep = text[:-1] + b',"tz":' + b"[" * 5000 + b"]" * 5000 + b"}"
    big = text.replace(b'"version":5', b'"version":' + b"9" * 5000)
    for name, body, why in (
        ("role", json.dumps(role).encode(), "role"),
        ("deep", deep, "too_deep"),
        ("bignum", big, "long_number"),
    ):
        path = Path(s["k"]) / f"{name}.jws"
        path.write_text(_owner_signed(s, body))
        revoke = (PEER, "acl", "revoke", *common[:2], "--acl", str(path), "--gateway", s["gw"])
        for args in (
            (GW, "acl", "apply", "--state", s["st"], str(path)),
            (PEER, "acl", "show", "--acl", str(path)),
            (*revoke, "--subject", s["user"]),
        ):
            res = run(*args, ok=False)
            assert res.returncode == 2, (name, args[1:3], res.stderr)
            assert "Traceback" not in res.stderr and "acl_malformed" in res.stderr
            assert why in res.stderr, (name, res.stderr)
    assert j(GW, "acl", "apply", "--state", s["st"], s["acl"])["version"] == 1


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ("[gateway.http]\nport = " + "9" * 5000 + "\n", "gateway.http.port (line 2)", "64 bits"),
        (
            '[[things]]\nname = "t"\ntype = "thermostat"\n[things.safety]\n'
            "max_setpoint_c = " + "9" * 400 + ".0\n",
            "things[0].safety.max_setpoint_c",
            "a finite number",
        ),
        (
            '[[things]]\nname = "t"\ntype = "thermostat"\n[things.safety]\n'
            "max_setpoint_c = " + "9" * 400 + "\n",
            "things[0].safety.max_setpoint_c",
            "64 bits",
        ),
        ("[gateway]\nname = " + "[" * 5000 + "]" * 5000 + "\n", "gateway.name (line 2)", "nesting"),
        ("[gateway]\nname = " + "[" * 40 + "]" * 40 + "\n", "gateway.name", "nesting"),
    ],
)
def test_hostile_numbers_and_nesting_in_the_config_are_config_errors(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(toml)
    for args in (
        (GW, "check-config", str(cfg)),
        (GW, "run", "--config", str(cfg), "--state", str(tmp_path / "st")),
    ):
        res = run(*args, ok=False)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert f"{cfg}: {key}" in res.stderr and expected in res.stderr, res.stderr
