"""The append-only audit log of every access decision and system event."""

from gateway.audit.log import AUDIT_FILE, FIELD_CAP, AuditLog, AuditRecord, clean

__all__ = ["AUDIT_FILE", "FIELD_CAP", "AuditLog", "AuditRecord", "clean"]
