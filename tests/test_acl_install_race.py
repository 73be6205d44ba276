"""An acknowledged ACL is never rolled back (docs/acl.md §2.2).

Every installer -- `streembit-gateway acl apply` (a real subprocess), `PUT /acl` and the P2P
`aclpush` of a running gateway (real servers on 127.0.0.1), another process's `AclStore` -- is one
compare-and-swap on the version under the state folder's install lock. The rule checked here: the
installed version only increases, and every version acknowledged to anyone stays installed or is
superseded, across restarts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import pytest

from gateway.acl import ACL_FILE, AclStore, Grant, new_acl, read_acl_unverified, sign_acl
from gateway.acl import install as acl_install
from gateway.acl.install import MARK_FILE, TEST_PAUSE_ENV, install_lock, read_mark
from gateway.app import Gateway
from gateway.bindings.p2p import P2PBinding
from gateway.errors import AclError
from gateway.identity import generate_keypair
from gateway.peer import PeerClient, PeerRequestError
from gateway.storage import atomic_write_text
from tests.helpers import ALL_OPS, World, demo_config

GW_CLI = str(Path(sys.executable).parent / "streembit-gateway")
CLI_TIMEOUT_S = 60.0  # a CLI run that takes longer than this is hung, not slow


# ------------------------------------------------------------------ helpers
def signed(w: World, version: int, *, stranger: bool = False) -> str:
    """Version VERSION of the ACL: the user always granted, the stranger too if STRANGER."""
    grants = [Grant.for_key(w.user.public, things=["*"], ops=ALL_OPS)]
    if stranger:
        grants.append(Grant.for_key(w.stranger.public, things=["living-room"], ops=ALL_OPS))
    acl = dataclasses.replace(new_acl(w.gw_key.id), version=version, grants=tuple(grants))
    return sign_acl(acl, w.owner)


def on_disk(state: Path) -> int:
    return read_acl_unverified((state / ACL_FILE).read_text()).version


@dataclasses.dataclass
class Live:
    gw: Gateway
    p2p: P2PBinding
    http: aiohttp.ClientSession
    w: World

    def auth(self, kp: object | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.w.token(kp or self.w.owner)}"}  # type: ignore[arg-type]

    async def put(self, text: str) -> tuple[int, dict[str, object]]:
        async with self.http.put(f"{self.gw.http_url}/acl", data=text, headers=self.auth()) as r:
            return r.status, await r.json()


@asynccontextmanager
async def live(w: World) -> AsyncIterator[Live]:
    """A running gateway on the state folder: HTTP and the P2P binding on 127.0.0.1."""
    gw = await Gateway.create(demo_config(w.state))
    await gw.start()
    p2p = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds, rate_per_s=200.0, burst=200)
    await p2p.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Live(gw, p2p, http, w)
    finally:
        await p2p.stop()
        await gw.stop()


class PausedCli:
    """`streembit-gateway acl apply` in a subprocess, stopped at PHASE until `go()`."""

    def __init__(self, w: World, text: str, phase: str, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.file = folder / "acl.jws"
        self.file.write_text(text)
        self.args = [GW_CLI, "acl", "apply", "--state", str(w.state), str(self.file), "--json"]
        self.env = {TEST_PAUSE_ENV: f"{phase}:{folder}"}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while not (self.folder / "reached").exists():
            assert self.proc.returncode is None, await self.proc.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the CLI never reached its pause"
            await asyncio.sleep(0.01)

    def go(self) -> None:
        (self.folder / "go").touch()

    async def result(self) -> tuple[int, dict[str, object]]:
        assert self.proc is not None
        out, err = await asyncio.wait_for(self.proc.communicate(), CLI_TIMEOUT_S)
        assert out, err
        return int(self.proc.returncode or 0), json.loads(out)


@contextmanager
def version_watch(state: Path) -> Iterator[list[int]]:
    """Read acl.jws as fast as possible in a thread; yields every version seen, in order."""
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                v = on_disk(state)
            except (FileNotFoundError, AclError):
                continue
            if not seen or seen[-1] != v:
                seen.append(v)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(5)


async def gateway_version(gw: Gateway, want: int, within_s: float = 5.0) -> int | None:
    """The gateway's version in memory once it is WANT (or after WITHIN_S)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        cur = gw.acl.current
        if cur is not None and cur.version == want:
            return want
        await asyncio.sleep(0.05)
    cur = gw.acl.current
    return cur.version if cur else None


