"""Flashing and pairing ESP32 boards from the gateway: the command lines, and running them.

`flash_plan` builds (never runs) the steps of `companion flash`:
    0. mpremote exec (is MicroPython there?)       (only without a firmware image: a blank
                                                    board fails here, saying it needs one)
    1. esptool erase-flash                         (only with erase=True)
    2. esptool write-flash 0x1000 FIRMWARE         (when a firmware image is given; ESP32 offset)
    3. mpremote mip install umqtt.simple           (the MQTT client from micropython-lib)
    4. mpremote fs cp FILE :FILE                   every companion module, then main.py
    5. mpremote reset
`pair_plan` builds the steps of `companion pair`: copy the per-device companion.json (made by
`board_config`) to the board, then reset. Both run each step with progress lines; `--dry-run`
prints them instead. Secrets never appear in a command line: the config goes through a 0600
temporary file. esptool and mpremote come with the `flash` extra (or from PATH): `check_tools`
says what to install before anything runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.errors import ProvisioningError
from gateway.extras import MissingExtraError, missing

#: the companion's modules, in copy order (main.py last: the board runs it after a reset)
COMPANION_FILES = ("frames.py", "counter.py", "board.py", "link.py", "app.py", "main.py")
FIRMWARE_OFFSET_ESP32 = "0x1000"  # classic ESP32 bootloader offset (ESP32-S3/C3: 0x0)
DEFAULT_BAUD = 460800
STEP_TIMEOUT_S = 600.0  # esptool writing 1.5 MB at 115200 baud takes about 2.5 minutes
BLANK_BOARD_HINT = (
    "no MicroPython answers on the board: a blank board needs --firmware FILE (a MicroPython "
    "image for the chip, e.g. ESP32_GENERIC from https://micropython.org/download/)"
)


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]
    hint: str = ""  # what to do when this step fails

    def shown(self) -> str:
        import shlex

        return " ".join(shlex.quote(a) for a in self.argv)


def companion_dir() -> Path:
    return Path(str(resources.files("micropython_client")))


def _tool(name: str) -> list[str]:
    """The console script NAME from this environment (or PATH), else `python -m NAME`."""
    scripts = sysconfig.get_path("scripts")
    path = Path(scripts) / name if scripts else None
    if path is not None and path.exists():
        return [str(path)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", name]


def check_tools(names: Collection[str]) -> None:
    """MissingExtraError (the `flash` extra) for each of NAMES (esptool, mpremote) that is
    neither installed in this environment nor on PATH."""
    absent = [n for n in missing("flash") if n in names and shutil.which(n) is None]
    if absent:
        raise MissingExtraError("flash", absent)


def esptool(*args: str) -> tuple[str, ...]:
    return (*_tool("esptool"), *args)


def mpremote(port: str, *args: str) -> tuple[str, ...]:
    return (*_tool("mpremote"), "connect", port, *args)


def flash_plan(
    port: str,
    *,
    firmware: Path | None = None,
    chip: str = "esp32",
    baud: int = DEFAULT_BAUD,
    erase: bool = False,
    offset: str = FIRMWARE_OFFSET_ESP32,
    install_umqtt: bool = True,
    source: Path | None = None,
) -> list[Step]:
    if not port:
        raise ProvisioningError("name the board's serial port (--port)", code="bad_port")
    steps: list[Step] = []
    common = ("--chip", chip, "--port", port, "--baud", str(baud))
    if firmware is None:  # nothing to write: the board must already run MicroPython
        steps.append(
            Step(
                "check that the board runs MicroPython",
                mpremote(port, "exec", "import sys; print(sys.implementation.name)"),
                BLANK_BOARD_HINT,
            )
        )
    if erase:
        steps.append(Step("erase the flash", esptool(*common, "erase-flash")))
    if firmware is not None:
        steps.append(
            Step(
                f"write the MicroPython firmware {firmware.name} at {offset}",
                esptool(*common, "write-flash", "--flash-size", "detect", offset, str(firmware)),
            )
        )
    if install_umqtt:
        steps.append(
            Step("install umqtt.simple (micropython-lib)", mpremote(port, "mip", "install",
                                                                      "umqtt.simple"))
        )  # fmt: skip
    src = source or companion_dir()
    for name in COMPANION_FILES:
        path = src / name
        if not path.is_file():
            raise ProvisioningError(f"companion file {path} is missing", code="bad_install")
        steps.append(Step(f"copy {name}", mpremote(port, "fs", "cp", str(path), f":{name}")))
    steps.append(Step("reset the board", mpremote(port, "reset")))
    return steps


def pair_plan(port: str, config_file: Path) -> list[Step]:
    if not port:
        raise ProvisioningError("name the board's serial port (--port)", code="bad_port")
    return [
        Step(
            "copy the per-device config companion.json",
            mpremote(port, "fs", "cp", str(config_file), ":companion.json"),
        ),
        Step("remove the old frame counter (a new key starts a new count)",
             mpremote(port, "exec", "import os\nfor f in ('counter.a', 'counter.b'):\n"
                      "    try: os.remove(f)\n    except OSError: pass")),
        Step("reset the board", mpremote(port, "reset")),
    ]  # fmt: skip


def board_config(
    rec: Mapping[str, Any],
    *,
    channels: Mapping[str, Any],
    ca_pem: str | None,
    wifi_ssid: str | None = None,
    wifi_password: str | None = None,
    link: str = "mqtt",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The board's companion.json from a pairing record (gateway.provisioning.pairing)."""
    from device_drivers.companion.broker import topic_root

    cfg: dict[str, Any] = {
        "v": 1,
        "device": rec["device"],
        "gateway": rec["gateway"],
        "key": rec["hmac_key"],
        "link": link,
        "channels": dict(channels),
    }
    if link == "mqtt":
        tls = ca_pem is not None
        cfg.update(
            broker={"host": rec["broker"]["host"], "port": rec["broker"]["port"], "tls": tls},
            username=rec["username"],
            password=rec["password"],
            topic=f"{topic_root(rec['gateway'])}/{rec['device']}",
        )
        if tls:
            cfg["broker"]["ca"] = ca_pem
        if wifi_ssid is not None:
            cfg["wifi"] = {"ssid": wifi_ssid, "password": wifi_password or ""}
    if extra:
        cfg.update(extra)
    return cfg


