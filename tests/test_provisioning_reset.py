"""Factory reset (keeps the audit log, refuses beside a running gateway), the reset button
(gpiozero MockFactory), and the companions' pairing data."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.acl import AclStore
from gateway.app import Gateway
from gateway.audit import AuditLog
from gateway.errors import ProvisioningError
from gateway.provisioning.pairing import (
    PAIRINGS_FILE,
    companion_pairing,
    forget_pairing,
    list_pairings,
)
from gateway.provisioning.reset import WIPED_FILES, ResetButton, factory_reset, gateway_reset
from gateway.provisioning.setup_code import SetupCodeStore
from gateway.state import StateDir
from tests.helpers import Running, World, demo_config

BUTTON_PIN = 27


def _audit(state: Path, op: str) -> list[dict[str, object]]:
    log = AuditLog.open(state / "audit.sqlite3")
    try:
        return [r.as_dict() for r in log.query(limit=1000) if r.op == op]
    finally:
        log.close()


def _fill(world: World) -> None:
    """A provisioned state folder with everything a reset removes."""
    SetupCodeStore(world.state).ensure()
    companion_pairing(world.state, "boiler", "192.168.1.20", 8883)
    (world.state / "transfers.json").write_text('{"v": 1, "used": {}}')
    log = AuditLog.open(world.state / "audit.sqlite3")
    log.close()


def test_reset_wipes_keys_owner_acl_pairings_and_keeps_the_audit(world: World) -> None:
    world.install()
    _fill(world)
    before = _audit(world.state, "reset")
    removed = factory_reset(world.state)
    assert sorted(removed) == sorted(WIPED_FILES)
    left = {p.name for p in world.state.iterdir()}
    assert not left & set(WIPED_FILES) and "audit.sqlite3" in left
    rows = _audit(world.state, "reset")
    assert len(rows) == len(before) + 1 and rows[0]["allowed"]
    assert "kept the audit log" in str(rows[0]["detail"])
    assert str(rows[0]["subject"]).startswith("local:")
    # a fresh identity afterwards, unowned
    kp, created = StateDir(world.state).init_identity()
    assert created and kp.id != world.gw_key.id
    assert AclStore(world.state, kp.id).owner is None


async def test_reset_refused_while_a_gateway_runs(running: Running) -> None:
    state = running.world.state
    with pytest.raises(ProvisioningError, match="running") as info:
        factory_reset(state)
    assert info.value.code == "gateway_running"
    assert (state / "gateway.key").exists() and (state / "owner.pub").exists()
    await asyncio.sleep(0.05)
    rows = _audit(state, "reset")
    assert rows and not rows[0]["allowed"] and "gateway_running" in str(rows[0]["reason"])


def test_reset_of_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError) as info:
        factory_reset(tmp_path / "nope")
    assert info.value.code == "no_state"
    assert not (tmp_path / "nope").exists()


def test_reset_button_long_press_only() -> None:
    factory = MockFactory()
    fired: list[int] = []
    button = ResetButton(BUTTON_PIN, lambda: fired.append(1), hold_time=0.05, pin_factory=factory)
    try:
        pin = factory.pin(BUTTON_PIN)
        pin.drive_low()  # pressed (pull-up: active low)...
        pin.drive_high()  # ...and let go at once: no reset
        assert not button.fired.wait(0.15) and fired == []
        pin.drive_low()  # held
        assert button.fired.wait(2.0)
        pin.drive_high()
        assert fired == [1]
    finally:
        button.close()
    with pytest.raises(ValueError):
        ResetButton(BUTTON_PIN, lambda: None, hold_time=0, pin_factory=factory)


async def test_button_resets_the_running_gateway(world: World) -> None:
    world.install()
    _fill(world)
    gw = await Gateway.create(demo_config(world.state))
    await gw.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    factory = MockFactory()

    def done() -> None:
        loop.call_soon_threadsafe(stopped.set)

    action = gateway_reset(gw.state.path, gw.acl, gw.audit, done)
    button = ResetButton(BUTTON_PIN, action, hold_time=0.05, pin_factory=factory)
    try:
        assert gw.acl.owner is not None
        factory.pin(BUTTON_PIN).drive_low()
        await asyncio.wait_for(stopped.wait(), 3.0)
        assert gw.acl.owner is None and gw.acl.current is None  # nobody has access now
        assert not any((world.state / n).exists() for n in WIPED_FILES)
    finally:
        button.close()
        await gw.stop()
    rows = _audit(world.state, "reset")
    assert rows[0]["allowed"] and rows[0]["subject"] == "button"
    assert (world.state / "audit.sqlite3").exists()


# ------------------------------------------------------------------ pairing
def test_companion_pairing_is_idempotent_private_and_complete(world: World) -> None:
    first = companion_pairing(world.state, "boiler", "192.168.1.20", 8883)
    assert first["gateway"] == world.gw_key.id and first["device"] == "boiler"
    assert first["broker"] == {"host": "192.168.1.20", "port": 8883}
    assert first["username"] == "companion-boiler" and len(first["password"]) >= 32
    assert len(bytes.fromhex(first["hmac_key"])) == 32
    again = companion_pairing(StateDir(world.state), "boiler", "192.168.1.20", 8883)
    assert again == first
    moved = companion_pairing(world.state, "boiler", "10.0.0.2", 1883)
    assert moved["broker"] == {"host": "10.0.0.2", "port": 1883}
    assert moved["hmac_key"] == first["hmac_key"] and moved["password"] == first["password"]
    other = companion_pairing(world.state, "porch-light", "192.168.1.20", 8883)
    assert other["hmac_key"] != first["hmac_key"] and other["password"] != first["password"]
    path = world.state / PAIRINGS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert set(json.loads(path.read_text())["devices"]) == {"boiler", "porch-light"}
    assert list_pairings(world.state) == ["boiler", "porch-light"]
    assert forget_pairing(world.state, "boiler") and not forget_pairing(world.state, "boiler")
    assert list_pairings(world.state) == ["porch-light"]


def test_companion_pairing_refuses_bad_input(world: World) -> None:
    for name, host, port, code in (
        ("Boiler", "h", 1, "bad_device_name"),
        ("-x", "h", 1, "bad_device_name"),
        ("a" * 40, "h", 1, "bad_device_name"),
        ("ok", "", 1, "bad_broker"),
        ("ok", "a b", 1, "bad_broker"),
        ("ok", "h", 0, "bad_broker"),
        ("ok", "h", 70000, "bad_broker"),
    ):
        with pytest.raises(ProvisioningError) as info:
            companion_pairing(world.state, name, host, port)
        assert info.value.code == code, name
    assert not (world.state / PAIRINGS_FILE).exists()
    (world.state / PAIRINGS_FILE).write_text("[]")
    with pytest.raises(ProvisioningError) as info:
        companion_pairing(world.state, "ok", "h", 1)
    assert info.value.code == "pairings_damaged"


async def test_configured_reset_button_resets_a_running_gateway(tmp_path: Path) -> None:
    """`[gateway.reset_button]` wired into the running gateway: a long press wipes the keys,
    owner and ACL, keeps the audit log, and asks the gateway to stop."""
    import asyncio
    import dataclasses

    from gpiozero.pins.mock import MockFactory

    from gateway.app import Gateway
    from gateway.config import ResetButtonConfig
    from gateway.identity import generate_keypair
    from gateway.state import StateDir
    from tests.helpers import demo_config

    state = tmp_path / "st"
    gw_key, _ = StateDir(state).init_identity()
    AclStore(state, gw_key.id).pin_owner(generate_keypair().public)
    cfg = dataclasses.replace(
        demo_config(state), reset_button=ResetButtonConfig(pin=27, hold_s=2.0)
    )
    gw = await Gateway.create(cfg)
    factory = MockFactory()
    gw.reset_pin_factory = factory
    await gw.start()
    try:
        pin = factory.pin(27)
        pin.drive_low()  # press ... gpiozero's hold timer fires after hold_s
        await asyncio.wait_for(gw.reset_requested.wait(), 6)
        pin.drive_high()
        assert not (state / "gateway.key").exists() and not (state / "owner.pub").exists()
        assert gw.acl.owner is None
        assert (state / "audit.sqlite3").exists()
    finally:
        await gw.stop()
