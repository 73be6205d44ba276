"""The audit hash chain over the network (docs/audit.md §6, docs/protocol.md): a page of stored
records for the owner (gateway side, `read_page`) and its checked parsing (peer side,
`parse_page`), so that `streembit-peer audit verify` can run the same chain walk as the local
`audit verify` (gateway/audit/verify.py `ChainWalk`).

A page answers {"after": AFTER, "limit": LIMIT} (both optional) with

    {"columns": [...WIRE_COLUMNS], "records": [[id, seq, ts, subject, ..., prev, hash], ...],
     "last": LAST, "more": MORE}

the records with row id > AFTER in id order, at most LIMIT (<= MAX_PAGE_RECORDS) and at most
PAGE_BYTES of JSON (so the sealed reply stays under the 64 KiB message limit; one record always
fits); LAST is the highest row id at the time of the read, MORE whether records after the page
existed then. Values are sent as stored (`prev`/`hash` as lower-case hex, null when missing), so
the peer recomputes exactly the hashes the gateway's own `audit verify` does; a value JSON cannot
carry (a non-finite number, a blob: never written by the gateway) is sent as its text, and then
no longer fits its hash.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from pathlib import Path
from typing import Any, Final, cast

from gateway.audit.record import Row
from gateway.audit.store import COLUMNS
from gateway.audit.verify import CHAIN_SELECT, ChainRecord, chain_record, read_only
from gateway.errors import AuditError
from gateway.messages.claims import MAX_AUDIT_PAGE

WIRE_COLUMNS: Final = ("id", "seq", *COLUMNS.split(", "), "prev", "hash")
MAX_PAGE_RECORDS: Final = MAX_AUDIT_PAGE  # the cap of `limit` (docs/protocol.md); larger is refused
PAGE_BYTES: Final = 30_000  # JSON of a page's records: ~1.8x that once sealed, < 64 KiB
MAX_HASH_HEX: Final = 128  # a stored prev/hash longer than this is cut (it does not fit anyway)
_SCALARS: Final = (str, int, float, type(None))


def _wire_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, _SCALARS):
        return value
    return str(value)


def _wire_hash(value: bytes | None) -> str | None:
    return None if value is None else value[: MAX_HASH_HEX // 2].hex()


def to_wire(rec: ChainRecord) -> list[Any]:
    """REC as one row of a page (WIRE_COLUMNS order)."""
    return [
        _wire_value(rec.id),
        _wire_value(rec.seq),
        *(_wire_value(v) for v in rec.row),
        _wire_hash(rec.prev),
        _wire_hash(rec.hash),
    ]


def read_page(db_path: Path, after: int, limit: int) -> dict[str, Any]:
    """The page of records after row id AFTER (blocking: run it in a worker thread)."""
    limit = max(1, min(int(limit), MAX_PAGE_RECORDS))
    try:
        with read_only(db_path) as conn:
            conn.execute("BEGIN")
            top = conn.execute("SELECT max(id) FROM audit").fetchone()[0]
            sql = CHAIN_SELECT + " WHERE id > ? ORDER BY id LIMIT ?"
            rows = conn.execute(sql, (int(after), limit + 1)).fetchall()
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise AuditError(f"cannot read the audit log: {exc}") from None
    records: list[list[Any]] = []
    size = 0
    for row in rows[:limit]:
        item = to_wire(chain_record(row))
        n = len(json.dumps(item, ensure_ascii=False).encode()) + 1
        if records and size + n > PAGE_BYTES:
            break
        records.append(item)
        size += n
    return {
        "columns": list(WIRE_COLUMNS),
        "records": records,
        "last": int(top or 0),
        "more": len(records) < len(rows),
    }


@dataclasses.dataclass(frozen=True)
class Page:
    records: list[ChainRecord]
    last: int  # the highest row id when the gateway read the page
    more: bool


def _bad(why: str) -> AuditError:
    return AuditError(f"the gateway's audit page is malformed: {why}", code="bad_reply")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hash(value: Any, what: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_HASH_HEX:
        raise _bad(f"{what} is not a hex hash")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _bad(f"{what} is not a hex hash") from None


def from_wire(item: Any) -> ChainRecord:
    """One row of a page as a ChainRecord; AuditError (`bad_reply`) if it is malformed."""
    if not isinstance(item, list) or len(item) != len(WIRE_COLUMNS):
        raise _bad(f"a record is not a list of {len(WIRE_COLUMNS)} values")
    rid, seq, *row, prev, digest = item
    if not _is_int(rid) or rid < 1:
        raise _bad("a record id is not a positive integer")
    if seq is not None and not _is_int(seq):
        raise _bad(f"record {rid}: seq is not an integer")
    if not all(isinstance(v, _SCALARS) for v in row):
        raise _bad(f"record {rid}: a field is not a string or a number")
    return ChainRecord(rid, seq, cast(Row, tuple(row)), _hash(prev, "prev"), _hash(digest, "hash"))


def parse_page(output: Any, after: int) -> Page:
    """The page a gateway answered to {"after": AFTER}: shape, columns, and row ids above AFTER
    and increasing (so paging always moves on); AuditError (`bad_reply`) if not."""
    if not isinstance(output, dict):
        raise _bad("not an object")
    if output.get("columns") != list(WIRE_COLUMNS):
        raise _bad(f"columns are not {', '.join(WIRE_COLUMNS)}")
    items, last, more = output.get("records"), output.get("last"), output.get("more")
    if not isinstance(items, list) or not _is_int(last) or not isinstance(more, bool):
        raise _bad("records, last or more missing")
    records = [from_wire(x) for x in items]
    prev_id = after
    for rec in records:
        if rec.id <= prev_id:
            raise _bad(f"record {rec.id} is out of order (after {prev_id})")
        prev_id = rec.id
    if more and not records:
        raise _bad("no records, but more")
    return Page(records, cast(int, last), more)
