"""The owner checks a gateway's audit log from afar (docs/audit.md §6): the P2P ops
`auditcheckpoint` and `auditrecords`, and `streembit-peer audit verify GW_ID`, against a real
gateway found through a DHT seed on 127.0.0.1; then the SQLite file is tampered with behind
the gateway's back and the remote check names the record."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.acl import Grant
from gateway.app import Gateway
from gateway.audit import AUDIT_FILE, AuditRecord
from gateway.audit import log as audit_log
from gateway.audit import store as store_mod
from gateway.audit.chain import link
from gateway.audit.checkpoint import verify
from gateway.audit.record import to_row
from gateway.audit.remote import MAX_PAGE_RECORDS, PAGE_BYTES, WIRE_COLUMNS, parse_page, read_page
from gateway.audit.store import COLUMNS
from gateway.audit.verify import ChainRecord, Report, check_chain, verify_log
from gateway.cli import peer_cli
from gateway.config import P2pConfig
from gateway.errors import AuditError, MessageError
from gateway.identity import KeyPair, PublicIdentity, generate_keypair
from gateway.messages import Opened, open_sealed, seal
from gateway.messages.claims import check_body
from gateway.p2p import DhtNode
from gateway.peer import PeerClient, PeerConnection, PeerRequestError
from gateway.peer.wire import frame_digest
from tests.helpers import ALL_OPS, World, demo_config
from tests.test_p2p_binding import _claims, _crafted

WAIT_S = 5.0


@dataclass
class Net:
    gw: Gateway
    seed: DhtNode
    world: World

    @property
    def db(self) -> Path:
        return self.world.state / AUDIT_FILE

    def key(self, who: str) -> str:
        return str(self.world.keydir / who)

    async def cli(self, *argv: str, who: str = "owner", json: bool = True) -> int:
        """`streembit-peer --bootstrap SEED --key WHO audit verify [--json] ARGV -- GW_ID`."""
        host, port = self.seed.address
        args = ["--bootstrap", f"{host}:{port}", "--key", self.key(who), "audit", "verify"]
        args += ["--json", *argv] if json else list(argv)
        return await asyncio.to_thread(peer_cli.main, [*args, "--", self.gw.identity.id])

    def audited(self, op: str) -> list[AuditRecord]:
        return [r for r in self.gw.audit.query(limit=5000) if r.op == op]


@pytest.fixture
def fast_checkpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(audit_log, "CHECKPOINT_S", 0.2)
    yield


@pytest.fixture
def p2p_limits() -> dict[str, Any]:
    """P2pConfig settings of the gateway (a test overrides it with parametrize)."""
    return {}


@pytest.fixture
async def net(
    world: World, fast_checkpoints: None, p2p_limits: dict[str, Any]
) -> AsyncIterator[Net]:
    world.install(Grant.for_key(world.user.public, things=["*"], ops=ALL_OPS))
    seed = DhtNode("127.0.0.1", 0, rpc_timeout=0.5)
    await seed.start()
    p2p = P2pConfig(enabled=True, ws_port=0, dht_port=0, bootstrap=(seed.address,), **p2p_limits)
    gw = await Gateway.create(demo_config(world.state, p2p=p2p))
    await gw.start()
    try:
        yield Net(gw, seed, world)
    finally:
        await gw.stop()
        await seed.stop()


@pytest.fixture
async def owner(net: Net) -> AsyncIterator[PeerConnection]:
    async with PeerClient(net.world.owner) as client:
        assert net.gw.p2p is not None
        yield await client.connect(net.gw.p2p.url, net.gw.identity.public)


async def _traffic(net: Net, n: int = 6, pace: float = 0.0) -> None:
    """N reads by the granted user (N audit records, PACE seconds apart), then a checkpoint
    that covers them."""
    assert net.gw.p2p is not None
    async with PeerClient(net.world.user) as client:
        conn = await client.connect(net.gw.p2p.url, net.gw.identity.public)
        for _ in range(n):
            await conn.read("front-door", "state")
            await asyncio.sleep(pace)
    await _imported(net.db, n + 1)  # and the gateway's start
    await _checkpoint_covers(net, n + 1)


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])


async def _imported(db: Path, n: int) -> None:
    """Wait until SQLite holds N records (durable ones are imported from the journal)."""
    deadline = time.monotonic() + WAIT_S
    while _count(db) < n:
        assert time.monotonic() < deadline, f"fewer than {n} records in SQLite"
        await asyncio.sleep(0.05)


async def _checkpoint_covers(net: Net, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        text = net.gw.audit.latest_checkpoint()
        if text is not None and verify(text, net.gw.identity.public).count >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no checkpoint covering {n} records within {WAIT_S} s")


def _tamper(db: Path, *sql: str, args: tuple[Any, ...] = ()) -> None:
    """Run SQL on the live database behind the gateway's back: the append-only triggers are
    dropped for it and put back afterwards."""
    conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        for stmt in sql:
            conn.execute(stmt, args if "?" in stmt else ())
        conn.execute("COMMIT")
        conn.executescript(store_mod._SCHEMA)  # CREATE TRIGGER IF NOT EXISTS: back again
    finally:
        conn.close()


def _result(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines, "no output"
    return dict(json.loads(lines[-1]))


# ---------------------------------------------------------------------------- the command
async def test_remote_verify_ok_with_the_count_and_head(
    net: Net, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await _traffic(net)
    saved = tmp_path / "cp.jws"
    assert await net.cli("--save-checkpoint", str(saved)) == 0
    report = _result(capsys)
    assert report["ok"] and report["gateway"] == net.gw.identity.id, report
    with sqlite3.connect(net.db) as conn:
        rows = conn.execute("SELECT id, hash FROM audit ORDER BY id").fetchall()
    seen = report["records"]
    assert seen >= 6 and report["last_id"] == seen == rows[seen - 1][0]
    assert report["head"] == rows[seen - 1][1].hex()  # the head the gateway stored
    assert report["checkpoints"] == 1 and report["latest_checkpoint"]["count"] <= seen
    cp = verify(saved.read_text(), net.gw.identity.public)  # the kept checkpoint verifies
    # each request audited once, as the owner's, allowed
    for op in ("auditcheckpoint", "auditrecords"):
        recs = net.audited(op)
        assert len(recs) == 1 and recs[0].allowed and recs[0].subject == net.world.owner.id
        assert (recs[0].binding, recs[0].affordance, recs[0].rule) == ("p2p", "audit", "owner")
    # later, with the kept checkpoint: still OK; human output names the head
    assert await net.cli("--checkpoint", str(saved)) == 0
    assert _result(capsys)["checkpoints"] == 2
    assert await net.cli(json=False) == 0
    text = capsys.readouterr().out
    assert "audit log OK" in text and "head " in text and "pending" not in text
    assert cp.gw == net.gw.identity.id


@pytest.mark.parametrize("kind", ["edited", "deleted", "inserted", "forged", "truncated"])
async def test_tampered_database_is_named_remotely(
    net: Net, capsys: pytest.CaptureFixture[str], kind: str, tmp_path: Path
) -> None:
    await _traffic(net)
    # the owner keeps a checkpoint (the running gateway may sign over a tampered head later:
    # only a kept checkpoint still covers what was cut off, docs/audit.md §6)
    kept = str(net.gw.audit.latest_checkpoint())
    (tmp_path / "kept.jws").write_text(kept)
    given = ("--checkpoint", str(tmp_path / "kept.jws"))
    if kind == "edited":
        _tamper(net.db, "UPDATE audit SET allowed = 0 WHERE id = 3")
        want: tuple[str, int] = ("edited", 3)
    elif kind == "deleted":
        _tamper(net.db, "DELETE FROM audit WHERE id = 3")
        want = ("deleted", 4)
    elif kind == "inserted":  # a row written with plain SQL, after the last one
        last = _count(net.db)
        row = "1.0, 'x', 'p2p', 'o', '', '', 1, 'r', '', '', ''"
        _tamper(net.db, f"INSERT INTO audit ({COLUMNS}) VALUES ({row})")
        want = ("inserted", last + 1)
    elif kind == "forged":  # a record replaced by one chained to the record before it
        with sqlite3.connect(net.db) as conn:
            r2 = conn.execute("SELECT hash FROM audit WHERE id = 2").fetchone()[0]
        forged = to_row(AuditRecord(1.0, "mallory", "p2p", "invokeaction", "front-door",
                                    "unlock", True, "grant", "ok"))  # fmt: skip
        _tamper(
            net.db,
            "DELETE FROM audit WHERE id = 3",
            f"INSERT INTO audit (id, seq, {COLUMNS}, prev, hash) VALUES (3, NULL, "
            f"{', '.join('?' * 13)})",
            args=(*forged, r2, link(r2, 3, None, forged)),
        )
        want = ("deleted", 4)  # record 4 no longer follows the (forged) record 3
    else:  # the tail cut off below the signed checkpoint
        last = verify(kept, net.gw.identity.public).id
        _tamper(net.db, f"DELETE FROM audit WHERE id >= {last - 1}")
        want = ("truncated", last - 1)
    assert await net.cli(*given) == 1
    report = _result(capsys)
    assert not report["ok"]
    first = report["problems"][0]
    assert (first["kind"], first["id"]) == want, report["problems"]
    # the local check of the same file agrees on the first record
    local = verify_log(net.db, net.gw.identity.public, (kept,))
    assert (local.problems[0].kind, local.problems[0].id) == want
    # the human form names the record and why
    assert await net.cli(*given, json=False) == 1
    assert f"TAMPERED: {want[0]} at record {want[1]}" in capsys.readouterr().out


async def test_non_owner_is_refused_forbidden_and_audited(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await net.cli(who="user") == 1
    out = _result(capsys)
    assert (out["error"], out["status"]) == ("forbidden", 403), out
    refused = net.audited("auditcheckpoint")
    assert len(refused) == 1 and not refused[0].allowed
    assert refused[0].subject == net.world.user.id and refused[0].rule == "owner-only"
    assert refused[0].reason.startswith("forbidden")
    assert net.gw.p2p is not None
    async with PeerClient(net.world.stranger) as client:
        conn = await client.connect(net.gw.p2p.url, net.gw.identity.public)
        with pytest.raises(PeerRequestError) as err:
            await conn.audit_records(0, 10)
    assert err.value.code == "forbidden"
    recs = net.audited("auditrecords")
    assert [(r.subject, r.allowed, r.rule) for r in recs] == [
        (net.world.stranger.id, False, "owner-only")
    ]


async def test_audit_log_failing_closes_the_ops(
    net: Net, owner: PeerConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(net.gw.audit, "space_ok", lambda: False)  # a full disk: fail closed
    with pytest.raises(PeerRequestError) as err:
        await owner.audit_records()
    assert err.value.code == "audit_unavailable"
    with pytest.raises(PeerRequestError) as err:
        await owner.audit_checkpoint()
    assert err.value.code == "audit_unavailable"
    monkeypatch.undo()
    assert isinstance(await owner.audit_checkpoint(), str | None)


# ---------------------------------------------------------------------------- paging
async def test_pages_are_capped_and_the_remote_walk_spans_them(
    net: Net, owner: PeerConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    big = "é" * 200  # long fields, two bytes each: the byte budget cuts pages short
    for i in range(700):
        net.gw.audit.append_nowait(
            AuditRecord(time.time(), f"s{i}", "p2p", "readproperty", "front-door", "state",
                        True, "grant", "ok", detail=big if i % 2 else "", request_id=big)
        )  # fmt: skip
    await _imported(net.db, 700)
    page = await owner.audit_records(0, MAX_PAGE_RECORDS)  # the cap: accepted ...
    assert len(json.dumps(page["records"], ensure_ascii=False).encode()) <= PAGE_BYTES
    assert 1 <= len(page["records"]) < MAX_PAGE_RECORDS and page["more"]  # ... bytes cut it
    parsed = parse_page(page, 0)
    assert [r.id for r in parsed.records] == list(range(1, len(parsed.records) + 1))
    small = await owner.audit_records(5, 3)
    assert [r[0] for r in small["records"]] == [6, 7, 8] and small["more"]
    assert small["columns"] == list(WIRE_COLUMNS)
    with pytest.raises(PeerRequestError) as err:  # ... and beyond it: not even sent
        await owner.audit_records(0, MAX_PAGE_RECORDS + 1)
    assert err.value.code == "bad_format"
    end = await owner.audit_records(10**9)
    assert end["records"] == [] and not end["more"] and end["last"] >= 700
    # the whole log over many pages: OK, every record counted
    await _checkpoint_covers(net, 700)
    before = len(net.audited("auditrecords"))
    assert await net.cli() == 0
    report = _result(capsys)
    assert report["ok"] and report["records"] >= 700, report
    pages = len(net.audited("auditrecords")) - before
    assert pages >= 700 * 400 // PAGE_BYTES  # each page one request, each request audited once


@pytest.mark.parametrize("p2p_limits", [{"rate_per_s": 10.0, "burst": 3}])
async def test_rate_limited_pages_are_asked_for_again(
    net: Net, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.audit.remote.MAX_PAGE_RECORDS", 2)  # many small pages
    await _traffic(net, 8, pace=0.15)  # within the gateway's rate
    assert await net.cli() == 0
    report = _result(capsys)
    assert report["ok"] and report["records"] >= 9, report
    limited = [r for r in net.gw.audit.query(limit=500) if r.reason.startswith("rate_limited")]
    assert limited, "the gateway never refused a page: the test proves nothing"


def test_read_page_on_its_own(tmp_path: Path) -> None:
    log = audit_log.AuditLog.open(tmp_path / AUDIT_FILE)
    for i in range(5):
        log.append_nowait(AuditRecord(1.5 + i, "a", "http", "op", "", "", True, "r", "ok"))
    log.close()
    page = read_page(tmp_path / AUDIT_FILE, 0, 2)
    assert (len(page["records"]), page["last"], page["more"]) == (2, 5, True)
    records = [*parse_page(page, 0).records]
    page = read_page(tmp_path / AUDIT_FILE, 2, 10)
    records += parse_page(page, 2).records
    assert not page["more"] and len(records) == 5
    report = Report(journal=False)
    check_chain(records, [], report)
    local = verify_log(tmp_path / AUDIT_FILE, _any_key())
    assert report.ok and (report.records, report.head) == (5, local.head) and local.records == 5


def _any_key() -> PublicIdentity:
    return generate_keypair().public


@pytest.mark.parametrize(
    "page",
    [
        {"columns": ["id"], "records": [], "last": 0, "more": False},
        {"columns": list(WIRE_COLUMNS), "records": [[1]], "last": 1, "more": False},
        {"columns": list(WIRE_COLUMNS), "records": [], "last": 0, "more": True},
        "not a page",
    ],
)
def test_malformed_pages_are_bad_reply(page: Any) -> None:
    with pytest.raises(AuditError) as err:
        parse_page(page, 0)
    assert err.value.code == "bad_reply"


def test_out_of_order_page_is_bad_reply() -> None:
    rec = [2, None, 1.0, "a", "p2p", "op", "", "", 1, "r", "ok", "", "", None, None]
    page = {"columns": list(WIRE_COLUMNS), "records": [rec, rec], "last": 2, "more": False}
    with pytest.raises(AuditError, match="out of order"):
        parse_page(page, 0)
    assert isinstance(parse_page({**page, "records": [rec]}, 0).records[0], ChainRecord)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad",
    [
        "page 2",
        [1, 2],
        {"after": -1},
        {"after": "3"},
        {"after": True},
        {"limit": 0},
        {"limit": MAX_PAGE_RECORDS + 1},
        {"limit": 1.5},
        {"after": 0, "limit": 10, "subject": "x"},
    ],
)
def test_malformed_input_is_bad_format(bad: Any) -> None:
    with pytest.raises(MessageError, match="op auditrecords") as err:
        check_body("request", {"op": "auditrecords", "input": bad})
    assert err.value.code == "bad_format"


async def test_malformed_input_frame_is_refused_and_audited(net: Net) -> None:
    w = net.world
    gw = net.gw.identity.public
    assert net.gw.p2p is not None
    frames = [
        _crafted(w.owner, gw, _claims(w.owner, gw.id, op="auditrecords", input=bad))
        for bad in ({"limit": MAX_PAGE_RECORDS + 1}, {"after": -5}, "all")
    ]
    async with aiohttp.ClientSession() as s, s.ws_connect(net.gw.p2p.url) as ws:
        for frame in frames:
            await ws.send_str(frame)
            msg = await ws.receive(timeout=WAIT_S)
            assert json.loads(msg.data) == {
                "error": "bad_format",
                "status": 400,
                "frame": frame_digest(frame),
            }
        await _imported(net.db, 4)  # the start and the three refusals
        ok = seal({"op": "auditrecords", "input": {"limit": 2}}, sender=w.owner, recipient=gw,
                  typ="request")  # fmt: skip
        await ws.send_str(ok)
        reply = await _sealed(ws, w.owner)
        assert reply.typ == "reply" and len(reply.claims["output"]["records"]) == 2
    refused = [r for r in net.gw.audit.query(limit=100) if "op auditrecords" in r.reason]
    assert len(refused) == 3 and all(r.reason.startswith("bad_format") for r in refused)


async def _sealed(ws: aiohttp.ClientWebSocketResponse, key: KeyPair) -> Opened:
    msg = await ws.receive(timeout=WAIT_S)
    return open_sealed(msg.data, recipient=key, replay=None)
