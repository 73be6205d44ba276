"""The append-only audit log of every access decision and system event."""

from gateway.audit.log import AUDIT_FILE, AuditLog
from gateway.audit.record import FIELD_CAP, AuditRecord, clean

__all__ = ["AUDIT_FILE", "FIELD_CAP", "AuditLog", "AuditRecord", "clean"]