# ------------------------------------------------------------------ deterministic interleavings
async def test_cli_that_read_v2_cannot_roll_back_v4_acknowledged_over_http(
    world: World, tmp_path: Path
) -> None:
    """The interleaving of the issue: CLI loads v2; PUT v4 -> 200; CLI installs v3: refused."""
    w = world
    AclStore(w.state, w.gw_key.id).install(signed(w, 2))
    async with live(w) as g:
        cli = PausedCli(w, signed(w, 3), "before-lock", tmp_path / "cli")
        await cli.start()  # the CLI has loaded the store (v2 in its memory) and stops
        status, body = await g.put(signed(w, 4, stranger=True))
        assert (status, body["version"]) == (200, 4)
        cli.go()
        code, out = await cli.result()
        assert code == 1 and out["error"] == "acl_rollback", out
        assert on_disk(w.state) == 4 and read_mark(w.state, w.owner.id) == 4
        await asyncio.sleep(1.5)  # past the gateway's ACL poll: nothing goes backwards
        assert g.gw.acl.current is not None and g.gw.acl.current.version == 4
        tok = {"Authorization": f"Bearer {w.token(w.stranger)}"}
        url = f"{g.gw.http_url}/things/living-room/properties/temperature"
        async with g.http.get(url, headers=tok) as r:
            assert r.status == 200, "the grant made in v4 is in force"
    async with live(w) as again:  # a restart boots with v4, the grant of v4 still there
        cur = again.gw.acl.current
        assert cur is not None and cur.version == 4 and cur.grant_for(w.stranger.id)


async def test_put_waits_for_a_cli_holding_the_lock_without_blocking_the_gateway(
    world: World, tmp_path: Path
) -> None:
    """CLI holds the install lock between read and write; PUT v4 waits in a worker thread while
    the gateway keeps serving; CLI writes v3 (acknowledged), then v4 lands on top."""
    w = world
    AclStore(w.state, w.gw_key.id).install(signed(w, 2))
    async with live(w) as g:
        cli = PausedCli(w, signed(w, 3), "locked", tmp_path / "cli")
        await cli.start()  # lock held, v3 verified against v2 on disk, nothing written
        put = asyncio.create_task(g.put(signed(w, 4)))
        t0 = time.monotonic()
        tok = {"Authorization": f"Bearer {w.token(w.user)}"}
        for _ in range(5):  # the event loop is free: other requests are served at once
            async with g.http.get(
                f"{g.gw.http_url}/things/front-door/properties/state", headers=tok
            ) as r:
                assert r.status == 200
        assert time.monotonic() - t0 < 2.0
        await asyncio.sleep(0.3)
        assert not put.done(), "the PUT waits for the lock"
        assert on_disk(w.state) == 2
        cli.go()
        code, out = await cli.result()
        assert (code, out["version"]) == (0, 3), out  # v3 acknowledged to the CLI user...
        status, body = await asyncio.wait_for(put, 10)
        assert (status, body["version"]) == (200, 4)  # ...and superseded by v4
        assert on_disk(w.state) == 4
        await asyncio.sleep(1.5)
        assert g.gw.acl.current is not None and g.gw.acl.current.version == 4
    async with live(w) as again:
        assert again.gw.acl.current is not None and again.gw.acl.current.version == 4


async def test_a_stuck_install_lock_is_a_503_busy_and_changes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    AclStore(w.state, w.gw_key.id).install(signed(w, 2))
    monkeypatch.setattr(acl_install, "INSTALL_LOCK_TIMEOUT_S", 0.4)
    async with live(w) as g:
        with install_lock(w.state):  # another installer that never lets go
            status, body = await g.put(signed(w, 3))
            assert status == 503 and body["error"] == "busy", body
            assert str(body["reason"]).startswith("acl_busy:")
            async with PeerClient(w.owner) as client:
                conn = await client.connect(g.p2p.url, g.gw.identity.public)
                with pytest.raises(PeerRequestError) as err:
                    await conn.acl_push(signed(w, 3))
                assert err.value.code == "busy" and err.value.status == 503
        assert on_disk(w.state) == 2 and g.gw.acl.current.version == 2  # type: ignore[union-attr]
        status, body = await g.put(signed(w, 3))  # lock free again: installed
        assert (status, body["version"]) == (200, 3)


