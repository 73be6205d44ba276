"""Running the web app's library in Node for the tests: one process per driver script
(gateway/webapp/test/*.mjs), a JSON line protocol: {"id", "cmd", ...args} -> {"id", "ok": ...}
or {"id", "error": {"code", "message"}}. Without Node >= 18 or the npm packages a test fails
with what to install; nothing is skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

WEBAPP = REPO / "gateway" / "webapp"
INSTALL = (
    "install Node.js >= 18 and npm (apt-get install nodejs npm), then: cd gateway/webapp && npm ci"
)


def node(*packages: str) -> str:
    """The node executable, after checking its version and the npm PACKAGES."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail(f"node not found: {INSTALL}")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    if int(out.strip().lstrip("v").split(".")[0]) < 18:
        pytest.fail(f"node {out.strip()} is too old: {INSTALL}")
    for pkg in packages:
        if not (WEBAPP / "node_modules" / pkg / "package.json").is_file():
            pytest.fail(f"npm package {pkg} missing: cd gateway/webapp && npm ci")
    return exe


class Driver:
    """One driver script in one Node process: call(cmd, **args) -> {"ok": …} or {"error": …}."""

    def __init__(self, script: Path, *packages: str) -> None:
        self.proc = subprocess.Popen(
            [node(*packages), str(script)],
            cwd=WEBAPP,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.n = 0
        self.lock = threading.Lock()

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.n += 1
            self.proc.stdin.write(json.dumps({"id": self.n, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"the Node driver died: {err}")
            out: dict[str, Any] = json.loads(line)
            assert out["id"] == self.n
            return out

    def ok(self, cmd: str, **args: Any) -> Any:
        out = self.call(cmd, **args)
        assert "ok" in out, f"{cmd}: {out.get('error')}"
        return out["ok"]

    def error(self, cmd: str, **args: Any) -> dict[str, Any]:
        out = self.call(cmd, **args)
        assert "error" in out, f"{cmd} should have been refused: {out}"
        return dict(out["error"])

    def code(self, cmd: str, **args: Any) -> str:
        return str(self.error(cmd, **args)["code"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


class P2PDriver(Driver):
    """gateway/webapp/test/p2p.mjs (the P2P library) in one Node process; answers are matched
    by id (they may interleave). Used by tests/test_webapp_p2p.py and test_webapp_sessions.py."""

    def __init__(self) -> None:
        super().__init__(WEBAPP / "test" / "p2p.mjs", "jose", "ws")
        self.answers: dict[int, dict[str, Any]] = {}

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.n += 1
            n = self.n
            self.proc.stdin.write(json.dumps({"id": n, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
            while n not in self.answers:
                line = self.proc.stdout.readline()
                if not line:
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    pytest.fail(f"the Node driver died: {err}")
                out = json.loads(line)
                self.answers[out["id"]] = out
            return self.answers.pop(n)
