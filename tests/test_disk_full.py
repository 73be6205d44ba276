"""A full disk while the gateway writes its audit log: requests are refused (503
audit_unavailable, nothing actuated), the state folder stays sound, and service resumes once
there is space again.

The state folder lives on a real 4 MiB tmpfs mounted in a private mount namespace that the test
creates (`unshare -m`, as root); the test fills it through /proc/PID/root, the gateway's view."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.acl import Grant
from gateway.audit import AuditLog
from gateway.audit.log import SPACE_CHECK_S
from tests.helpers import ALL_OPS, World

GW = str(Path(sys.executable).parent / "streembit-gateway")
TMPFS_SIZE = "4m"
READY_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 5.0


def _http(url: str, token: str, method: str = "GET") -> tuple[int, object]:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _fill(path: Path) -> int:
    written = 0
    with path.open("ab") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                written += 65536
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return written


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_disk_refuses_requests_and_keeps_the_state_sound(world: World, tmp_path: Path) -> None:
    assert shutil.which("unshare"), "util-linux's unshare is needed (apt-get install util-linux)"
    world.install(Grant.for_key(world.user.public, things=["*"], ops=ALL_OPS))
    seed, mnt, out = world.state, tmp_path / "mnt", tmp_path / "after"
    mnt.mkdir()
    out.mkdir()
    kept = {n: _sha(seed / n) for n in ("gateway.key", "owner.pub", "acl.jws", "VERSION")}
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 streembit-test {mnt} && "
        f"cp -a {seed}/. {mnt}/ && "
        f"{GW} --log-level info demo --state {mnt} --http-port 0 --no-p2p --json; rc=$?; "
        f"cp -a {mnt}/. {out}/; exit $rc"
    )
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gw_pid = 0
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"gateway did not start: {proc.stderr.read() if proc.stderr else ''}"
        url = json.loads(line)["http"]
        gw_pid = int(
            subprocess.run(
                ["pgrep", "-P", str(proc.pid), "-f", "streembit-gateway"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.split()[0]
        )
        inside = Path(f"/proc/{gw_pid}/root") / str(mnt).lstrip("/")
        token = world.token(world.user)
        lock = f"{url}/things/front-door"
        assert _http(f"{lock}/properties/state", token) == (200, "locked")

        filled = _fill(inside / "filler")
        assert filled < 8 * 1024 * 1024
        time.sleep(SPACE_CHECK_S + 0.1)
        assert _http(f"{lock}/properties/state", token)[0] == 503
        status, body = _http(f"{lock}/actions/unlock", token, "POST")
        assert status == 503
        assert body == {"error": "audit_unavailable", "reason": "audit log unavailable"}

        (inside / "filler").unlink()  # space again: service resumes by itself
        time.sleep(SPACE_CHECK_S + 0.1)
        assert _http(f"{lock}/properties/state", token) == (200, "locked")  # never unlocked
        _fill(inside / "filler")  # and a shutdown on a full disk corrupts nothing either
        os.kill(gw_pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            if gw_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(gw_pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert "audit write" in err or "audit import" in err or "audit log unavailable" in err
    for name, digest in kept.items():
        assert _sha(out / name) == digest, name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    # records made durable in the journal while SQLite could not grow are imported at the next
    # open (a torn last journal line, if any, is cut off there)
    AuditLog.open(out / "audit.sqlite3").close()
    with sqlite3.connect(out / "audit.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ops = [r[0] for r in db.execute("SELECT op FROM audit ORDER BY id")]
        rows = db.execute(
            "SELECT op, allowed, reason FROM audit WHERE subject = ?", (world.user.id,)
        ).fetchall()
    users = [op for op, _, _ in rows]
    assert ops[0] == "start"
    # the refusals are in the log when their journal line still fitted (tmpfs keeps the file's
    # last page); when it did not, the log failed and says when it recovered
    refused = [r for r in rows if r[2].startswith("audit_unavailable")]
    assert refused or "auditrecovered" in ops
    assert all(not allowed for _, allowed, _ in refused)
    assert users.count("readproperty") >= 2  # the reads before and after the full disk
    assert ("invokeaction", 1) not in [(op, allowed) for op, allowed, _ in rows]  # never ran
