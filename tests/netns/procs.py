"""Child processes of the namespace tests: their first stdout line, with a deadline."""

from __future__ import annotations

import selectors
import subprocess


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
