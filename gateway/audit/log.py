"""Append-only audit log: a durable append journal, imported into SQLite in batches.

`await log.append(rec)` returns only once REC is durable (fdatasync'd in the journal, see
gateway/audit/journal.py). On the event loop an append is one small `os.write` of one line
(about 1 µs); a group of appends is made durable by ONE `fdatasync` on the `audit-fsync` thread
(gateway/audit/groupsync.py), whose answer comes back through a pipe the loop watches, and the
group's futures are then resolved on the loop. Durable records go on to the `audit-import`
thread, which stores them in SQLite in batches (one transaction per IMPORT_WINDOW_S under load);
once SQLite durably holds every line and the journal is ROTATE_BYTES long, it is emptied.
At open, journal lines that SQLite does not hold yet (a crash between the two) are imported;
their sequence numbers (one per record, strictly increasing, stored as `seq`) make this
idempotent, and a torn last line is cut off.

If a record cannot be written or synced, its append raises AuditError and the caller must
refuse the request it was recording; the log stays unhealthy until a later record is durable
(`recover`). A failing SQLite import loses nothing (the records stay in the journal and are
retried); appends fail only once MAX_PENDING records wait for it. Records that are durable but
not imported yet are shown by `query` from the journal, so readers in any process see them.

Stored records are hash-chained (chain.py). The owner, given the gateway key (`signer`), signs
a checkpoint of the chain head (checkpoint.py) at least every CHECKPOINT_S while records are
added, and at every clean close, into the checkpoints file beside the database.

Only one open log owns the journal (an exclusive flock). Any other open of the same log (the
`audit` CLI while the gateway runs) reads it, and writes its few records straight to SQLite
(without a sequence number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import TypeAlias

from gateway.audit import checkpoint
from gateway.audit.groupsync import GroupSync
from gateway.audit.journal import Entry, Journal, journal_path, read_entries
from gateway.audit.record import AuditRecord, Row, encode_line, from_row, to_row
from gateway.audit.store import Store, read_rows
from gateway.errors import AuditError
from gateway.identity import KeyPair

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.sqlite3"  # the log's file name inside the gateway's state folder
IMPORT_WINDOW_S = 0.05  # the importer gathers durable records this long per SQLite transaction
MAX_IMPORT_BATCH = 2000  # records per SQLite transaction: bounds one import's duration
MAX_PENDING = 20_000  # written but not yet in SQLite; beyond this appends fail (fail closed)
ROTATE_BYTES = 1 << 20  # the journal is emptied once SQLite holds it all and it is this big
MIN_FREE_BYTES = 1024 * 1024  # below this much free space where the log lives, refuse requests
SPACE_CHECK_S = 1.0  # free space is measured at most this often (a statvfs each time)
RECOVER_RETRY_S = 1.0  # after a failure, a probe record / an import is tried at most this often
CHECKPOINT_S = 60.0  # a new chain head is signed at most this long after it was stored

_Pending: TypeAlias = "tuple[int, Row, asyncio.Future[None] | None]"
_STOP = None  # queue sentinel: finish and end the thread


class AuditLog:
    """The append-only audit log. Create with `AuditLog.open(path)`; `close()` flushes."""

    def __init__(
        self,
        path: Path,
        store: Store,
        journal: Journal | None,
        last_seq: int,
        imported: int,
        signer: KeyPair | None = None,
    ) -> None:
        self.path = path
        self._signer = signer if journal is not None else None  # only the owner signs
        self._signed: tuple[int, int, bytes] | None = None  # the head of the last checkpoint
        self._signed_at = time.monotonic()
        self.checkpoint_failures = 0
        self._store = store
        self._journal = journal
        self._lock = threading.Lock()  # seq, journal writes, _pending, rotation
        self._seq = last_seq + 1  # the next record's sequence number
        self._imported = imported  # every seq up to this is in SQLite (or was never durable)
        self._fail_mark = 0  # healthy again once a record with seq >= this is durable
        self._closed = False
        self._failed = False
        self._direct: list[Row] = []  # append_nowait rows of a non-owner, stored at close
        self.commits = 0  # fdatasync batches (group-commit effectiveness)
        self.records = 0  # records made durable
        self.failures = 0  # writes or syncs that failed
        self.imports = 0  # SQLite import transactions
        self.skipped = 0  # journal lines that did not decode at open
        self._space_checked = -SPACE_CHECK_S
        self._space_ok = True
        self._last_probe = -RECOVER_RETRY_S
        self._importq: queue.SimpleQueue[list[Entry] | None] = queue.SimpleQueue()
        self._backlog: list[Entry] = []  # durable entries the importer has not stored yet
        self._sync: GroupSync[_Pending] | None = None
        self._importer: threading.Thread | None = None
        if journal is not None:
            self._sync = GroupSync(journal, self._settle)
            self._importer = threading.Thread(
                target=self._import_run, name="audit-import", daemon=True
            )
            self._importer.start()

    # ------------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, path: Path, signer: KeyPair | None = None) -> AuditLog:
        """Open (creating if needed) the log at PATH; AuditError if it cannot be used.

        The owner imports the journal lines SQLite lacks (after a crash) before returning.
        With SIGNER (the gateway key) the owner signs checkpoints of the chain head."""
        path = Path(path)
        store = Store.open(path)
        try:
            journal = Journal.acquire(journal_path(path))
        except OSError as exc:
            store.close()
            raise AuditError(f"{path}: cannot open the audit journal: {exc}") from None
        try:
            last = store.max_seq()
            if journal is None:
                return cls(path, store, None, last, last, signer)
            entries, skipped = journal.recover()
        except Exception as exc:
            if journal is not None:
                journal.close()
            store.close()
            raise AuditError(f"{path}: unusable audit log: {exc}") from None
        missing = [e for e in entries if e[0] > last]
        top = max(last, entries[-1][0] if entries else 0)
        audit = cls(path, store, journal, top, last, signer)
        audit.skipped = skipped
        if skipped:
            log.error("%s: %d audit journal lines did not decode", journal.path, skipped)
        if missing:
            log.warning("importing %d audit records left in the journal", len(missing))
            audit._importq.put(missing)
        elif journal.size:
            with audit._lock:
                audit._rotate_locked(force=True)
        return audit

    def close(self) -> None:
        """Make everything appended durable and store it in SQLite, then stop the threads.
        Further appends raise AuditError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._journal is not None and self._sync is not None and self._importer is not None:
            self._sync.close()  # syncs what is queued; its records go to the importer
            self._importq.put(_STOP)
            self._importer.join()
            self._checkpoint(force=True)  # every clean stop: sign the final head
            with self._lock:
                self._rotate_locked(force=True)
            self._journal.close()
        elif self._direct:
            try:
                self._store.insert(self._direct)
            except Exception as exc:  # reported, never raised from close
                log.error("audit write of %d records failed: %s", len(self._direct), exc)
        self._store.close()

    @property
    def healthy(self) -> bool:
        """False once closed, while the last write or sync failed, while SQLite lags too far
        behind, or while less than MIN_FREE_BYTES are free on its file system."""
        return (
            not self._closed
            and not self._failed
            and self._threads_alive()
            and self._seq - self._imported <= MAX_PENDING
            and self.space_ok()
        )

    async def recover(self) -> bool:
        """After failures (a full disk, an I/O error): if there is space again, append one
        system record saying so, at most every RECOVER_RETRY_S. True when the log accepts
        records again. Requests stay refused until then, so nothing is done unrecorded."""
        if self.healthy:
            return True
        if self._closed or not self._threads_alive():
            return False
        if not self.space_ok():
            return False
        now = time.monotonic()
        if now - self._last_probe < RECOVER_RETRY_S:
            return False
        self._last_probe = now
        from gateway.requests.records import system_record  # records imports this package

        probe = system_record(
            "auditrecovered", f"audit log writable again after {self.failures} failed commits"
        )
        try:
            await self.append(probe)
        except AuditError:
            return False
        log.warning("audit log writable again after %d failed commits", self.failures)
        return self.healthy

    def _threads_alive(self) -> bool:
        if self._sync is None or self._importer is None:
            return True  # not the owner: no threads
        return self._sync.alive() and self._importer.is_alive()

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
        """Append REC and wait until it is durable; AuditError if it could not be made so."""
        row = to_row(rec)
        if self._journal is None:
            if self._closed:
                raise AuditError("the audit log is closed")
            await asyncio.to_thread(self._insert_direct, [row])
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write(self._journal, row, fut)
        await fut

    def append_nowait(self, rec: AuditRecord) -> None:
        """Append a system event without waiting until it is durable (failures are logged)."""
        row = to_row(rec)
        if self._journal is None:
            with self._lock:
                if self._closed:
                    raise AuditError("the audit log is closed")
                self._direct.append(row)
            return
        self._write(self._journal, row, None)

    def _insert_direct(self, rows: list[Row]) -> None:
        try:
            with self._lock:  # one user of the connection at a time
                if self._closed:
                    raise AuditError("the audit log is closed")
                self._store.insert(rows)
        except Exception as exc:
            self._failed = True
            self.failures += 1
            raise AuditError(f"audit write failed: {exc}") from None
        self._failed = False
        self.records += len(rows)

    def _write(self, journal: Journal, row: Row, waiter: asyncio.Future[None] | None) -> None:
        sync = self._sync
        if sync is None:
            raise AuditError("the audit log is not the journal's owner")
        with self._lock:
            if self._closed:
                raise AuditError("the audit log is closed")
            if self._seq - self._imported > MAX_PENDING:
                raise AuditError("the audit log is overloaded")
            seq = self._seq
            try:
                journal.write(encode_line(seq, row))
            except AuditError as exc:
                self._fail_locked(exc, 1)
                raise
            self._seq = seq + 1
            inline = sync.add((seq, row, waiter))  # under the lock: groups keep seq order
        if inline:
            sync.sync_inline()

    def _fail_locked(self, exc: Exception, count: int) -> None:
        self._failed = True
        self._fail_mark = self._seq
        self.failures += 1
        self._space_checked = -SPACE_CHECK_S  # measure again before the next request
        log.error("audit write of %d records failed: %s", count, exc)

    def _settle(self, group: list[_Pending], error: OSError | None) -> None:
        """A group is durable (or its sync failed): count it, import it, wake its waiters."""
        failure = None if error is None else AuditError(f"audit write failed: {error}")
        with self._lock:
            if failure is not None:
                self._fail_locked(failure, len(group))
            else:
                self.commits += 1
                self.records += len(group)
                if self._failed and group[-1][0] >= self._fail_mark:
                    self._failed = False
        if failure is None:
            self._importq.put([(seq, row) for seq, row, _ in group])
        _resolve_all([w for _, _, w in group if w is not None], failure)

    # --------------------------------------------------------------------- importing
    def _import_run(self) -> None:
        """audit-import thread: gather durable records, store them in SQLite in one transaction;
        on failure keep them (they are durable in the journal) and retry later."""
        stopping = False
        while not stopping:
            wait: float | None = RECOVER_RETRY_S if self._backlog else None
            if self._signer is not None:
                due = max(0.0, self._signed_at + CHECKPOINT_S - time.monotonic())
                wait = due if wait is None else min(wait, due)
            try:
                items = [self._importq.get(timeout=wait)]
            except queue.Empty:
                items = []
            if items and items[0] is not _STOP:
                time.sleep(IMPORT_WINDOW_S)  # one wake-up per window, not one per durable batch
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(self._importq.get_nowait())
            for item in items:
                if item is _STOP:
                    stopping = True
                else:
                    self._backlog.extend(item)
            while self._backlog:
                batch = self._backlog[:MAX_IMPORT_BATCH]
                if not self._import(batch):
                    break
                del self._backlog[: len(batch)]
            if self._signer is not None and time.monotonic() - self._signed_at >= CHECKPOINT_S:
                self._checkpoint()

    def _checkpoint(self, *, force: bool = False) -> None:
        """Sign the chain head if it moved since the last checkpoint (always when FORCE) and
        append it to the checkpoints file. Failures are logged (the chain itself is intact)."""
        signer = self._signer
        if signer is None:
            return
        self._signed_at = time.monotonic()
        try:
            head = self._store.head()
            if head == self._signed and not force:
                return
            cp = checkpoint.sign(signer, *head)
            checkpoint.append(checkpoint.checkpoints_path(self.path), cp)
        except Exception as exc:
            self.checkpoint_failures += 1
            log.error("audit checkpoint failed: %s", exc)
            return
        self._signed = head

    def latest_checkpoint(self) -> str | None:
        """The newest signed checkpoint (compact JWS, as stored), None if there is none."""
        return checkpoint.latest(checkpoint.checkpoints_path(self.path))

    def _import(self, batch: list[Entry]) -> bool:
        batch = [e for e in batch if e[0] > self._imported]  # already there (recovered twice)
        if not batch:
            return True
        try:
            self._store.import_entries(batch)
        except Exception as exc:  # kept in the journal, retried
            log.error("audit import of %d records into SQLite failed: %s", len(batch), exc)
            return False
        with self._lock:
            self.imports += 1
            self._imported = batch[-1][0]
            self._rotate_locked()
        return True

    def _rotate_locked(self, *, force: bool = False) -> None:
        """Empty the journal once SQLite durably holds every line written to it."""
        journal = self._journal
        if journal is None or journal.fd < 0 or self._imported != self._seq - 1:
            return
        if journal.size and (force or journal.size >= ROTATE_BYTES):
            try:
                journal.reset()
            except OSError as exc:
                log.error("cannot empty the audit journal: %s", exc)

    # --------------------------------------------------------------------- reading
    def query(
        self, limit: int = 100, subject: str | None = None, allowed: bool | None = None
    ) -> list[AuditRecord]:
        """The newest LIMIT records, optionally for one SUBJECT and/or one outcome: those in
        SQLite and the durable ones still only in the journal."""
        tail = read_entries(journal_path(self.path))  # first: an import meanwhile is in SQLite
        top, rows = read_rows(self.path, limit, subject, allowed)
        newer = [
            row
            for seq, row in reversed(tail)
            if seq > top
            and (subject is None or row[1] == subject)
            and (allowed is None or row[6] == (1 if allowed else 0))
        ]
        return [from_row(r) for r in (newer + rows)[: max(0, int(limit))]]


def _resolve_all(waiters: list[asyncio.Future[None]], error: Exception | None) -> None:
    """Settle a group's futures: directly on their own loop's thread, else with ONE wake-up per
    event loop (not one per record)."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for fut in waiters:
        by_loop.setdefault(fut.get_loop(), []).append(fut)
    for loop, futs in by_loop.items():
        if loop is running:
            _settle_futures(futs, error)
            continue
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(_settle_futures, futs, error)


def _settle_futures(futs: list[asyncio.Future[None]], error: Exception | None) -> None:
    for fut in futs:
        if fut.done():  # the waiting task was cancelled
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
