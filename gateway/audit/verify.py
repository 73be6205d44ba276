"""Check an audit log against its hash chain and its signed checkpoints (docs/audit.md).

`verify_log` walks every SQLite row in id order, recomputing each hash from the row before it,
checks every checkpoint's signature and that its (id, count, head) is on the chain, and returns
a Report naming the first record that does not fit and why:

- edited:    the record's content does not match its hash;
- deleted:   its `prev` is not the hash of the row before it, and row ids are missing;
- inserted:  a row without a (matching) chain hash, or a `prev` that fits nothing before it;
- rewritten: a checkpoint's head differs from the record it names (history recomputed);
- truncated: a checkpoint covers records the log does not have (cut tail, or the database
             replaced by an older copy);
- checkpoint: a checkpoint that is not signed by the gateway key.

Journal lines not imported into SQLite yet are counted (`pending`), CRC-checked, not chained.

The walk itself (`ChainWalk`, `check_chain`) takes any sequence of records: `streembit-peer
audit verify` feeds it the pages a gateway sends (gateway/audit/remote.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from gateway.audit import checkpoint
from gateway.audit.chain import GENESIS, link
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.journal import journal_path, parse
from gateway.audit.log import AUDIT_FILE
from gateway.audit.record import Row
from gateway.audit.store import BUSY_TIMEOUT_S, COLUMNS
from gateway.errors import AuditError
from gateway.identity import PublicIdentity, load_public

if TYPE_CHECKING:
    from gateway.state import StateDir

MAX_GIVEN_BYTES = 4096  # a --checkpoint file holds one compact JWS
MAX_JOURNAL_READ = 256 << 20  # bytes of the journal read (it is emptied at 1 MiB normally)
#: The chain's view of a row: id, seq, prev, hash and the hashed columns (`chain_record`).
CHAIN_SELECT: Final = f"SELECT id, seq, prev, hash, {COLUMNS} FROM audit"  # noqa: S608


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str  # edited, deleted, inserted, rewritten, truncated, checkpoint, journal
    why: str
    id: int | None = None  # row id of the first record that does not fit
    seq: int | None = None  # its journal sequence number, if any


@dataclasses.dataclass
class Report:
    records: int = 0  # rows in SQLite
    last_id: int = 0
    head: str = GENESIS.hex()
    pending: int = 0  # durable journal lines not in SQLite yet (not chained yet)
    checkpoints: int = 0  # checkpoints whose signature verified
    latest: Checkpoint | None = None  # the newest verified checkpoint (by id, then iat)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    journal: bool = True  # False: records fetched from a gateway (no local journal to count)

    @property
    def ok(self) -> bool:
        return not self.problems

    def human(self) -> str:
        """One paragraph for a person: OK with the counts, or the first problem."""
        cp = self.latest
        seen = "no checkpoint" if cp is None else f"latest checkpoint {_when(cp)} at record {cp.id}"
        pending = f", {self.pending} pending in the journal" if self.journal else ""
        counts = (
            f"{self.records} records (last {self.last_id}){pending}, {self.checkpoints} "
            f"checkpoints; {seen}"
        )
        if self.ok:
            return f"audit log OK: {counts}"
        first = self.problems[0]
        where = "" if first.id is None else f" at record {first.id}"
        if first.seq is not None:
            where += f" (seq {first.seq})"
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"audit log TAMPERED: {first.kind}{where}: {first.why}{more}\n{counts}"

    def as_dict(self) -> dict[str, Any]:
        cp = self.latest
        return {
            "ok": self.ok,
            "records": self.records,
            "last_id": self.last_id,
            "head": self.head,
            "pending": self.pending,
            "checkpoints": self.checkpoints,
            "latest_checkpoint": None
            if cp is None
            else {"id": cp.id, "count": cp.count, "head": cp.head, "iat": cp.iat},
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }


def _when(cp: Checkpoint) -> str:
    return dt.datetime.fromtimestamp(cp.iat, dt.UTC).isoformat(timespec="seconds")


def check_checkpoints(
    sources: Sequence[tuple[str, str]], gateway: PublicIdentity, report: Report
) -> list[Checkpoint]:
    """The checkpoints of SOURCES ((where, compact JWS) pairs) signed by GATEWAY; each one that
    is not is a `checkpoint` problem in REPORT, which also counts them and keeps the latest."""
    good: list[Checkpoint] = []
    for where, text in sources:
        try:
            good.append(checkpoint.verify(text, gateway))
        except AuditError as exc:
            report.problems.append(Problem("checkpoint", f"{where}: {exc}"))
    report.checkpoints = len(good)
    if good:
        report.latest = max(good, key=lambda c: (c.id, c.iat))
    return good


def _checkpoints(
    db_path: Path, gateway: PublicIdentity, extra: Sequence[str], report: Report
) -> list[Checkpoint]:
    file = checkpoint.checkpoints_path(db_path)
    sources = [(f"{file.name} line {n}", t) for n, t in enumerate(checkpoint.read_lines(file), 1)]
    sources += [(f"given checkpoint {n}", t) for n, t in enumerate(extra, 1)]
    return check_checkpoints(sources, gateway, report)


def _chain_problem(
    rid: int,
    seq: int | None,
    prev: bytes | None,
    digest: bytes | None,
    row: Row,
    last: int,
    expected: bytes,
) -> Problem | None:
    if prev is None or digest is None:
        return Problem(
            "inserted", "record has no chain hash: written outside the gateway", rid, seq
        )
    if prev == expected:
        if link(prev, rid, seq, row) != digest:
            return Problem("edited", "record content does not match its hash", rid, seq)
        return None
    if link(prev, rid, seq, row) != digest:
        return Problem(
            "inserted", "record fits neither its hash nor the record before it", rid, seq
        )
    if rid != last + 1:
        why = f"records {last + 1}..{rid - 1} are missing (prev is not the hash of record {last})"
        return Problem("deleted", why, rid, seq)
    why = f"prev is not the hash of record {last}: a record was deleted or inserted before it"
    return Problem("deleted", why, rid, seq)


@dataclasses.dataclass(frozen=True)
class ChainRecord:
    """One stored record as the chain sees it: row id, journal seq, the hashed row, prev, hash."""

    id: int
    seq: int | None
    row: Row  # the stored values in column order (as SQLite returns them)
    prev: bytes | None
    hash: bytes | None


def _blob(value: Any) -> bytes | None:
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else None


def chain_record(values: Sequence[Any]) -> ChainRecord:
    """The ChainRecord of a row selected as CHAIN_SELECT (id, seq, prev, hash, the columns)."""
    rid, seq, prev, digest, *rest = values
    return ChainRecord(rid, seq, cast(Row, tuple(rest)), _blob(prev), _blob(digest))


class ChainWalk:
    """The one check of a hash chain, fed record by record in row id order (`add`), from the
    local database (`verify_log`) or page by page from a gateway (`streembit-peer audit
    verify`); `finish` puts the counts and the problems, against CHECKPOINTS, into a Report."""

    def __init__(self, checkpoints: Sequence[Checkpoint]) -> None:
        self.checkpoints = list(checkpoints)
        self.wanted: dict[int, tuple[int, bytes]] = {c.id: (0, b"") for c in checkpoints}
        self.problem: Problem | None = None  # the first record that does not fit
        self.records = 0
        self.last = 0  # row id of the last record seen
        self.expected = GENESIS  # its hash: the `prev` the next record must have
        self.top_seq = 0

    def add(self, rec: ChainRecord) -> None:
        self.records += 1
        if self.problem is None:
            self.problem = _chain_problem(
                rec.id, rec.seq, rec.prev, rec.hash, rec.row, self.last, self.expected
            )
        self.expected = rec.hash if rec.hash is not None else b""
        self.last = rec.id
        if isinstance(rec.seq, int):
            self.top_seq = max(self.top_seq, rec.seq)
        if rec.id in self.wanted:
            self.wanted[rec.id] = (self.records, self.expected)

    def finish(self, report: Report) -> Report:
        report.records, report.last_id, report.head = self.records, self.last, self.expected.hex()
        chain = [self.problem] if self.problem is not None else []
        report.problems[:0] = chain + _against_checkpoints(self.checkpoints, self.wanted, report)
        report.problems.sort(key=lambda p: (p.id is None, p.id or 0))
        return report


def check_chain(
    records: Iterable[ChainRecord], checkpoints: Sequence[Checkpoint], report: Report
) -> ChainWalk:
    """Walk RECORDS (row id order) against CHECKPOINTS into REPORT; the finished walk."""
    walk = ChainWalk(checkpoints)
    for rec in records:
        walk.add(rec)
    walk.finish(report)
    return walk


def verify_log(db_path: Path, gateway: PublicIdentity, extra: Sequence[str] = ()) -> Report:
    """Check the audit log at DB_PATH; EXTRA are checkpoints the owner kept (compact JWS)."""
    report = Report()
    cps = _checkpoints(db_path, gateway, extra, report)
    if not db_path.exists():
        check_chain((), cps, report)
        _journal_tail(db_path, 0, report)
        return report
    try:
        with read_only(db_path) as conn:
            cols = {r[1] for r in conn.execute("PRAGMA table_info(audit)")}
            if cols and "hash" not in cols:
                raise AuditError(
                    f"{db_path}: not chained yet (an older schema); run `streembit-gateway "
                    "audit` or the gateway once to migrate it"
                )
            conn.execute("BEGIN")
            rows = conn.execute(CHAIN_SELECT + " ORDER BY id") if cols else ()
            walk = check_chain(map(chain_record, rows), cps, report)
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise AuditError(f"{db_path}: cannot read the audit log: {exc}") from None
    _journal_tail(db_path, walk.top_seq, report)
    return report


def read_only(db_path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A read-only connection to the audit database at DB_PATH (autocommit: BEGIN yourself)."""
    return contextlib.closing(
        sqlite3.connect(
            f"file:{db_path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
        )
    )


