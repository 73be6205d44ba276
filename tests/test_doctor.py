"""`streembit-gateway doctor`: each check against the real thing where there is one (a mosquitto
broker, a pty serial port, a DHT node on 127.0.0.1) and the fix it prints."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from gateway.cli.gateway_cli import main as gateway_main
from gateway.config import GatewayConfig, P2pConfig, ThingConfig
from gateway.ops import doctor
from gateway.p2p import DhtNode
from tests.helpers import World

BROKER_START_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto(tmp_path: Path, anonymous: bool) -> Iterator[int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is missing: apt-get install mosquitto", pytrace=False)
    port = free_port()
    (tmp_path / "passwd").write_text("")
    conf = tmp_path / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous {'true' if anonymous else 'false'}\n"
        f"password_file {tmp_path / 'passwd'}\npersistence false\nuser root\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.01)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cfg_with(*things: ThingConfig, p2p: P2pConfig | None = None) -> GatewayConfig:
    return GatewayConfig(
        name="t", state_dir=Path("/nonexistent"), things=things, p2p=p2p or P2pConfig()
    )


def thing(driver: str, **settings: object) -> ThingConfig:
    return ThingConfig(
        "door", "lock", "Door", driver=driver, driver_settings=MappingProxyType(dict(settings))
    )


def test_broker_check_against_a_real_mosquitto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mosquitto(tmp_path, anonymous=False) as port:
        monkeypatch.setattr(doctor.network, "BROKER_DEFAULT", ("127.0.0.1", port))
        (c,) = doctor.check_broker(None, tmp_path)
        assert c.status == "ok" and "refuses anonymous clients" in c.detail
        refused = doctor.mqtt_probe("127.0.0.1", port, "nobody", "wrong")
        assert refused.is_failure and refused.value in doctor.LOGIN_REFUSED, refused
    with mosquitto(tmp_path, anonymous=True) as port:
        monkeypatch.setattr(doctor.network, "BROKER_DEFAULT", ("127.0.0.1", port))
        (c,) = doctor.check_broker(None, tmp_path)
        assert c.status == "warn" and "allow_anonymous false" in c.fix
        assert not doctor.mqtt_probe("127.0.0.1", port).is_failure
    monkeypatch.setattr(doctor.network, "BROKER_DEFAULT", ("127.0.0.1", free_port()))
    (c,) = doctor.check_broker(None, tmp_path)
    assert c.status == "warn" and "apt-get install mosquitto" in c.fix
    needed = cfg_with(thing("companion", broker=f"mqtt://127.0.0.1:{free_port()}"))
    (c,) = doctor.check_broker(needed, tmp_path)
    assert c.status == "fail"  # a companion Thing needs it


def test_broker_probe_of_a_silent_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Something listens but never answers CONNECT: a named timeout, no hang."""
    monkeypatch.setattr(doctor.network, "CONNECT_TIMEOUT_S", 0.3)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no CONNACK within 0\.3 s"):
            doctor.mqtt_probe("127.0.0.1", srv.getsockname()[1])
        assert time.monotonic() - t0 < 2


def test_serial_and_gpio_checks(tmp_path: Path) -> None:
    main, sub = pty.openpty()
    try:
        port = os.ttyname(sub)
        (c,) = doctor.check_serial(cfg_with(thing("serial", port=port)))
        assert c.status == "ok" and port in c.detail
    finally:
        os.close(main)
        os.close(sub)
    (c,) = doctor.check_serial(cfg_with(thing("serial", port="/dev/serial/by-id/gone")))
    assert c.status == "fail" and "by-id" in c.fix
    assert doctor.check_serial(cfg_with(thing("sim")))[0].status == "ok"
    gpio = cfg_with(thing("gpio"))
    (c,) = doctor.check_gpio(gpio, tmp_path)
    assert c.status == "fail" and "gpiochip" in c.detail
    (tmp_path / "gpiochip0").write_text("")
    assert doctor.check_gpio(gpio, tmp_path)[0].status == "ok"
    assert doctor.check_gpio(cfg_with(thing("gpio", pin_factory="mock")), tmp_path)[0].detail == (
        "no Thing uses GPIO"
    )


async def test_dht_join_through_a_real_node() -> None:
    seed = DhtNode("127.0.0.1", 0)
    await seed.start()
    try:
        assert await doctor.network._dht_join("127.0.0.1", [("127.0.0.1", seed.port)]) >= 1
    finally:
        await seed.stop()


def test_dht_check_without_and_with_a_dead_bootstrap() -> None:
    (c,) = doctor.check_dht(cfg_with(p2p=P2pConfig(enabled=True)), {})
    assert c.status == "warn" and "bootstrap" in c.fix
    dead = P2pConfig(enabled=True, bootstrap=(("127.0.0.1", free_port()),))
    (c,) = doctor.check_dht(cfg_with(p2p=dead), {})
    assert c.status == "fail" and "no bootstrap node answered" in c.detail
    assert doctor.check_dht(cfg_with(), {})[0].detail.startswith("P2P is off")


def test_state_key_and_audit_checks(world: World) -> None:
    s = world.state
    assert {c.status for c in doctor.check_state(s)} == {"ok"}
    keys = {c.name: c for c in doctor.check_keys(s)}
    assert keys["owner"].status == "ok" and keys["ACL"].detail.startswith("none installed")
    (s / "acl.jws").write_text("not a jws")
    os.chmod(s / "acl.jws", 0o600)
    assert {c.name: c for c in doctor.check_keys(s)}["ACL"].status == "fail"
    os.chown(s / "acl.jws", 4242, 4242)  # left by another user (e.g. a command run as root)
    owner = {c.name: c for c in doctor.check_state(s)}["state ownership"]
    assert owner.status == "fail" and owner.fix.startswith("sudo chown -R")
    os.chmod(s / "acl.jws", 0o666)
    perms = {c.name: c for c in doctor.check_state(s)}["state permissions"]
    assert perms.status == "fail" and perms.fix.startswith("chmod 600")
    (s / "VERSION").write_text("1\n")
    version = {c.name: c for c in doctor.check_state(s)}["state version"]
    assert version.status == "warn" and "streembit-gateway migrate" in version.fix
    assert doctor.check_audit(s)[0].detail.endswith("not created yet (made at the first start)")
    with sqlite3.connect(s / "audit.sqlite3") as db:
        db.execute("CREATE TABLE audit (id INTEGER)")
        db.execute("INSERT INTO audit VALUES (1)")
    assert doctor.check_audit(s)[0].detail == "1 records, integrity ok"
    (s / "audit.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    (c,) = doctor.check_audit(s)
    assert c.status == "fail" and "move the file aside" in c.fix


def test_clock_check() -> None:
    assert doctor.check_clock(lambda: 0.0)[0].status == "fail"
    assert "timedatectl" in doctor.check_clock(lambda: 0.0)[0].fix
    assert doctor.check_clock()[0].status == "ok"


def test_doctor_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nnmae = 1\n")
    assert gateway_main(["doctor", "--config", str(bad), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["checks"][0]["name"] == "config"
    assert "nmae" in out["checks"][0]["detail"]
    good = tmp_path / "good.toml"
    good.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n')
    assert gateway_main(["init", "--state", str(tmp_path / "state")]) == 0
    capsys.readouterr()
    code = gateway_main(["doctor", "--config", str(good)])
    text = capsys.readouterr().out
    assert "[ok  ] gateway key" in text and "[WARN] owner" in text and "fix: " in text
    assert code == (1 if "[FAIL]" in text else 0)
