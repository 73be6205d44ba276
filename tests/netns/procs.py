"""Child processes of the namespace tests: their first stdout line, with a deadline."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
from typing import Any


def first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """PROC's first stdout line, or "" if none came within TIMEOUT seconds (PROC is then
    killed; the caller reads its stderr with communicate())."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
    return line


STOP_TIMEOUT_S = 15.0  # SIGTERM to exit: a gateway locks its lock and releases its relays first


def stop(proc: subprocess.Popen[str], timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM (if still running), then its exit status; killed if it does not exit in time
    (and the TimeoutExpired raised: a process that ignores SIGTERM is a failure)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
        raise


def json_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """PROC's next stdout line as a JSON object (a probe's report); fails with its stderr if
    the process ended without one."""
    assert proc.stdout is not None
    text = proc.stdout.readline()
    assert text, f"no output: {proc.communicate(timeout=5)[1]}"
    result: dict[str, Any] = json.loads(text)
    return result


def command(proc: subprocess.Popen[str], cmd: str) -> dict[str, Any]:
    """Send CMD as one stdin line to an interactive probe; its JSON report line back."""
    assert proc.stdin is not None
    proc.stdin.write(cmd + "\n")
    proc.stdin.flush()
    return json_line(proc)


def probe_report(host: Any, probe: str, *args: str, timeout: float = 15.0) -> dict[str, Any]:
    """Run the probe script PROBE with ARGS on HOST (a lab Host); its last JSON line."""
    import sys

    out = host.run([sys.executable, probe, *args], timeout=timeout).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result