def _against_checkpoints(
    cps: list[Checkpoint], wanted: dict[int, tuple[int, bytes]], report: Report
) -> list[Problem]:
    found: list[Problem] = []
    for cp in sorted(cps, key=lambda c: c.id):
        if cp.id == 0:
            continue
        if cp.id > report.last_id:
            why = (
                f"the log ends at record {report.last_id} but the checkpoint signed {_when(cp)} "
                f"covers record {cp.id} ({cp.count} records): the tail was cut off or the "
                "database was replaced by an older copy"
            )
            found.append(Problem("truncated", why, report.last_id + 1))
            break
        count, digest = wanted[cp.id]
        if not count:
            why = f"record {cp.id}, named by the checkpoint signed {_when(cp)}, is missing"
            found.append(Problem("deleted", why, cp.id))
        elif digest.hex() != cp.head:
            why = f"record {cp.id} differs from the checkpoint signed {_when(cp)} (rewritten)"
            found.append(Problem("rewritten", why, cp.id))
        elif count != cp.count:
            why = (
                f"{count} records up to record {cp.id}, the checkpoint signed {_when(cp)} says "
                f"{cp.count}: records were deleted or inserted before it"
            )
            found.append(Problem("deleted" if count < cp.count else "inserted", why, cp.id))
    return found


