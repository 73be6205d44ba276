"""Run one command in network (and mount) namespaces of its own: `unshare`, loopback up.

Lighter than `tests/netns/lan.py`: no other interface, so the command can reach nothing but
itself; unprivileged users get a user namespace too. Where the namespaces cannot be made
(no unshare, ip or mount; no root and no user namespaces) the calling test fails, saying what
is needed: it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

APT_HINT = "apt-get install util-linux iproute2"


def run_unshared(
    script: str,
    args: Sequence[str],
    *,
    who: str,
    timeout: float,
    mount: bool = False,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `sh -c SCRIPT ARGS...` (``$0`` is ARGS[0]) in a new network namespace with loopback
    up; with MOUNT in a new mount namespace too, /tmp a fresh tmpfs. WHO names the test in
    the failure messages. Output is captured as text; the exit status is the caller's to check."""
    names = ("unshare", "ip", "mount") if mount else ("unshare", "ip")
    tools = {name: shutil.which(name) for name in names}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.fail(
            f"{who} need {', '.join(missing)} to make a namespace of their own: {APT_HINT}",
            pytrace=False,
        )
    setup = f"{tools['ip']} link set lo up && "
    if mount:
        setup += f"{tools['mount']} -t tmpfs -o mode=1777 tmpfs /tmp && "
    ns = ["-n", "-m"] if mount else ["-n"]
    if os.geteuid() != 0:
        ns.insert(0, "-r")  # unprivileged: a user namespace too
    proc = subprocess.run(
        [str(tools["unshare"]), *ns, "sh", "-c", setup + script, *args],
        input=input,
        env=None if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.fail(
            f"cannot create the namespaces ({proc.stderr.strip()}): {who} need root or "
            "unprivileged user namespaces",
            pytrace=False,
        )
    return proc