# ------------------------------------------------------------------ concurrent pushers
async def test_concurrent_pushers_never_lose_an_acknowledged_version(
    world: World, tmp_path: Path
) -> None:
    """CLI processes, HTTP, P2P and other-process stores push random versions at once."""
    w = world
    rng = random.Random(20261204)
    AclStore(w.state, w.gw_key.id).install(signed(w, 1))
    n_cli, n_http, n_p2p, n_thread = 4, 12, 12, 8
    versions = [rng.randint(2, 40) for _ in range(n_cli + n_http + n_p2p + n_thread)]
    texts = [signed(w, v) for v in versions]
    acked: list[tuple[str, int]] = []
    refused: list[tuple[str, int, str]] = []

    def record(via: str, version: int, ok: bool, got: object, why: str = "") -> None:
        if ok:
            assert got == version
            acked.append((via, version))
        else:
            refused.append((via, version, why))

    async with live(w) as g:
        memory: list[int] = []
        done = asyncio.Event()

        async def watch_memory() -> None:
            while not done.is_set():
                cur = g.gw.acl.current
                if cur is not None and (not memory or memory[-1] != cur.version):
                    memory.append(cur.version)
                await asyncio.sleep(0.002)

        clis = [PausedCli(w, texts[i], "before-lock", tmp_path / f"cli{i}") for i in range(n_cli)]
        await asyncio.gather(*(c.start() for c in clis))  # all loaded, all waiting for "go"

        async def via_cli(c: PausedCli, v: int) -> None:
            code, out = await c.result()
            record("cli", v, code == 0, out.get("version"), str(out.get("error")))

        async def via_http(text: str, v: int) -> None:
            status, body = await g.put(text)
            record("http", v, status == 200, body.get("version"), str(body.get("reason")))

        async def via_p2p(conn: object, text: str, v: int) -> None:
            try:
                out = await conn.acl_push(text)  # type: ignore[attr-defined]
            except PeerRequestError as exc:
                record("p2p", v, False, None, exc.reason)
            else:
                record("p2p", v, True, out.get("version"))

        def via_store(text: str, v: int) -> None:  # like another process: its own store
            store = AclStore(w.state, w.gw_key.id)
            try:
                got = store.install(text).version
            except AclError as exc:
                record("store", v, False, None, exc.code)
            else:
                record("store", v, True, got)

        async with PeerClient(w.owner) as c1, PeerClient(w.owner) as c2:
            conns = [await c.connect(g.p2p.url, g.gw.identity.public) for c in (c1, c2)]
            watcher = asyncio.create_task(watch_memory())
            with version_watch(w.state) as seen:
                jobs: list[asyncio.Future[None]] = []
                i = n_cli
                for c in clis:
                    c.go()
                jobs += [asyncio.ensure_future(via_cli(c, versions[k])) for k, c in enumerate(clis)]
                for k in range(n_http):
                    jobs.append(asyncio.ensure_future(via_http(texts[i + k], versions[i + k])))
                i += n_http
                for k in range(n_p2p):
                    conn = conns[k % 2]
                    jobs.append(asyncio.ensure_future(via_p2p(conn, texts[i + k], versions[i + k])))
                i += n_p2p
                for k in range(n_thread):
                    jobs.append(
                        asyncio.ensure_future(
                            asyncio.to_thread(via_store, texts[i + k], versions[i + k])
                        )
                    )
                await asyncio.wait_for(asyncio.gather(*jobs), 120)
                final = on_disk(w.state)
            top = max(v for _, v in acked)
            assert await gateway_version(g.gw, top) == top  # CLI installs reach it by its poll
            done.set()
            await watcher

    assert len(acked) + len(refused) == len(versions)
    assert final == top, (final, acked)
    assert all(v <= final for _, v in acked), "every acknowledged version stays or is superseded"
    assert all("acl_rollback" in why for _, _, why in refused), refused
    assert all(v <= final for _, v, _ in refused)
    assert seen == sorted(set(seen)), f"acl.jws went backwards: {seen}"
    assert memory == sorted(set(memory)), f"the gateway's ACL went backwards: {memory}"
    assert {via for via, _ in acked} | {via for via, _, _ in refused} == {
        "cli",
        "http",
        "p2p",
        "store",
    }
    assert read_mark(w.state, w.owner.id) == final
    async with live(w) as again:  # after a restart: the highest acknowledged version
        assert again.gw.acl.current is not None and again.gw.acl.current.version == final