def _journal_tail(db_path: Path, top_seq: int, report: Report) -> None:
    path = journal_path(db_path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_JOURNAL_READ)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the audit journal: {exc}") from None
    entries, _, skipped = parse(data)
    report.pending = sum(1 for seq, _ in entries if seq > top_seq)
    if skipped:
        why = f"{skipped} journal lines do not decode (CRC mismatch or out of order)"
        report.problems.append(Problem("journal", why))


def verify_state(state: StateDir, given: Sequence[Path] = ()) -> Report:
    """`audit verify`: the log in STATE against its checkpoints and the GIVEN checkpoint files,
    with the gateway's public key (gateway.key.pub, else the key itself)."""
    pub_file = state.key_file.with_name(state.key_file.name + ".pub")
    gateway = load_public(pub_file) if pub_file.exists() else state.load_identity().public
    return verify_log(state.path / AUDIT_FILE, gateway, [read_given(p) for p in given])


def read_given(path: Path) -> str:
    """The checkpoint the owner saved in the file at PATH: the bare compact JWS, or the JSON
    answer of GET /audit/checkpoint (or of `streembit-peer audit checkpoint`) as it was."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_GIVEN_BYTES + 1)
    text = data.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            text = str(json.loads(text).get("checkpoint") or "")
    return text
