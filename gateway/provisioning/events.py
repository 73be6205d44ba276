"""Audit records of provisioning done locally (command line, reset button).

Network provisioning (claim, transfer) is audited by the P2P binding through the request path
(`RequestProcessor.admin`);
this is the same log, opened by a second process when the gateway runs (the log supports that).
Secrets (setup codes, keys, payload text) never go into a record.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path
from typing import Final

from gateway.audit import AUDIT_FILE, AuditLog, AuditRecord
from gateway.errors import AuditError
from gateway.requests.records import LOCAL, audit_record

log = logging.getLogger(__name__)

BINDING: Final = LOCAL


def local_subject() -> str:
    """`local:<user name>` of the process (who ran the command)."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f"local:{name}"


def record(
    op: str,
    *,
    allowed: bool,
    reason: str,
    detail: str = "",
    subject: str | None = None,
    affordance: str = "owner",
) -> AuditRecord:
    return audit_record(
        subject=subject or local_subject(),
        binding=BINDING,
        op=op,
        thing="",
        affordance=affordance,
        allowed=allowed,
        rule="local" if allowed else "",
        reason=reason,
        detail=detail,
    )


def audit_local(state_dir: Path, rec: AuditRecord, audit: AuditLog | None = None) -> bool:
    """Append REC to the state folder's audit log (or to AUDIT if the caller has it open).

    Returns False (and logs) if the record could not be written; never raises, so an audit
    problem never hides the error being reported. A missing state folder is not created."""
    if audit is not None:
        try:
            audit.append_nowait(rec)
            return True
        except AuditError as exc:
            log.error("could not audit %s: %s", rec.op, exc)
            return False
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return False
    try:
        opened = AuditLog.open(state_dir / AUDIT_FILE)
    except AuditError as exc:
        log.error("could not audit %s: %s", rec.op, exc)
        return False
    try:
        opened.append_nowait(rec)
    except AuditError as exc:
        log.error("could not audit %s: %s", rec.op, exc)
        return False
    finally:
        opened.close()  # commits what was queued
    return True
