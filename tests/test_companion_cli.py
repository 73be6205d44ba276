"""`streembit-gateway companion broker|flash|pair`: the command lines built, --dry-run output,
esptool's offline image check, the pairing written to the board (mpremote replaced by a
recorder: there is no board here), and the broker files (passwd, ACL) that pairing rewrites."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import gateway_cli
from gateway.companion import flash
from gateway.companion.broker import load_credentials, password_line
from gateway.provisioning.pairing import list_pairings
from gateway.state import StateDir

BIN = Path(sys.executable).parent
GATEWAY = BIN / "streembit-gateway"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GATEWAY), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def esp32_image(path: Path) -> Path:
    """A small but valid ESP32 app image (header, two segments, checksum, SHA-256)."""
    from esptool.bin_image import ESP32FirmwareImage, ImageSegment

    img = ESP32FirmwareImage()
    img.entrypoint = 0x40080000
    img.segments = [ImageSegment(0x3FFB0000, b"\x00" * 64), ImageSegment(0x40080000, b"\x01" * 32)]
    for seg in img.segments:
        seg.name = ""
    img.save(str(path))
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    StateDir(tmp_path / "state").init_identity()
    return tmp_path / "state"


def test_flash_dry_run_prints_the_command_lines(tmp_path: Path) -> None:
    fw_dir = tmp_path / "fw"
    fw_dir.mkdir()
    fw = esp32_image(fw_dir / "ESP32_GENERIC-20250415-v1.25.0.bin")
    res = cli("companion", "flash", "--port", "/dev/ttyUSB7", "--firmware", "v1.25.0",
              "--firmware-dir", fw_dir, "--erase", "--dry-run", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    steps = json.loads(res.stdout)["steps"]
    argvs = [s["argv"] for s in steps]
    assert argvs[0][-4:] == ["--chip", "esp32", "image-info", str(fw)]
    assert argvs[1][-5:] == ["--port", "/dev/ttyUSB7", "--baud", "460800", "erase-flash"]
    assert argvs[2][-5:] == ["write-flash", "--flash-size", "detect", "0x1000", str(fw)]
    assert argvs[3][-5:] == ["connect", "/dev/ttyUSB7", "mip", "install", "umqtt.simple"]
    copies = [a[-2:] for a in argvs if "cp" in a]
    assert [c[1] for c in copies] == [f":{n}" for n in flash.COMPANION_FILES]
    assert argvs[-1][-1] == "reset" and argvs[-1][-2] == "/dev/ttyUSB7"
    human = cli("companion", "flash", "--port", "/dev/ttyUSB7", "--dry-run")
    # no --firmware: the first step checks that MicroPython is there, and says so up front
    assert human.returncode == 0 and "would run 9 steps" in human.stdout
    assert "1. check that the board runs MicroPython" in human.stdout
    assert "a blank board needs --firmware" in human.stderr
    assert "mpremote connect /dev/ttyUSB7 fs cp" in human.stdout


def test_flash_dry_run_needs_no_port_and_a_real_run_does() -> None:
    dry = cli("companion", "flash", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "mpremote connect PORT fs cp" in dry.stdout
    real = cli("companion", "flash")
    assert real.returncode == 2 and "--port" in real.stderr and "Traceback" not in real.stderr
    assert real.stdout == ""


def test_flash_without_firmware_on_a_board_without_micropython(tmp_path: Path) -> None:
    # the real mpremote against a port with no MicroPython behind it: stopped at step 1, and told
    # that a blank board needs --firmware (nothing else ran)
    res = cli("companion", "flash", "--port", tmp_path / "ttyUSB-none")
    assert res.returncode == 1
    assert "[1/9] check that the board runs MicroPython" in res.stdout and "[2/" not in res.stdout
    assert "step 1/9" in res.stderr and "a blank board needs --firmware FILE" in res.stderr


def test_esptool_checks_the_image_offline(tmp_path: Path) -> None:
    good = esp32_image(tmp_path / "good.bin")
    argv = flash.esptool("--chip", "esp32", "image-info", str(good))
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0 and "(valid)" in ok.stdout, ok.stdout + ok.stderr
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a firmware image" * 10)
    # the real command: refuses the file at its first (offline) step, never opens the port
    res = cli("companion", "flash", "--port", "/dev/null-no-board", "--firmware", bad)
    assert res.returncode == 1
    assert "[1/" in res.stdout and "check the firmware image" in res.stdout
    assert "step 1/" in res.stderr


def test_firmware_name_must_be_unambiguous(tmp_path: Path) -> None:
    (tmp_path / "ESP32_GENERIC-v1.24.bin").write_bytes(b"x")
    (tmp_path / "ESP32_GENERIC-v1.25.bin").write_bytes(b"x")
    res = cli("companion", "flash", "--port", "/dev/ttyUSB0", "--firmware", "ESP32_GENERIC",
              "--firmware-dir", tmp_path, "--dry-run")  # fmt: skip
    assert res.returncode == 1 and "2 matches" in res.stderr


def test_pair_dry_run_changes_nothing_and_shows_no_secret(state: Path, tmp_path: Path) -> None:
    res = cli("companion", "broker", "--state", state, "--out", tmp_path / "b", "--dry-run")
    assert res.returncode == 0 and not (tmp_path / "b").exists()
    assert cli("companion", "broker", "--state", state, "--out", tmp_path / "b").returncode == 0
    res = cli("companion", "pair", "--port", "/dev/ttyUSB0", "--state", state,
              "--device", "kitchen", "--channel", "relay=relay:5:active_low=true",
              "--channel", "temp=ds18b20:4", "--wifi-ssid", "home", "--dry-run")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert list_pairings(state) == []  # nothing created
    assert '"key": "<secret>"' in res.stdout and '"password": "<secret>"' in res.stdout
    assert "mpremote connect /dev/ttyUSB0 fs cp" in res.stdout and ":companion.json" in res.stdout
    assert '"active_low": true' in res.stdout


def test_pair_writes_the_board_config_and_admits_it_to_the_broker(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert gateway_cli.main(["companion", "broker", "--state", str(state), "--out",
                             str(tmp_path / "b"), "--host", "10.0.0.2"]) == 0  # fmt: skip
    copied: dict[str, Any] = {}
    ran: list[Sequence[str]] = []

    def recorder(argv: Sequence[str]) -> int:
        ran.append(list(argv))
        if "cp" in argv:
            copied.update(json.loads(Path(argv[-2]).read_text()))
            copied["mode"] = Path(argv[-2]).stat().st_mode & 0o777
        return 0

    monkeypatch.setattr(flash, "_run", recorder)
    rc = gateway_cli.main(["companion", "pair", "--port", "/dev/ttyACM0", "--state", str(state),
                           "--device", "kitchen", "--channel", "relay=relay:5",
                           "--broker-host", "10.0.0.2"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert copied["mode"] == 0o600
    creds = load_credentials(state)
    assert creds is not None
    assert copied["device"] == "kitchen" and len(copied["key"]) == 64
    assert copied["broker"] == {"host": "10.0.0.2", "port": 8883, "tls": True,
                                "ca": Path(creds.ca_file).read_text()}  # fmt: skip
    assert (
        copied["topic"].endswith("/companion/kitchen") and copied["channels"]["relay"]["pin"] == 5
    )
    assert ran[-1][-1] == "reset" and copied["key"] not in " ".join(" ".join(a) for a in ran)
    assert copied["key"] not in out and copied["password"] not in out
    passwd = (tmp_path / "b" / "passwd").read_text()
    acl = (tmp_path / "b" / "acl").read_text()
    assert "companion-kitchen:$7$101$" in passwd and "streembit-gateway:$7$" in passwd
    assert "user companion-kitchen\ntopic write " in acl and "/companion/kitchen/down" in acl
    assert 'driver = "companion"' in out and 'channels = { output = "relay" }' in out


def test_password_lines_are_mosquittos_format(tmp_path: Path) -> None:
    line = password_line("alice", "s3cret", salt=bytes(12))
    user, rest = line.split(":", 1)
    assert user == "alice" and rest.startswith("$7$101$AAAAAAAAAAAAAAAA$")
    # mosquitto_passwd (Debian) writes the same format: check one of its lines verifies
    pw = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "bob", "hunter2"], check=True,
                   capture_output=True, timeout=30)  # fmt: skip
    import base64

    _, algo, it, salt, digest = pw.read_text().strip().split(":", 1)[1].split("$")
    ours = password_line("bob", "hunter2", salt=base64.b64decode(salt))
    assert ours.split("$")[-1] == digest and (algo, it) == ("7", "101")
