"""The gateway owns its life cycle: hot ACL reload survives a failing audit log, a dying task of
the gateway is audited and restarted, running.json comes and goes with start/stop, and the CLI
says "locks locked, heaters off" only after the Things' stop() has returned."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gateway.cli.serve as serve_mod
from device_drivers.sim import SimDriver
from gateway.acl import Grant
from gateway.app import Gateway
from gateway.config import SensorSafety, ThingConfig, default_config
from gateway.errors import AuditError
from gateway.ops import runinfo
from gateway.ops.view import GatewayView
from gateway.things import Switch
from tests.helpers import ALL_OPS, Running, demo_config

WAIT_S = 15.0  # generous: ACL polls are 1 s apart, audit retries back off from 1 s


async def _until(check: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _ops(gw: Gateway, op: str) -> list[str]:
    return [r.detail for r in gw.audit.query(limit=200) if r.op == op]


async def test_hot_acl_reload_survives_a_failing_audit_log(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, world = running.gw, running.world
    real = gw.audit.append_nowait
    failing = True
    refused = 0

    def append_nowait(rec: Any) -> None:
        nonlocal refused
        if failing:
            refused += 1
            raise AuditError("the audit log is overloaded")
        real(rec)

    monkeypatch.setattr(gw.audit, "append_nowait", append_nowait)
    base = gw.acl.current.version if gw.acl.current else 0
    world.install(Grant.for_key(world.stranger.public, things=["front-door"], ops=ALL_OPS))
    await _until(lambda: gw.acl.current and gw.acl.current.version == base + 1, "ACL v+1")
    await _until(lambda: refused >= 2, "a retried audit append")  # refused, then retried
    world.install(Grant.for_key(world.stranger.public, things=["*"], ops=ALL_OPS))
    await _until(lambda: gw.acl.current and gw.acl.current.version == base + 2, "ACL v+2")
    assert not _ops(gw, "aclreload")  # nothing got through yet, and nothing was lost
    failing = False
    want = {f"ACL version {base + 1} picked up", f"ACL version {base + 2} picked up"}
    await _until(lambda: set(_ops(gw, "aclreload")) == want, "the held records audited")
    assert gw.tasks.deaths == 0
    assert "acl-watch" in {t.get_name() for t in gw.tasks.tasks}


async def test_a_dying_acl_watcher_is_audited_and_restarted(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, world = running.gw, running.world
    real = gw.acl.reload_if_changed
    crashes = 0

    def reload_if_changed() -> Any:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError("bug\nin the watcher")
        return real()

    monkeypatch.setattr(gw.acl, "reload_if_changed", reload_if_changed)
    await _until(lambda: crashes == 1, "the watcher to crash")
    await _until(lambda: _ops(gw, "taskdied"), "the death to be audited")
    assert _ops(gw, "taskdied") == ["task acl-watch died: RuntimeError: bug in the watcher"]
    fams = {f.name: f for f in GatewayView(gw).metric_families()}
    assert fams["task_deaths_total"].samples == [({}, 1)]
    base = gw.acl.current.version if gw.acl.current else 0
    world.install(Grant.for_key(world.stranger.public, things=["*"], ops=ALL_OPS))
    await _until(lambda: gw.acl.current and gw.acl.current.version == base + 1, "hot reload")


async def test_a_dying_task_of_a_part_is_audited_by_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part's TaskOwner has no report of its own (here the sensor's poll loop): the gateway's
    audit gets the death all the same, and the loop is restarted."""
    cfg = demo_config(tmp_path / "state")
    env = ThingConfig("env", "sensor", "Environment", safety=SensorSafety(poll_s=0.05))
    gw = await Gateway.create(
        dataclasses.replace(cfg, things=(*cfg.things, env)), create_key=True, sd_notify=False
    )
    sensor = gw.things["env"]
    real = sensor._poll_all  # type: ignore[attr-defined]
    polls = 0

    async def poll_all() -> None:
        nonlocal polls
        polls += 1
        if polls == 2:  # the first is start()'s own reading; the second is the loop's
            raise RuntimeError("bug in the poll")
        await real()

    monkeypatch.setattr(sensor, "_poll_all", poll_all)
    await gw.start()
    try:
        await _until(lambda: _ops(gw, "taskdied"), "the death to be audited")
        assert _ops(gw, "taskdied") == ["task sensor-env-poll died: RuntimeError: bug in the poll"]
        assert gw.task_deaths == 1 and gw.tasks.deaths == 0  # a part's task, not the gateway's
        await _until(lambda: polls >= 4, "the poll loop to run again")
    finally:
        await gw.stop()


