"""The optional parts (pyproject.toml's extras, gateway/extras.py): without them the gateway runs
and every other command works; a command that needs one says in one line what to install (exit
1, no traceback). Absence is simulated in a child Python by `sys.modules[NAME] = None`, which
makes `import NAME` fail as if the package were not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.extras import EXTRAS
from gateway.state import StateDir

TIMEOUT_S = 60
READY_S = 20.0
ALL_OPTIONAL = [name for _what, dists in EXTRAS.values() for name in dists]


def without(
    modules: list[str], argv: list[str], *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`streembit-gateway ARGV` in a child Python where MODULES cannot be imported."""
    code = (
        "import sys\n"
        f"for m in {modules!r}: sys.modules[m] = None\n"
        "from gateway.cli.gateway_cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env=env,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    StateDir(tmp_path / "gw").init_identity()
    return tmp_path / "gw"


def test_provision_from_a_qr_image_names_the_extra(state: Path, tmp_path: Path) -> None:
    (tmp_path / "owner.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = without(["zxingcpp"], ["provision", "--state", str(state), "--qr",
                                  str(tmp_path / "owner.png")])  # fmt: skip
    assert proc.returncode == 1
    line = one_line(proc)
    assert "needs zxing-cpp (not installed)" in line, line
    assert "pip install 'streembit-gateway[qr-images]'" in line
    assert "sudo deploy/install.sh --with qr-images" in line and line.endswith("[missing_extra]")


def test_camera_refuses_before_it_starts(state: Path, tmp_path: Path) -> None:
    env = dict(os.environ, STREEMBIT_CAMERA=f"dir:{tmp_path}")
    proc = without(["PIL", "zxingcpp"], ["provision", "--state", str(state), "--camera"], env=env)
    assert proc.returncode == 1
    assert "needs zxing-cpp and Pillow (not installed)" in one_line(proc)


def test_drawing_qr_codes_needs_no_extra(state: Path, tmp_path: Path) -> None:
    png = tmp_path / "gw.png"
    proc = without(ALL_OPTIONAL, ["qr", "--state", str(state), "--png", str(png), "--json"])
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes().startswith(b"\x89PNG")


def test_flash_and_pair_name_the_extra(state: Path) -> None:
    env = dict(os.environ, PATH="/nonexistent")  # nor a Debian esptool on PATH
    tools = ["esptool", "mpremote"]
    proc = without(tools, ["companion", "flash", "--port", "/dev/null", "--erase"], env=env)
    assert proc.returncode == 1
    line = one_line(proc)
    assert "flashing and pairing ESP32 boards needs esptool and mpremote" in line, line
    assert "pip install 'streembit-gateway[flash]'" in line and "--with flash" in line
    proc = without(tools, ["companion", "pair", "--port", "/dev/null", "--state", str(state),
                           "--device", "kitchen", "--channel", "relay=relay:5",
                           "--no-tls"], env=env)  # fmt: skip
    assert proc.returncode == 1 and "needs mpremote (not installed)" in one_line(proc)
    assert not (state / "pairings").exists()  # refused before any pairing was made
    dry = without(tools, ["companion", "flash", "--dry-run"], env=env)  # shows the plan anyway
    assert dry.returncode == 0 and "would run" in dry.stdout, dry.stderr


def test_td_validation_is_an_import_error_naming_the_extra() -> None:
    code = (
        "import sys\nsys.modules['jsonschema'] = None\n"
        "try:\n    from gateway.wot import validate_td\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'streembit-gateway[td-validation]'" in proc.stdout


def test_the_gateway_runs_without_any_extra(tmp_path: Path) -> None:
    """The demo starts and serves with none of the optional packages importable."""
    code = (
        "import sys\n"
        f"for m in {ALL_OPTIONAL!r}: sys.modules[m] = None\n"
        "from gateway.cli.gateway_cli import main\n"
        f"sys.exit(main(['demo', '--state', {str(tmp_path / 'gw')!r}, '--http-port', '0',"
        " '--no-p2p', '--no-mdns', '--json']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_S
        line = proc.stdout.readline()
        assert time.monotonic() < deadline, "the demo took too long"
        ready = json.loads(line)
        assert ready["things"] == ["front-door", "living-room"], line
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
