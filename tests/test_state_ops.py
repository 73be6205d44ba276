"""The state folder under bad conditions: schema versions and migrations, wrong permissions, a
second gateway on the same folder, and what a refusal leaves behind (nothing corrupt)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway import state as state_mod
from gateway.app import Gateway
from gateway.errors import StreembitError
from gateway.ops import runinfo
from gateway.state import MIGRATIONS, STATE_VERSION, Migration, StateDir, StateError
from tests.helpers import World, demo_config


def snapshot(path: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """name -> sha256 and mode of every file (the audit log and the lock left out if asked)."""
    out = {}
    for f in sorted(path.iterdir()):
        if f.is_file() and not f.name.startswith(skip):
            out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest() + oct(f.stat().st_mode)
    return out


def test_new_folder_is_stamped_current(tmp_path: Path) -> None:
    st = StateDir(tmp_path / "s")
    st.init_identity()
    assert (tmp_path / "s" / "VERSION").read_text() == f"{STATE_VERSION}\n"
    assert st.version() == STATE_VERSION and st.pending_migrations() == []


def test_old_folder_is_migrated_forward_under_the_lock(world: World) -> None:
    s = world.state
    world.install()
    (s / "VERSION").write_text("1\n")
    os.chmod(s / "acl.jws", 0o640)  # an older version left it group-readable
    os.chmod(s / "owner.pub", 0o600)
    st = StateDir(s)
    assert [m.from_version for m in st.pending_migrations()] == [1]
    st.ensure()  # checking is not migrating
    assert st.version() == 1
    st.lock()
    try:
        assert st.version() == STATE_VERSION
        assert oct(os.stat(s / "acl.jws").st_mode & 0o777) == "0o600"
        assert oct(os.stat(s / "owner.pub").st_mode & 0o777) == "0o644"
    finally:
        st.unlock()


def test_folder_without_version_file_is_a_legacy_one(world: World) -> None:
    (world.state / "VERSION").unlink()
    st = StateDir(world.state)
    assert st.version() == 0
    assert [m.from_version for m in st.pending_migrations()] == [0, 1]
    st.lock()
    st.unlock()
    assert st.version() == STATE_VERSION


async def test_newer_state_is_refused_and_left_alone(world: World) -> None:
    (world.state / "VERSION").write_text("99\n")
    before = snapshot(world.state)
    with pytest.raises(StateError) as exc:
        await Gateway.create(demo_config(world.state))
    assert exc.value.code == "state_too_new"
    assert "newer than this gateway's" in str(exc.value)
    assert snapshot(world.state) == before


def test_garbage_version_file_is_a_clear_error(world: World) -> None:
    (world.state / "VERSION").write_text("two\n")
    with pytest.raises(StateError) as exc:
        StateDir(world.state).ensure()
    assert exc.value.code == "state_version" and "'two'" in str(exc.value)


def test_a_failed_migration_step_keeps_the_last_good_version(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(path: Path) -> None:
        raise OSError(28, "No space left on device")

    steps = dict(MIGRATIONS)
    steps[1] = Migration(1, "a step that fails", explode)
    monkeypatch.setattr(state_mod, "MIGRATIONS", steps)
    (world.state / "VERSION").unlink()  # legacy: 0 -> 1 works, 1 -> 2 fails
    st = StateDir(world.state)
    with pytest.raises(StateError) as exc:
        st.lock()
    assert exc.value.code == "state_migration" and "still at version 1" in str(exc.value)
    assert st.version() == 1  # resumes from here next time
    assert not st.is_locked_elsewhere()  # the lock was released
    monkeypatch.setattr(state_mod, "MIGRATIONS", MIGRATIONS)
    st.lock()
    st.unlock()
    assert st.version() == STATE_VERSION


@pytest.mark.parametrize(
    ("name", "mode", "fix"),
    [
        (".", 0o777, "chmod 700"),
        ("acl.jws", 0o666, "chmod 600"),
        ("owner.pub", 0o664, "chmod 644"),
        ("gateway.key", 0o640, "chmod 600"),
    ],
)
async def test_wrong_permissions_are_refused_with_the_fix(
    world: World, name: str, mode: int, fix: str
) -> None:
    world.install()
    os.chmod(world.state / name, mode)
    before = snapshot(world.state)
    with pytest.raises(StreembitError) as exc:
        await Gateway.create(demo_config(world.state))
    assert fix in str(exc.value)
    assert snapshot(world.state) == before


def test_unwritable_folder_names_the_user_to_run_as(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = StateDir(tmp_path / "s")
    st.ensure()
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(StateError) as exc:
        st.ensure()
    assert exc.value.code == "state_not_writable" and "sudo -u streembit" in str(exc.value)


async def test_second_gateway_on_the_same_folder_is_refused(world: World) -> None:
    world.install()
    first = await Gateway.create(demo_config(world.state))
    await first.start()
    try:
        assert StateDir(world.state).is_locked_elsewhere()
        keep = ("audit.sqlite3", ".lock")
        before = snapshot(world.state, keep)
        with pytest.raises(StateError) as exc:
            await Gateway.create(demo_config(world.state))
        assert exc.value.code == "state_locked"
        assert snapshot(world.state, keep) == before
        assert first.audit.healthy  # the running one is not disturbed
    finally:
        await first.stop()
    assert not StateDir(world.state).is_locked_elsewhere()


def test_config_drift_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\nname = "a"\n')
    run = runinfo.write(tmp_path, {"http": "http://127.0.0.1:1"}, str(cfg))
    assert run["config_sha256"] == runinfo.config_digest(cfg)
    assert runinfo.drift(runinfo.read(tmp_path)) is None
    cfg.write_text('[gateway]\nname = "b"\n')
    d = runinfo.drift(runinfo.read(tmp_path))
    assert d is not None and "was edited" in d.message() and "systemctl restart" in d.message()
    assert runinfo.drift(runinfo.read(tmp_path), tmp_path / "other.toml") is None
    cfg.unlink()
    d = runinfo.drift(runinfo.read(tmp_path))
    assert d is not None and "missing" in d.message()
    assert runinfo.drift(runinfo.write(tmp_path, {}, "<demo>")) is None