# ------------------------------------------------------------------ the high-water mark
@pytest.mark.parametrize("damage", ["corrupt", "deleted"])
def test_corrupt_or_deleted_acl_file_keeps_rollback_protection(world: World, damage: str) -> None:
    w = world
    AclStore(w.state, w.gw_key.id).install(signed(w, 5))
    path = w.state / ACL_FILE
    if damage == "corrupt":
        atomic_write_text(path, "not a jws at all")
    else:
        path.unlink()
    store = AclStore(w.state, w.gw_key.id)
    assert store.current is None  # fail closed: only the owner has access
    for old in (3, 5):
        with pytest.raises(AclError) as err:
            store.install(signed(w, old))
        assert err.value.code == "acl_rollback"
    assert store.install(signed(w, 6)).version == 6
    assert AclStore(w.state, w.gw_key.id).current.version == 6  # type: ignore[union-attr]


def test_lower_version_put_in_place_is_refused_at_start_and_by_a_running_store(
    world: World,
) -> None:
    w = world
    running = AclStore(w.state, w.gw_key.id)
    running.install(signed(w, 5))
    atomic_write_text(w.state / ACL_FILE, signed(w, 4))  # behind the installers' back
    assert running.reload_if_changed() is None
    assert running.current is not None and running.current.version == 5
    assert AclStore(w.state, w.gw_key.id).current is None  # below the mark: owner only
    with pytest.raises(AclError) as err:
        running.install(signed(w, 5))
    assert err.value.code == "acl_rollback"
    assert running.install(signed(w, 6)).version == 6
    assert AclStore(w.state, w.gw_key.id).current.version == 6  # type: ignore[union-attr]


def test_mark_written_with_the_acl_and_reset_by_an_ownership_transfer(world: World) -> None:
    w = world
    store = AclStore(w.state, w.gw_key.id)
    store.install(signed(w, 9))
    mark = json.loads((w.state / MARK_FILE).read_text())
    assert mark == {"owner": w.owner.id, "version": 9}
    assert (w.state / MARK_FILE).stat().st_mode & 0o777 == 0o600
    new_owner = generate_keypair()
    store.transfer_owner(new_owner.public, from_owner_id=w.owner.id)
    assert not (w.state / MARK_FILE).exists() and not (w.state / ACL_FILE).exists()
    acl = dataclasses.replace(new_acl(w.gw_key.id), version=1)
    assert store.install(sign_acl(acl, new_owner)).version == 1  # the new owner starts again
    assert read_mark(w.state, new_owner.id) == 1 and read_mark(w.state, w.owner.id) is None


async def test_an_install_cancelled_while_waiting_still_lands_and_notifies_in_the_loop(
    world: World,
) -> None:
    w = world
    store = AclStore(w.state, w.gw_key.id)
    store.install(signed(w, 2))
    calls: list[tuple[int, bool]] = []
    store.on_change.append(
        lambda: calls.append(
            (store.current.version, threading.current_thread() is threading.main_thread())  # type: ignore[union-attr]
        )
    )
    with install_lock(w.state):
        task = asyncio.create_task(store.install_async(signed(w, 3)))
        await asyncio.sleep(0.1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # the cancellation reaches the caller...
    for _ in range(250):  # ...and the worker, once the lock is free, installs all the same
        if calls:
            break
        await asyncio.sleep(0.02)
    assert calls == [(3, True)], "listeners ran once, in the event loop's thread"
    assert on_disk(w.state) == 3 and store.current is not None and store.current.version == 3
