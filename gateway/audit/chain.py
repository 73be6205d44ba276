"""The audit hash chain: every stored record carries the hash of the one before it.

    hash(record) = SHA-256(prev || canonical(id, seq, row))        prev of the first: 32 zeros

`canonical` is the record's position (`id`, the SQLite row id), its journal sequence number
(empty for a row written by a process that does not own the journal) and the cleaned row, as
UTF-8, tab-separated, in column order (the same field text as a journal line, docs/audit.md).
Rows are chained in `id` order by whoever stores them, inside the storing transaction, so the
journal owner's imports and a second process's direct inserts form ONE chain.
"""

from __future__ import annotations

import hashlib

from gateway.audit.record import Row

GENESIS = bytes(32)  # `prev` of the first record
HASH_BYTES = 32


def canonical(rid: int, seq: int | None, row: Row) -> bytes:
    """The bytes hashed for the record at row id RID with journal sequence SEQ (or None)."""
    ts, subject, binding, op, thing, affordance, allowed, rule, reason, detail, request_id = row
    return (
        f"{rid}\t{'' if seq is None else seq}\t{ts!r}\t{subject}\t{binding}\t{op}\t{thing}\t"
        f"{affordance}\t{allowed}\t{rule}\t{reason}\t{detail}\t{request_id}"
    ).encode()


def link(prev: bytes, rid: int, seq: int | None, row: Row) -> bytes:
    """The hash of the record (RID, SEQ, ROW) following the record whose hash is PREV."""
    return hashlib.sha256(prev + canonical(rid, seq, row)).digest()
