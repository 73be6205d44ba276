"""Audit log: group commit, durability across reopen, append-only enforcement, sanitising.

Journal-specific cases (crash recovery, torn lines, a full disk) are in test_audit_journal.py."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import AUDIT_FILE, FIELD_CAP, AuditLog, AuditRecord, clean
from gateway.audit.log import IMPORT_WINDOW_S
from gateway.errors import AuditError

IMPORT_WAIT_S = 5.0  # the importer stores durable records within IMPORT_WINDOW_S; slack for CI


def rec(i: int = 0, *, subject: str = "alice", allowed: bool = True, **kw: str) -> AuditRecord:
    fields = {
        "binding": "http",
        "op": "invokeaction",
        "thing": "front-door",
        "affordance": "unlock",
        "rule": "grant:abc#0",
        "reason": "granted",
        "detail": "",
        "request_id": f"req-{i}",
        **kw,
    }
    return AuditRecord(ts=time.time(), subject=subject, allowed=allowed, **fields)


def sqlite_count(path: Path) -> int:
    with sqlite3.connect(path) as other:
        return int(other.execute("SELECT count(*) FROM audit").fetchone()[0])


def wait_in_sqlite(path: Path, n: int) -> None:
    """Wait until SQLite itself holds N records (the importer runs after each durable batch)."""
    deadline = time.monotonic() + IMPORT_WAIT_S
    while sqlite_count(path) < n:
        assert time.monotonic() < deadline, f"{sqlite_count(path)} of {n} records imported"
        time.sleep(IMPORT_WINDOW_S / 5)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / AUDIT_FILE


@pytest.fixture
def log(path: Path) -> Iterator[AuditLog]:
    audit = AuditLog.open(path)
    yield audit
    audit.close()


async def test_500_concurrent_appends_share_commits(log: AuditLog) -> None:
    t0 = time.perf_counter()
    await asyncio.gather(*(log.append(rec(i)) for i in range(500)))
    elapsed = time.perf_counter() - t0
    rows = log.query(limit=1000)
    assert len(rows) == 500
    assert {r.request_id for r in rows} == {f"req-{i}" for i in range(500)}
    assert log.records == 500
    assert log.commits < 50, f"{log.commits} commits for 500 records: no group commit"
    print(f"\n500 concurrent appends: {elapsed * 1e3:.1f} ms, {log.commits} commits")


async def test_append_returns_when_durable_visible_to_other_readers(
    log: AuditLog, path: Path
) -> None:
    await log.append(rec(1))
    reader = AuditLog.open(path)  # as the `audit` CLI does while the gateway runs
    try:
        assert [r.request_id for r in reader.query()] == ["req-1"]  # from the journal or SQLite
        await reader.append(rec(2))  # a second opener writes straight to SQLite
    finally:
        reader.close()
    wait_in_sqlite(path, 2)  # and the journal's record reaches SQLite by itself
    assert {r.request_id for r in log.query()} == {"req-1", "req-2"}


async def test_survives_reopen(path: Path) -> None:
    first = AuditLog.open(path)
    await first.append(rec(1, allowed=False, reason="revoked"))
    first.append_nowait(rec(2, subject="system", reason="fault"))
    first.close()  # flushes the nowait record
    second = AuditLog.open(path)
    try:
        await second.append(rec(3))
        rows = second.query()
        assert [r.request_id for r in rows] == ["req-3", "req-2", "req-1"]
        assert rows[2].allowed is False and rows[2].reason == "revoked"
        assert [r.request_id for r in second.query(subject="system")] == ["req-2"]
        assert [r.request_id for r in second.query(allowed=False)] == ["req-1"]
        assert len(second.query(limit=1)) == 1
    finally:
        second.close()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_update_and_delete_are_refused(log: AuditLog, path: Path) -> None:
    await log.append(rec(1, allowed=False))
    wait_in_sqlite(path, 1)
    with sqlite3.connect(path) as other:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            other.execute("UPDATE audit SET allowed = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            other.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            other.execute("DELETE FROM schema_version")
    assert [r.allowed for r in log.query()] == [False]
    assert not hasattr(log, "delete") and not hasattr(log, "update")


async def test_strings_are_cleaned_and_capped(log: AuditLog) -> None:
    evil = "bob\x1b[31m\r\nFAKE ENTRY\u202e\x00" + "x" * 5000
    await log.append(rec(1, subject=evil, detail=evil, thing="\x07door"))
    (row,) = log.query()
    assert row.subject.startswith("bob[31mFAKE ENTRY")
    assert len(row.subject) == FIELD_CAP and len(row.detail) == FIELD_CAP
    assert all(c.isprintable() for c in row.subject + row.detail)
    assert row.thing == "door"
    assert clean("ok text") == "ok text"


async def test_failing_sqlite_import_loses_nothing(log: AuditLog, path: Path) -> None:
    await log.append(rec(1))
    wait_in_sqlite(path, 1)
    with sqlite3.connect(path) as other:
        other.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk'); END"
        )
    await asyncio.gather(*(log.append(rec(i)) for i in range(2, 7)))  # durable in the journal
    assert log.healthy
    assert [r.request_id for r in log.query()] == [f"req-{i}" for i in (6, 5, 4, 3, 2, 1)]
    with sqlite3.connect(path) as other:
        other.execute("DROP TRIGGER boom")
    wait_in_sqlite(path, 6)  # the importer retries on its own
    assert [r.request_id for r in log.query()] == [f"req-{i}" for i in (6, 5, 4, 3, 2, 1)]


async def test_closed_log_refuses(path: Path) -> None:
    audit = AuditLog.open(path)
    audit.close()
    audit.close()  # idempotent
    assert not audit.healthy
    with pytest.raises(AuditError):
        await audit.append(rec(1))
    with pytest.raises(AuditError):
        audit.append_nowait(rec(1))


def test_newer_schema_is_refused(path: Path) -> None:
    AuditLog.open(path).close()
    with sqlite3.connect(path) as other:
        other.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(AuditError, match="newer"):
        AuditLog.open(path)


def test_unopenable_path(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(AuditError):
        AuditLog.open(tmp_path / "dir.sqlite3")


async def test_cancelled_append_does_not_break_the_writer(log: AuditLog) -> None:
    task = asyncio.ensure_future(log.append(rec(1)))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await log.append(rec(2))
    assert log.healthy


def test_as_dict() -> None:
    r = rec(1)
    assert r.as_dict()["request_id"] == "req-1" and r.as_dict()["allowed"] is True
