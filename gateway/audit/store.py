"""The audit log's SQLite table: schema, migration, batched import, direct insert, reads.

The table is append-only: triggers abort any UPDATE or DELETE issued through SQL. Rows that came
through the journal carry its sequence number (`seq`, unique); rows written directly by a
process that does not own the journal (a CLI while the gateway runs) have none.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.audit.record import Row
from gateway.errors import AuditError

SCHEMA_VERSION = 2  # 2: the journal's sequence number (`seq`); bump with a migration
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
COLUMNS = "ts, subject, binding, op, thing, affordance, allowed, rule, reason, detail, request_id"
_INSERT_SEQ = f"INSERT INTO audit (seq, {COLUMNS}) VALUES ({', '.join('?' * 12)})"  # noqa: S608
_INSERT = f"INSERT INTO audit ({COLUMNS}) VALUES ({', '.join('?' * 11)})"  # noqa: S608


class Store:
    """One connection to the audit database (thread-agnostic: one user at a time)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

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

    def import_entries(self, entries: Sequence[tuple[int, Row]]) -> None:
        """Store journal ENTRIES in ONE durable transaction (sqlite3.Error if not)."""
        self._transaction(_INSERT_SEQ, [(seq, *row) for seq, row in entries])

    def insert(self, rows: Sequence[Row]) -> None:
        """Store ROWS without a sequence number (a process that does not own the journal)."""
        self._transaction(_INSERT, rows)

    def _transaction(self, sql: str, params: Sequence[tuple[Any, ...]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, params)
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
        if version < SCHEMA_VERSION:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


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
