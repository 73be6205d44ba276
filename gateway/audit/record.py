"""One audit record, its cleaned row form, and its line in the append journal.

A row is the record with every string cleaned (no control or other non-printable characters,
at most FIELD_CAP characters) and `allowed` as 0/1: what SQLite stores. A journal line is a
row prefixed with its sequence number and followed by a CRC-32 of everything before it:

    seq \\t ts \\t subject \\t binding \\t op \\t thing \\t affordance \\t allowed \\t rule \\t
    reason \\t detail \\t request_id \\t crc32-hex \\n

Cleaned strings hold no tab or newline (neither is printable), so no escaping is needed. A line
that is cut short (a crash in the middle of a write) or whose CRC does not match is refused by
`decode_line`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, TypeAlias

from gateway.errors import AuditError
from gateway.text import clean as clean_text

FIELD_CAP = 200  # characters kept of any string (most come from peers)
FIELDS = 11  # values in a row
LINE_FIELDS = FIELDS + 2  # seq + row + crc

Row: TypeAlias = tuple[float, str, str, str, str, str, int, str, str, str, str]


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One decision or system event: who, through which binding, what, allowed or not, why."""

    ts: float  # unix seconds
    subject: str
    binding: str
    op: str
    thing: str
    affordance: str
    allowed: bool
    rule: str
    reason: str
    detail: str = ""
    request_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (for `audit --json`)."""
        return dataclasses.asdict(self)


def clean(value: object, cap: int = FIELD_CAP) -> str:
    """VALUE as text without control / non-printable characters, at most CAP characters."""
    if type(value) is str and len(value) <= cap and value.isprintable():
        return value  # already clean (almost every field of every record): the hot path
    return clean_text(str(value), cap, mark="")


def to_row(rec: AuditRecord) -> Row:
    """REC cleaned for storage; AuditError if its timestamp is not a number."""
    try:
        ts = float(rec.ts)
    except (TypeError, ValueError):
        raise AuditError("audit record timestamp is not a number") from None
    if ts != ts or ts in (float("inf"), float("-inf")):
        raise AuditError("audit record timestamp is not a finite number")
    return (
        ts,
        clean(rec.subject),
        clean(rec.binding),
        clean(rec.op),
        clean(rec.thing),
        clean(rec.affordance),
        1 if rec.allowed else 0,
        clean(rec.rule),
        clean(rec.reason),
        clean(rec.detail),
        clean(rec.request_id),
    )


def from_row(row: tuple[Any, ...]) -> AuditRecord:
    """A stored row (in column order) as an AuditRecord."""
    return AuditRecord(
        ts=row[0],
        subject=row[1],
        binding=row[2],
        op=row[3],
        thing=row[4],
        affordance=row[5],
        allowed=bool(row[6]),
        rule=row[7],
        reason=row[8],
        detail=row[9],
        request_id=row[10],
    )


def encode_line(seq: int, row: Row) -> bytes:
    """The journal line of ROW with sequence number SEQ (UTF-8, newline-terminated)."""
    ts, subject, binding, op, thing, affordance, allowed, rule, reason, detail, rid = row
    body = (
        f"{seq}\t{ts!r}\t{subject}\t{binding}\t{op}\t{thing}\t{affordance}\t{allowed}\t"
        f"{rule}\t{reason}\t{detail}\t{rid}"
    ).encode()
    return b"%s\t%08x\n" % (body, zlib.crc32(body))


def decode_line(line: bytes) -> tuple[int, Row] | None:
    """(seq, row) of one journal line (without its newline); None if it is torn or corrupt."""
    body, sep, crc = line.rpartition(b"\t")
    if not sep or len(crc) != 8:
        return None
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        parts = body.decode().split("\t")
        if len(parts) != LINE_FIELDS - 1 or parts[7] not in ("0", "1"):
            return None
        seq = int(parts[0])
        ts = float(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    row: Row = (
        ts,
        parts[2],
        parts[3],
        parts[4],
        parts[5],
        parts[6],
        int(parts[7]),
        parts[8],
        parts[9],
        parts[10],
        parts[11],
    )
    return seq, row
