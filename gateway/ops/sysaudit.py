"""The gateway's own events in the audit log (subject "system"): start and stop, each fault a
Thing reports and its clearing, an ACL picked up from disk, a background task that died.

None of these may break what reports them: a record the audit log refuses (closed, queue full,
failing disk) is logged instead, and the ACL watcher keeps its records and retries them with a
capped, jittered backoff while it goes on picking up new ACLs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from device_drivers.backoff import Backoff
from gateway.acl import AclStore
from gateway.audit import AuditLog, AuditRecord
from gateway.errors import StreembitError
from gateway.requests import records

log = logging.getLogger(__name__)

ACL_POLL_S: Final = 1.0  # how soon an ACL installed by `acl apply` beside a running gateway counts
AUDIT_RETRY_CAP_S: Final = 30.0  # a record the audit log refused is retried at least this often
AUDIT_BACKLOG: Final = 64  # ACL reload records kept while the audit log refuses them


def system_record(op: str, detail: str, *, thing: str = "", reason: str = "ok") -> AuditRecord:
    affordance = "fault" if op == "fault" else ""
    return records.system_record(op, detail, thing=thing, affordance=affordance, reason=reason)


class SystemAudit:
    """Writes the gateway's system records to AUDIT."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def record(self, op: str, detail: str, *, thing: str = "", reason: str = "ok") -> bool:
        """Append a system record without waiting; False (and logged) if the log refused it."""
        try:
            self.audit.append_nowait(system_record(op, detail, thing=thing, reason=reason))
        except StreembitError as exc:  # closed or overloaded: never break the caller
            log.warning("not audited (%s): %s %s", exc, thing or op, detail)
            return False
        return True

    def fault_listener(self, thing: str) -> Callable[[Any], None]:
        """A bus listener recording each fault THING reports, and its clearing (faults at
        start-up and shutdown included)."""
        active = False

        def on_publish(note: Any) -> None:
            nonlocal active
            if note.kind != "property" or note.name != "fault":
                return
            if note.data is None and not active:
                return  # "no fault" at start-up is not news
            active = note.data is not None
            detail = str(note.data or "cleared")
            self.record("fault", detail, thing=thing, reason="fault" if active else "cleared")

        return on_publish

    async def watch_acl(self, acl: AclStore, poll_s: float = ACL_POLL_S) -> None:
        """Poll acl.jws so `streembit-gateway acl apply` also reaches a running gateway (runs
        until cancelled). Picking up an ACL never waits for the audit log: see the module."""
        unaudited: deque[AuditRecord] = deque(maxlen=AUDIT_BACKLOG)
        backoff = Backoff(initial_s=poll_s, cap_s=max(poll_s, AUDIT_RETRY_CAP_S))
        loop = asyncio.get_running_loop()
        retry_at = 0.0
        while True:
            await asyncio.sleep(poll_s)
            new = acl.reload_if_changed()
            if new is not None:
                if len(unaudited) == unaudited.maxlen:
                    log.error("audit log unavailable: an ACL reload record is dropped")
                detail = f"ACL version {new.version} picked up"
                unaudited.append(system_record("aclreload", detail))
            if not unaudited or loop.time() < retry_at:
                continue
            try:
                while unaudited:
                    self.audit.append_nowait(unaudited[0])
                    unaudited.popleft()
            except StreembitError as exc:
                delay = backoff.next()
                retry_at = loop.time() + delay
                log.warning("ACL reload not audited yet (%s); retrying in %.1f s", exc, delay)
            else:
                backoff.reset()
