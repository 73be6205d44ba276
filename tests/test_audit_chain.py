"""The tamper-evident audit log: hash chain, signed checkpoints, `audit verify` (docs/audit.md)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gateway.audit import AUDIT_FILE, AuditLog, AuditRecord
from gateway.audit import log as audit_log
from gateway.audit import store as store_mod
from gateway.audit.chain import GENESIS, canonical, link
from gateway.audit.checkpoint import Checkpoint, checkpoints_path, sign, verify
from gateway.audit.checkpoint import append as checkpoint_append
from gateway.audit.record import to_row
from gateway.audit.store import COLUMNS
from gateway.audit.verify import Report, verify_log
from gateway.cli.gateway_cli import main
from gateway.errors import AuditError
from gateway.identity import KeyPair, generate_keypair
from gateway.state import StateDir
from tests.helpers import Running

DOCS = Path(__file__).resolve().parent.parent / "docs" / "audit.md"
ROW_QS = ", ".join("?" * 11)  # the row columns
QS = ROW_QS + ", ?, ?"  # + prev, hash
TIMER_WAIT_S = 5.0  # a shortened checkpoint interval must have fired within this


def rec(i: int, subject: str = "alice") -> AuditRecord:
    return AuditRecord(
        ts=1_700_000_000.0 + i,
        subject=subject,
        binding="http",
        op="readproperty",
        thing="lock",
        affordance="locked",
        allowed=True,
        rule="grant",
        reason="ok",
        request_id=f"r{i}",
    )


@pytest.fixture
def state(tmp_path: Path) -> tuple[Path, KeyPair]:
    kp, _ = StateDir(tmp_path / "st").init_identity()
    return tmp_path / "st", kp


def write(db: Path, kp: KeyPair | None, first: int, n: int) -> None:
    log = AuditLog.open(db, signer=kp)
    try:
        for i in range(first, first + n):
            log.append_nowait(rec(i))
    finally:
        log.close()


def check(db: Path, kp: KeyPair, extra: tuple[str, ...] = ()) -> Report:
    return verify_log(db, kp.public, extra)


def raw(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    return conn


def first(report: Report) -> tuple[str, int | None]:
    assert not report.ok, report.as_dict()
    return report.problems[0].kind, report.problems[0].id


def test_clean_log_verifies(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 5)
    write(db, kp, 6, 3)
    report = check(db, kp)
    assert report.ok, report.as_dict()
    assert (report.records, report.last_id, report.checkpoints) == (8, 8, 2)
    assert report.latest is not None and (report.latest.id, report.latest.count) == (8, 8)
    assert report.latest.head == report.head
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, prev, hash FROM audit ORDER BY id").fetchall()
    conn.close()
    assert rows[0][1] == GENESIS and all(a[2] == b[1] for a, b in itertools.pairwise(rows))


def test_edited_record_is_named(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 5)
    with raw(db) as conn:
        conn.execute("UPDATE audit SET allowed = 0 WHERE id = 3")
    assert first(check(db, kp)) == ("edited", 3)


def test_deleted_record_is_named(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 5)
    with raw(db) as conn:
        conn.execute("DELETE FROM audit WHERE id = 3")
    report = check(db, kp)
    assert first(report) == ("deleted", 4)
    assert "records 3..3 are missing" in report.problems[0].why
    assert report.problems[0].seq == 4


def test_inserted_record_is_named(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 5)
    with raw(db) as conn:  # a naive row, then one with a made-up chain hash
        cols = (
            "ts, subject, binding, op, thing, affordance, allowed, rule, reason, detail, request_id"
        )
        conn.execute(
            f"INSERT INTO audit ({cols}) VALUES (1, 'x', 'http', 'o', '', '', 1, 'r', '', '', '')"
        )
    assert first(check(db, kp)) == ("inserted", 6)


def test_inserted_mid_chain_is_named(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 2)
    with raw(db) as conn:  # make room: move record 2 to id 3, put a forged record at id 2
        conn.execute("UPDATE audit SET id = 3 WHERE id = 2")
        r1 = conn.execute("SELECT hash FROM audit WHERE id = 1").fetchone()[0]
        row = to_row(rec(99, subject="mallory"))
        forged = link(r1, 2, None, row)
        conn.execute(
            f"INSERT INTO audit (id, seq, {COLUMNS}, prev, hash) VALUES (2, NULL, {QS})",
            (*row, r1, forged),
        )
    kind, rid = first(check(db, kp))
    assert (rid == 2 and kind in ("rewritten", "deleted")) or rid == 3, check(db, kp).as_dict()


def test_truncated_tail_is_named(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 5)
    with raw(db) as conn:
        conn.execute("DELETE FROM audit WHERE id >= 4")
    report = check(db, kp)
    assert first(report) == ("truncated", 4)
    assert "ends at record 3" in report.problems[0].why


def _copy_db(db: Path, to: Path) -> None:
    to.mkdir()
    for suffix in ("", "-wal", "-shm", ".journal", ".checkpoints"):
        src = db.with_name(db.name + suffix)
        if src.exists():
            shutil.copy2(src, to / src.name)


def _restore(db: Path, frm: Path, *, checkpoints: bool) -> None:
    for suffix in ("", "-wal", "-shm", ".journal") + ((".checkpoints",) if checkpoints else ()):
        dst = db.with_name(db.name + suffix)
        dst.unlink(missing_ok=True)
        src = frm / dst.name
        if src.exists():
            shutil.copy2(src, dst)


def test_rolled_back_database_is_detected(state: tuple[Path, KeyPair], tmp_path: Path) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 3)
    _copy_db(db, tmp_path / "yesterday")
    write(db, kp, 4, 3)
    _restore(db, tmp_path / "yesterday", checkpoints=False)  # the checkpoints file stays new
    report = check(db, kp)
    assert first(report) == ("truncated", 4)
    assert "older copy" in report.problems[0].why


def test_rolled_back_folder_needs_the_owners_checkpoint(
    state: tuple[Path, KeyPair], tmp_path: Path
) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 3)
    _copy_db(db, tmp_path / "yesterday")
    write(db, kp, 4, 3)
    log = AuditLog.open(db)
    owner_copy = log.latest_checkpoint()  # what GET /audit/checkpoint gave the owner
    log.close()
    assert owner_copy is not None
    _restore(db, tmp_path / "yesterday", checkpoints=True)  # the whole folder is old
    assert check(db, kp).ok  # consistent in itself ...
    assert first(check(db, kp, (owner_copy,))) == ("truncated", 4)  # ... but not to the owner
    saved = tmp_path / "cp.json"
    saved.write_text(json.dumps({"checkpoint": owner_copy}))
    args = ["audit", "verify", "--state", str(folder), "--json"]
    assert main(args) == 0
    assert main([*args, "--checkpoint", str(saved)]) == 1


def test_forged_checkpoint_is_refused(state: tuple[Path, KeyPair], tmp_path: Path) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    write(db, kp, 1, 3)
    other = generate_keypair()
    forged = sign(other, 3, 3, bytes(32))
    with pytest.raises(AuditError, match="signature is not the gateway's"):
        verify(forged.jws, kp.public)
    report = check(db, kp, (forged.jws,))
    assert first(report) == ("checkpoint", None)
    with checkpoints_path(db).open("a") as fh:
        fh.write(forged.jws + "\n")
    assert first(check(db, kp))[0] == "checkpoint"
    cli = tmp_path / "forged.jws"
    cli.write_text(forged.jws)
    assert main(["audit", "verify", "--state", str(folder), "--checkpoint", str(cli)]) == 1


def test_concurrent_gateway_and_cli_writers_verify(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    owner = AuditLog.open(db, signer=kp)
    cli = AuditLog.open(db)  # a second opener: writes straight to SQLite, no journal
    assert cli._journal is None

    def gateway_side() -> None:
        for i in range(200):
            owner.append_nowait(rec(i))

    def cli_side() -> None:
        for i in range(30):
            asyncio.run(cli.append(rec(1000 + i, subject="cli")))

    threads = [threading.Thread(target=gateway_side), threading.Thread(target=cli_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cli.close()
    owner.close()
    report = check(db, kp)
    assert report.ok, report.as_dict()
    assert report.records == 230 and report.latest is not None and report.latest.count == 230


def test_checkpoint_timer_and_pending_tail(
    state: tuple[Path, KeyPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    monkeypatch.setattr(audit_log, "CHECKPOINT_S", 0.2)
    log = AuditLog.open(db, signer=kp)
    try:
        log.append_nowait(rec(1))
        deadline = time.monotonic() + TIMER_WAIT_S
        while log.latest_checkpoint() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.latest_checkpoint() is not None  # signed while running, not only at stop
        report = check(db, kp)
        assert report.ok and report.records + report.pending == 1
    finally:
        log.close()


def test_migration_chains_existing_rows(state: tuple[Path, KeyPair]) -> None:
    folder, kp = state
    db = folder / AUDIT_FILE
    conn = sqlite3.connect(db, isolation_level=None)  # a schema v2 log with two rows
    conn.executescript(store_mod._SCHEMA + store_mod._MIGRATE_2)
    conn.execute("INSERT INTO schema_version VALUES (2)")
    old = f"INSERT INTO audit (seq, {COLUMNS}) VALUES (?, {ROW_QS})"
    conn.executemany(old, [(1, *to_row(rec(1))), (None, *to_row(rec(2, subject="cli")))])
    conn.close()
    write(db, kp, 10, 2)  # opening migrates: the two old rows are chained first
    report = check(db, kp)
    assert report.ok and report.records == 4, report.as_dict()


def test_doc_vector() -> None:
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- vector -->\n```text\n(.*?)```", text, re.S)
    assert block is not None, "docs/audit.md lost its test vector"
    fields = dict(line.split(": ", 1) for line in block.group(1).splitlines() if ": " in line)
    row = to_row(rec(1))
    assert canonical(1, 1, row).decode() == fields["canonical 1"].encode().decode("unicode_escape")
    h1 = link(GENESIS, 1, 1, row)
    assert h1.hex() == fields["hash 1"]
    h2 = link(h1, 2, None, to_row(rec(2, subject="cli")))
    assert h2.hex() == fields["hash 2"]
    cp = Checkpoint("GW", 2, 2, h2.hex(), 1_700_000_100)
    assert cp.payload().decode() == fields["payload"]


async def test_http_checkpoint_owner_only(running: Running) -> None:
    r, w = running, running.world
    url = r.url + "/audit/checkpoint"
    async with r.http.get(url) as resp:
        assert resp.status == 401
    async with r.http.get(url, headers=r.auth(w.user)) as resp:
        assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    async with r.http.get(url, headers=r.auth(w.owner)) as resp:
        assert resp.status == 200 and (await resp.json()) == {"checkpoint": None}
    db = w.state / AUDIT_FILE
    checkpoint_append(checkpoints_path(db), sign(w.gw_key, 0, 0, GENESIS))
    async with r.http.get(url, headers=r.auth(w.owner)) as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        cp = verify((await resp.json())["checkpoint"], w.gw_key.public)
    assert (cp.id, cp.count, cp.gw) == (0, 0, w.gw_key.id)
    ops = [x.op for x in r.gw.audit.query(limit=20)]
    assert ops.count("readauditcheckpoint") == 4  # 401, 403 refusals and both reads
