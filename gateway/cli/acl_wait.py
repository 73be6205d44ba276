"""`acl apply` beside a running gateway: wait until the gateway has picked the new ACL up.

The gateway polls its acl.jws (gateway/app.py, ACL_POLL_S) and writes an audit record
"ACL version N picked up" when it takes a new one. `acl apply` waits for that record, so the
command after it (a token, a request) already meets the new ACL. A later version installed
meanwhile through the gateway itself (`PUT /acl`, `acl push`) also ends the wait: the gateway
has that one.
"""

from __future__ import annotations

import re
import time
from typing import Final

from gateway.acl import read_acl_unverified
from gateway.acl.store import ACL_FILE
from gateway.audit import AUDIT_FILE, AuditLog
from gateway.errors import StreembitError
from gateway.state import StateDir

WAIT_S: Final = 5.0
POLL_S: Final = 0.1
_PICKED_UP = re.compile(r"ACL version (\d+) picked up")


def _superseded(state: StateDir, version: int) -> bool:
    """True when acl.jws now holds a version above VERSION (installed by the running gateway)."""
    try:
        text = (state.path / ACL_FILE).read_text(encoding="utf-8", errors="replace")
        return read_acl_unverified(text.strip()).version > version
    except (OSError, StreembitError):
        return False


def picked_up(state: StateDir, version: int, timeout: float = WAIT_S) -> bool | None:
    """None when no gateway runs on STATE; True once it has taken VERSION (or a later one),
    False if it has not within TIMEOUT seconds."""
    if not state.is_locked_elsewhere():
        return None
    deadline = time.monotonic() + timeout
    log = AuditLog.open(state.path / AUDIT_FILE)
    try:
        while True:
            for rec in log.query(limit=20, subject="system"):
                m = _PICKED_UP.match(rec.detail) if rec.op == "aclreload" else None
                if m and int(m.group(1)) >= version:
                    return True
            if _superseded(state, version):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
    finally:
        log.close()
