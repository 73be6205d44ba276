"""Append-only audit log in SQLite (WAL) with group commit on a dedicated writer thread.

`await log.append(rec)` returns only once REC is committed (synchronous=FULL: durable
across power loss). Appends from many tasks are queued; the writer thread drains the
queue and commits each batch in ONE transaction, then resolves the waiting futures on
their event loops with ``call_soon_threadsafe``. The event loop never blocks on SQLite.
If a batch cannot be written, every append in it raises AuditError and the caller must
refuse the request it was recording.

The table is append-only: there is no update or delete API, and triggers abort any
UPDATE or DELETE issued through SQL. Every string is stripped of control and other
non-printable characters and capped before it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, TypeAlias

from gateway.errors import AuditError

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.sqlite3"  # the log's file name inside the gateway's state folder
SCHEMA_VERSION = 1  # bump with a migration when the table changes
FIELD_CAP = 200  # characters kept of any string (most come from peers)
MAX_BATCH = 1000  # records per transaction: bounds one commit's latency
GROUP_WINDOW_S = 0.001  # under load, gather records this long so one fsync covers many
MAX_PENDING = 20_000  # queued records; beyond this appends fail (and requests are refused)
BUSY_TIMEOUT_S = 5.0  # wait this long for another connection's lock before failing
DB_FILE_MODE = 0o600  # who did what and when is private to the gateway user
MIN_FREE_BYTES = 1024 * 1024  # below this much free space where the log lives, refuse requests
SPACE_CHECK_S = 1.0  # free space is measured at most this often (a statvfs each time)
RECOVER_RETRY_S = 1.0  # after a failed commit, a probe record is tried at most this often

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
_COLUMNS = "ts, subject, binding, op, thing, affordance, allowed, rule, reason, detail, request_id"
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * 11)})"  # noqa: S608


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
    text = value if isinstance(value, str) else str(value)
    text = text[: cap * 4]  # bound the filtering work before the exact cap
    if not text.isprintable():
        text = "".join(c for c in text if c.isprintable())
    return text[:cap]


def _row(rec: AuditRecord) -> tuple[Any, ...]:
    try:
        ts = float(rec.ts)
    except (TypeError, ValueError):
        raise AuditError("audit record timestamp is not a number") from None
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


_Waiter: TypeAlias = "tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None"
_STOP = object()  # queue sentinel: flush and end the writer thread


class AuditLog:
    """The append-only audit log. Create with `AuditLog.open(path)`; `close()` flushes."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._queue: queue.Queue[object] = queue.Queue()
        self._closed = False
        self._failed = False
        self.commits = 0  # transactions committed (group-commit effectiveness)
        self.records = 0  # records committed
        self.failures = 0  # batches that could not be committed
        self._space_checked = -SPACE_CHECK_S
        self._space_ok = True
        self._last_probe = -RECOVER_RETRY_S
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, path: Path) -> AuditLog:
        """Open (creating if needed) the log at PATH; AuditError if it cannot be used."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, DB_FILE_MODE)
            os.close(fd)
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"{path}: cannot open the audit log: {exc}") from None
        try:
            cls._prepare(conn)
        except (sqlite3.Error, AuditError) as exc:
            conn.close()
            raise AuditError(f"{path}: unusable audit log: {exc}") from None
        return cls(path, conn)

    @staticmethod
    def _prepare(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
            if not rows:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif max(r[0] for r in rows) > SCHEMA_VERSION:
                raise AuditError(
                    f"audit schema version {max(r[0] for r in rows)} is newer than this "
                    f"gateway's {SCHEMA_VERSION}"
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Commit everything queued, then stop the writer. Further appends raise AuditError."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()
        while True:  # an append that raced with close: fail it rather than leave it waiting
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple) and item[1] is not None:
                _resolve(item[1], AuditError("the audit log is closed"))

    @property
    def healthy(self) -> bool:
        """False once closed, while the last batch failed to commit, or while less than
        MIN_FREE_BYTES are free on its file system (a full disk is refused before it fails)."""
        return (
            not self._closed
            and not self._failed
            and self._thread.is_alive()
            and self.space_ok()
        )

    async def recover(self) -> bool:
        """After failed commits (a full disk, an I/O error): if there is space again, commit one
        system record saying so, at most every RECOVER_RETRY_S. True when the log accepts
        records again. Requests stay refused until then, so nothing is done unrecorded."""
        if self.healthy:
            return True
        if self._closed or not self._thread.is_alive() or not self.space_ok():
            return False
        now = time.monotonic()
        if now - self._last_probe < RECOVER_RETRY_S:
            return False
        self._last_probe = now
        probe = AuditRecord(
            ts=time.time(),
            subject="system",
            binding="local",
            op="auditrecovered",
            thing="",
            affordance="",
            allowed=True,
            rule="system",
            reason="ok",
            detail=f"audit log writable again after {self.failures} failed commits",
        )
        try:
            await self.append(probe)
        except AuditError:
            return False
        log.warning("audit log writable again after %d failed commits", self.failures)
        return self.healthy

    def free_bytes(self) -> int | None:
        """Bytes available to this process on the log's file system (None if unknown)."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def space_ok(self) -> bool:
        now = time.monotonic()
        if now - self._space_checked >= SPACE_CHECK_S:
            free = self.free_bytes()
            self._space_ok = free is None or free >= MIN_FREE_BYTES
            self._space_checked = now
        return self._space_ok

    # --------------------------------------------------------------------- writing
    async def append(self, rec: AuditRecord) -> None:
        """Queue REC and wait until it is committed; AuditError if it could not be."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._enqueue((_row(rec), (loop, fut)))
        await fut

    def append_nowait(self, rec: AuditRecord) -> None:
        """Queue a system event without waiting for its commit (failures are logged)."""
        self._enqueue((_row(rec), None))

    def _enqueue(self, item: tuple[tuple[Any, ...], _Waiter]) -> None:
        if self._closed:
            raise AuditError("the audit log is closed")
        if self._queue.qsize() >= MAX_PENDING:
            raise AuditError("the audit log is overloaded")
        self._queue.put(item)

    def _run(self) -> None:
        """Writer thread: block for one item, gather more (group commit), commit, resolve.

        Under load (the previous batch held more than one record) it keeps gathering for up to
        GROUP_WINDOW_S, so one fsync covers many decisions; a lone request is committed at once.
        """
        stopping = False
        last_batch = 0
        while not stopping:
            batch: list[tuple[tuple[Any, ...], _Waiter]] = []
            item = self._queue.get()
            deadline = time.monotonic() + (GROUP_WINDOW_S if last_batch > 1 else 0.0)
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
            last_batch = len(batch)
            if batch:
                self._commit(batch)
            if stopping:  # anything queued behind the stop sentinel is failed by close()
                break

    def _commit(self, batch: list[tuple[tuple[Any, ...], _Waiter]]) -> None:
        error: AuditError | None = None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_INSERT, [row for row, _ in batch])
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # any failure must reach the waiters, never kill the thread
            error = AuditError(f"audit write failed: {exc}")
            log.error("audit write of %d records failed: %s", len(batch), exc)
        self._failed = error is not None
        if error is not None:
            self.failures += 1
            self._space_checked = -SPACE_CHECK_S  # measure again before the next request
        if error is None:
            self.commits += 1
            self.records += len(batch)
        _resolve_all([w for _, w in batch if w is not None], error)

    # --------------------------------------------------------------------- reading
    def query(
        self, limit: int = 100, subject: str | None = None, allowed: bool | None = None
    ) -> list[AuditRecord]:
        """The newest LIMIT records, optionally for one SUBJECT and/or one outcome."""
        where: list[str] = []
        args: list[Any] = []
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if allowed is not None:
            where.append("allowed = ?")
            args.append(1 if allowed else 0)
        sql = f"SELECT {_COLUMNS} FROM audit"  # noqa: S608 constant columns, bound values
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, int(limit)))
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)) as conn:
                rows = conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AuditError(f"{self.path}: cannot read the audit log: {exc}") from None
        return [
            AuditRecord(
                ts=r[0],
                subject=r[1],
                binding=r[2],
                op=r[3],
                thing=r[4],
                affordance=r[5],
                allowed=bool(r[6]),
                rule=r[7],
                reason=r[8],
                detail=r[9],
                request_id=r[10],
            )
            for r in rows
        ]


def _resolve_all(
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]],
    error: Exception | None,
) -> None:
    """Settle a batch's futures with ONE wake-up per event loop (not one per record)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for loop, fut in waiters:
        by_loop.setdefault(loop, []).append(fut)
    for loop, futs in by_loop.items():

        def settle(futs: list[asyncio.Future[None]] = futs) -> None:
            for fut in futs:
                if fut.done():  # the waiting task was cancelled
                    continue
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(settle)


def _resolve(
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]], error: Exception | None
) -> None:
    """Settle one append's future on its own event loop."""
    loop, fut = waiter

    def settle() -> None:
        if fut.done():  # the waiting task was cancelled
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)

    with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
        loop.call_soon_threadsafe(settle)
