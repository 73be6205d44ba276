"""The audit log's SQLite table: schema, migration, batched import, direct insert, reads.

The table is append-only: triggers abort any UPDATE or DELETE issued through SQL. Rows that came
through the journal carry its sequence number (`seq`, unique); rows written directly by a
process that does not own the journal (a CLI while the gateway runs) have none.

Every row is hash-chained (gateway/audit/chain.py): `prev` is the hash of the row before it (in
`id` order), `hash` its own. Both writers chain inside their `BEGIN IMMEDIATE` transaction
(reading the last row's id and hash there), so they form one chain. Migration 2 -> 3 adds the
columns and chains the rows that exist at that moment.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.audit.chain import GENESIS, link
from gateway.audit.record import Row
from gateway.errors import AuditError

SCHEMA_VERSION = 3  # 2: journal sequence number `seq`; 3: hash chain `prev`, `hash`
BUSY_TIMEOUT_S = 5.0  # wait this long for another connection's lock before failing
DB_FILE_MODE = 0o600  # who did what and when is private to the gateway user
CACHE_KIB = 256  # page cache of the writing connection (SQLite's default is 2000 KiB)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    subject TEXT NOT NULL,
    binding TEXT NOT NULL,
    op TEXT NOT NULL,
    thing TEXT NOT NULL,
    affordance TEXT NOT NULL,
    allowed INTEGER NOT NULL CHECK (allowed IN (0, 1)),
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit (subject, id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS schema_version_no_delete BEFORE DELETE ON schema_version
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""
_MIGRATE_2 = """
ALTER TABLE audit ADD COLUMN seq INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS audit_by_seq ON audit (seq);
"""
_MIGRATE_3 = """
ALTER TABLE audit ADD COLUMN prev BLOB;
ALTER TABLE audit ADD COLUMN hash BLOB
"""
_NO_UPDATE = """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"""
COLUMNS = "ts, subject, binding, op, thing, affordance, allowed, rule, reason, detail, request_id"
_INSERT = (
    f"INSERT INTO audit (id, seq, {COLUMNS}, prev, hash) "  # noqa: S608 constant columns
    f"VALUES ({', '.join('?' * 15)})"
)
_LAST = "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
Head = tuple[int, int, bytes]  # (row id of the last record, records, its hash)


class Store:
    """One connection to the audit database (thread-agnostic: one user at a time)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self.chain = True  # False only to measure the chain's cost (bench/bench_audit.py)

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating and migrating if needed) the database at PATH; AuditError if not."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, DB_FILE_MODE))
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"{path}: cannot open the audit log: {exc}") from None
        try:
            _prepare(conn)
        except (sqlite3.Error, AuditError) as exc:
            conn.close()
            raise AuditError(f"{path}: unusable audit log: {exc}") from None
        return cls(path, conn)

    def max_seq(self) -> int:
        """The highest journal sequence number stored (0 when none)."""
        row = self._conn.execute("SELECT max(seq) FROM audit").fetchone()
        return int(row[0] or 0)

    def head(self) -> Head:
        """(row id of the last record, number of records, its chain hash); (0, 0, GENESIS)."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            last = conn.execute(_LAST).fetchone()
            count = int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])
        finally:
            conn.execute("COMMIT")
        if last is None:
            return 0, 0, GENESIS
        return int(last[0]), count, bytes(last[1] or b"")

    def import_entries(self, entries: Sequence[tuple[int, Row]]) -> None:
        """Store journal ENTRIES in ONE durable transaction (sqlite3.Error if not)."""
        self._transaction(entries)

    def insert(self, rows: Sequence[Row]) -> None:
        """Store ROWS without a sequence number (a process that does not own the journal)."""
        self._transaction([(None, row) for row in rows])

    def _transaction(self, entries: Sequence[tuple[int | None, Row]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute(_LAST).fetchone()
            rid, prev = (0, GENESIS) if last is None else (int(last[0]), bytes(last[1] or b""))
            params: list[tuple[Any, ...]] = []
            chain = self.chain
            for seq, row in entries:
                rid += 1
                digest = link(prev, rid, seq, row) if chain else None
                params.append((rid, seq, *row, prev if chain else None, digest))
                prev = digest or b""
            conn.executemany(_INSERT, params)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the journal is emptied only after a durable import
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # appends touch few pages; RSS matters
    conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        version = max((r[0] for r in rows), default=0)
        if version > SCHEMA_VERSION:
            raise AuditError(
                f"audit schema version {version} is newer than this gateway's {SCHEMA_VERSION}"
            )
        columns = {r[1] for r in conn.execute("PRAGMA table_info(audit)")}
        if "seq" not in columns:
            for stmt in _MIGRATE_2.strip().split(";\n"):
                conn.execute(stmt)
        if "hash" not in columns:
            for stmt in _MIGRATE_3.strip().split(";\n"):
                conn.execute(stmt)
            _chain_existing(conn)
        if version < SCHEMA_VERSION:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _chain_existing(conn: sqlite3.Connection) -> None:
    """Migration 2 -> 3: chain every row present now, in id order (inside its transaction)."""
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    prev = GENESIS
    rows = conn.execute(f"SELECT id, seq, {COLUMNS} FROM audit ORDER BY id").fetchall()  # noqa: S608
    updates = []
    for rid, seq, *rest in rows:
        digest = link(prev, rid, seq, tuple(rest))
        updates.append((prev, digest, rid))
        prev = digest
    conn.executemany("UPDATE audit SET prev = ?, hash = ? WHERE id = ?", updates)
    conn.execute(_NO_UPDATE)


def read_rows(
    path: Path, limit: int, subject: str | None, allowed: bool | None
) -> tuple[int, list[tuple[Any, ...]]]:
    """(the highest seq stored, the newest LIMIT rows matching), from one consistent snapshot."""
    where: list[str] = []
    args: list[Any] = []
    if subject is not None:
        where.append("subject = ?")
        args.append(subject)
    if allowed is not None:
        where.append("allowed = ?")
        args.append(1 if allowed else 0)
    sql = f"SELECT {COLUMNS} FROM audit"  # noqa: S608 constant columns, bound values
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(max(0, int(limit)))
    try:
        with contextlib.closing(
            sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        ) as conn:
            conn.execute("BEGIN")
            top = conn.execute("SELECT max(seq) FROM audit").fetchone()[0]
            rows = conn.execute(sql, args).fetchall()
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot read the audit log: {exc}") from None
    return int(top or 0), rows