async def test_start_and_stop_own_running_json(tmp_path: Path) -> None:
    gw = await Gateway.create(demo_config(tmp_path / "state"), create_key=True, sd_notify=False)
    await gw.start()
    try:
        run = runinfo.read(gw.state.path)
        assert run is not None and run["http"] == gw.http_url and run["pid"] == os.getpid()
        assert "mdns" not in gw.ready_info()  # loopback: mDNS stays off unless asked
        names = {t.get_name() for t in gw.tasks.tasks}
        assert names == {"acl-watch"}  # no config file, no systemd: nothing else runs
    finally:
        stopped = await gw.stop()
    assert stopped.safe and stopped.summary() == "stopped: locks locked, heaters off, state saved"
    assert runinfo.read(gw.state.path) is None and len(gw.tasks) == 0


async def test_stop_reports_a_thing_that_is_not_safe(tmp_path: Path) -> None:
    gw = await Gateway.create(demo_config(tmp_path / "state"), create_key=True, sd_notify=False)
    await gw.start()
    door = gw.things["front-door"]
    await door.invoke_action("unlock", None, "test")
    door.driver.jam_bolt()  # type: ignore[attr-defined]  # the bolt cannot be thrown again
    gw.things["living-room"].driver.fail_writes()  # type: ignore[attr-defined]
    stopped = await gw.stop()
    assert not stopped.safe and len(stopped.unsafe) == 2, stopped
    assert stopped.unsafe[0].startswith("front-door: shutdown: ")
    assert stopped.unsafe[1].startswith("living-room: heater write failed: ")
    assert "NOT confirmed in their safe state: front-door" in stopped.summary()
    assert "locks locked" not in stopped.summary()


async def test_stopped_line_is_printed_only_after_the_things_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    ready = asyncio.Event()

    def fake_print(*parts: object, **_: object) -> None:
        text = " ".join(str(p) for p in parts)
        events.append(f"print {text}")
        if text.startswith("{"):
            ready.set()

    real_stop: dict[str, Callable[[], Any]] = {}
    real_create = Gateway.create

    async def create(*a: Any, **kw: Any) -> Gateway:
        gw = await real_create(*a, **kw)
        for thing in gw.things.values():
            real_stop[thing.name] = thing.stop

            async def stop(name: str = thing.name) -> None:
                await asyncio.sleep(0.05)  # a lock takes its time to throw the bolt
                await real_stop[name]()
                events.append(f"stopped {name}")

            monkeypatch.setattr(thing, "stop", stop)
        return gw

    monkeypatch.setattr(serve_mod, "print", fake_print, raising=False)
    monkeypatch.setattr(Gateway, "create", create)
    args = argparse.Namespace(
        http_port=0, ws_port=None, dht_port=None, bootstrap=[], no_p2p=True,
        mdns_interface=[], no_mdns=True, json=True,
    )  # fmt: skip
    config = default_config(tmp_path / "state", http_port=0)
    serving = asyncio.create_task(serve_mod.serve(config, args, create_key=True), name="test-serve")
    await asyncio.wait_for(ready.wait(), WAIT_S)
    info = json.loads(events[0].removeprefix("print "))
    assert set(info["things"]) == {"front-door", "living-room"}
    os.kill(os.getpid(), signal.SIGTERM)  # serve() handles it: sets its stop event
    assert await asyncio.wait_for(serving, WAIT_S) == 0
    stopping = events.index("print stopping: putting the Things in their safe state")
    stopped = events.index("print stopped: locks locked, heaters off, state saved")
    stops = [events.index("stopped front-door"), events.index("stopped living-room")]
    assert stopping < min(stops) and max(stops) < stopped


async def test_a_switch_whose_safe_state_write_fails_says_so() -> None:
    driver = SimDriver("plug", "switch", {})
    plug = Switch("plug", "Plug", driver)
    await plug.start()
    await plug.stop()
    assert plug.safe_state_problem() is None
    await plug.start()
    driver.fail_writes("relay dead")
    await plug.stop()
    assert "relay dead" in (plug.safe_state_problem() or "")