SECRET_KEYS = ("key", "password")


def redacted(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """CFG with every secret replaced by "<secret>" (for --dry-run and logs)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if k in SECRET_KEYS:
            out[k] = "<secret>"
        elif isinstance(v, Mapping):
            out[k] = redacted(v)
        elif k == "ca":
            out[k] = "<the broker's certificate>"
        else:
            out[k] = v
    return out


def run_steps(
    steps: Sequence[Step],
    progress: Callable[[str], None],
    *,
    runner: Callable[[Sequence[str]], int] | None = None,
) -> None:
    """Run STEPS in order, reporting progress; ProvisioningError naming the failed step."""
    run = runner or _run
    total = len(steps)
    for i, step in enumerate(steps, 1):
        progress(f"[{i}/{total}] {step.what}")
        rc = run(step.argv)
        if rc != 0:
            hint = f"; {step.hint}" if step.hint else ""
            raise ProvisioningError(
                f"step {i}/{total} ({step.what}) failed with exit status {rc}: {step.shown()}"
                + hint,
                code="flash_failed",
            )
    progress(f"done: {total} steps")


def _run(argv: Sequence[str]) -> int:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:  # the tools' own progress (esptool's percentages) goes straight to the terminal
        # argv is built by flash_plan/pair_plan from our own tool paths and the user's options
        proc = subprocess.run(list(argv), check=False, timeout=STEP_TIMEOUT_S, env=env)  # noqa: S603
        return proc.returncode
    except subprocess.TimeoutExpired:
        return 124
    except OSError as exc:
        raise ProvisioningError(f"cannot run {argv[0]}: {exc}", code="flash_failed") from None
