"""The audit journal: crash recovery (kill -9 between the journal write and the SQLite import),
a torn last line, a full disk (a file size limit) while writing the journal, sequence numbers.

Each writer runs in a real child process so that it can be killed or limited without touching
the test process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.audit import AUDIT_FILE, AuditLog
from gateway.audit.journal import journal_path, read_entries

CHILD_TIMEOUT_S = 30.0  # a child appends a few records; generous for a loaded CI machine
ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import asyncio, json, os, resource, signal, sys, time
from pathlib import Path
from gateway.audit import AuditLog, AuditRecord
from gateway.errors import AuditError

def rec(i, subject="alice"):
    return AuditRecord(ts=1700000000.0 + i, subject=subject, binding="http", op="readproperty",
                       thing="living-room", affordance="temperature", allowed=True,
                       rule="grant:x#0", reason="ok", request_id=f"req-{i}")
path = Path(sys.argv[1])
"""


def _child(code: str, db: Path) -> subprocess.Popen[str]:
    script = _PRELUDE + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _sqlite_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM audit ORDER BY id")]


def _killed_before_import(db: Path, n: int) -> None:
    """A child makes N records durable, is stopped from importing them, and is killed -9."""
    child = _child(
        f"""
        from gateway.audit.store import Store
        Store.import_entries = lambda self, entries: time.sleep(3600)  # stuck: never imports
        async def main():
            log = AuditLog.open(path)
            await asyncio.gather(*(log.append(rec(i)) for i in range(1, {n} + 1)))
            print("durable", flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
        """,
        db,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "durable", child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=CHILD_TIMEOUT_S)
    assert child.returncode == -signal.SIGKILL


def test_kill_9_between_journal_write_and_import_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / AUDIT_FILE
    _killed_before_import(db, 25)
    assert _sqlite_ids(db) == []  # the crash came before the import...
    assert [seq for seq, _ in read_entries(journal_path(db))] == list(range(1, 26))  # ...not here

    log = AuditLog.open(db)  # recovery: the journal's lines go to SQLite
    try:
        got = [r.request_id for r in log.query(limit=100)]
        assert got == [f"req-{i}" for i in range(25, 0, -1)]
    finally:
        log.close()
    assert _sqlite_ids(db) == [f"req-{i}" for i in range(1, 26)]
    assert journal_path(db).stat().st_size == 0  # emptied once SQLite holds it all
    AuditLog.open(db).close()  # recovering again is harmless
    assert len(_sqlite_ids(db)) == 25


def test_torn_last_line_is_cut_off_and_numbering_continues(tmp_path: Path) -> None:
    db = tmp_path / AUDIT_FILE
    _killed_before_import(db, 3)
    jpath = journal_path(db)
    whole = jpath.read_bytes()
    with jpath.open("ab") as fh:  # a crash in the middle of writing record 4
        fh.write(b"4\t1700000004.0\talice\thttp\treadprop")
    log = AuditLog.open(db)
    try:
        assert [r.request_id for r in log.query()] == ["req-3", "req-2", "req-1"]
        assert jpath.stat().st_size in (0, len(whole))  # the torn bytes are gone
    finally:
        log.close()
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM audit ORDER BY id")] == [1, 2, 3]
    import asyncio

    from tests.test_audit import rec

    async def one_more() -> None:
        again = AuditLog.open(db)
        try:
            await again.append(rec(9))
        finally:
            again.close()

    asyncio.run(one_more())
    with sqlite3.connect(db) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM audit ORDER BY id")]
    assert seqs == [1, 2, 3, 4]  # strictly increasing, no reuse


def test_corrupt_line_in_the_middle_is_skipped_not_fatal(tmp_path: Path) -> None:
    db = tmp_path / AUDIT_FILE
    _killed_before_import(db, 3)
    jpath = journal_path(db)
    lines = jpath.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"alice", b"mallory")  # the CRC no longer matches
    jpath.write_bytes(b"".join(lines))
    log = AuditLog.open(db)
    try:
        assert log.skipped == 1
        assert [r.request_id for r in log.query()] == ["req-3", "req-1"]
        assert all(r.subject == "alice" for r in log.query())
    finally:
        log.close()


def test_full_disk_on_the_journal_fails_closed_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / AUDIT_FILE
    AuditLog.open(db).close()  # the database exists before the limit
    child = _child(
        """
        import gateway.audit.log as L
        L.RECOVER_RETRY_S = 0.0
        async def main():
            log = AuditLog.open(path)
            jpath = Path(str(path) + ".journal")
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # "the disk is full"
            ok, failed = [], None
            for i in range(1, 100):
                try:
                    await log.append(rec(i))
                    ok.append(i)
                except AuditError as exc:
                    failed = (i, str(exc))
                    break
            unhealthy = not log.healthy
            whole = jpath.read_bytes().endswith(b"\\n")  # the short write was cut back
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
            recovered = await log.recover()
            await log.append(rec(500))
            log.close()
            print(json.dumps({"ok": ok, "failed": failed, "unhealthy": unhealthy,
                              "whole": whole, "recovered": recovered}), flush=True)
        asyncio.run(main())
        """,
        db,
    )
    out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
    assert child.returncode == 0, err
    res = json.loads(out)
    assert res["failed"] is not None and "audit write failed" in res["failed"][1]
    assert res["unhealthy"] and res["whole"] and res["recovered"]
    assert len(res["ok"]) >= 1
    log = AuditLog.open(db)
    try:
        ids = [r.request_id for r in log.query(limit=200)]
        ops = [r.op for r in log.query(limit=200)]
    finally:
        log.close()
    want = [f"req-{i}" for i in res["ok"]] + ["req-500"]
    assert sorted(i for i in ids if i) == sorted(want)  # the refused record is not there
    assert f"req-{res['failed'][0]}" not in ids
    assert "auditrecovered" in ops


async def test_sequence_numbers_follow_sqlite_across_reopen(tmp_path: Path) -> None:
    from tests.test_audit import rec

    db = tmp_path / AUDIT_FILE
    for _ in range(3):
        log = AuditLog.open(db)
        try:
            for i in range(4):
                await log.append(rec(i))
        finally:
            log.close()
    with sqlite3.connect(db) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM audit ORDER BY id")]
    assert seqs == list(range(1, 13))
