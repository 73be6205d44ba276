"""`running.json` in the state folder: what the running gateway loaded and where it listens.

A running gateway keeps the configuration it started with: editing the file changes nothing
until the service restarts (a half-edited file is never picked up). The file records the
digest of the config the gateway loaded, so `doctor` and `check-config` can say "the file
changed since the gateway started: restart it to apply", and the gateway itself logs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway import jsonsafe
from gateway.storage import atomic_write_text

log = logging.getLogger(__name__)

RUN_FILE: Final = "running.json"
MAX_CONFIG_BYTES: Final = 1024 * 1024
CONFIG_WATCH_S: Final = 5.0  # how often the config file is compared with the loaded one


def config_digest(path: Path) -> str | None:
    """SHA-256 (hex) of the config file's bytes, or None if it cannot be read."""
    try:
        with Path(path).open("rb") as fh:
            return hashlib.sha256(fh.read(MAX_CONFIG_BYTES + 1)).hexdigest()
    except OSError:
        return None


def config_file(source: str) -> Path | None:
    """The config's file, if it came from one (not the demo's built-in config)."""
    if not source or source.startswith("<"):
        return None
    return Path(source).absolute()


def write(state_dir: Path, info: dict[str, Any], config_source: str) -> dict[str, Any]:
    cfg = config_file(config_source)
    data = dict(info)
    data.update(
        {
            "pid": os.getpid(),
            "started": time.time(),
            "config": str(cfg) if cfg else config_source,
            "config_sha256": config_digest(cfg) if cfg else None,
            # started by a service manager (systemd sets these for a unit): how to restart it
            "service": bool(os.environ.get("NOTIFY_SOCKET") or os.environ.get("INVOCATION_ID")),
        }
    )
    atomic_write_text(Path(state_dir) / RUN_FILE, json.dumps(data, indent=1), mode=0o600)
    return data


def read(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = jsonsafe.loads((Path(state_dir) / RUN_FILE).read_bytes(), jsonsafe.FILE_LIMITS)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove(state_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (Path(state_dir) / RUN_FILE).unlink()


@dataclass(frozen=True)
class Drift:
    """The config file on disk differs from the one the running gateway loaded."""

    config: str
    loaded_sha256: str
    file_sha256: str | None  # None: the file is gone or unreadable now
    started: float

    def message(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        now = "is missing or unreadable" if self.file_sha256 is None else "was edited"
        return (
            f"{self.config} {now} since the running gateway loaded it ({since}); it keeps the "
            "loaded config until restarted: sudo systemctl restart streembit-gateway"
        )


def drift(run: dict[str, Any] | None, config_path: Path | None = None) -> Drift | None:
    """The difference between RUN (running.json) and the config file now, or None."""
    if not run or not run.get("config_sha256"):
        return None
    path = Path(config_path) if config_path else Path(str(run.get("config", "")))
    if config_path is not None and path.absolute() != Path(str(run.get("config"))):
        return None  # the running gateway uses another file
    now = config_digest(path)
    if now == run["config_sha256"]:
        return None
    return Drift(str(path), str(run["config_sha256"]), now, float(run.get("started", 0)))


async def watch(state_dir: Path, every_s: float = CONFIG_WATCH_S) -> None:
    """Log once when the config file no longer matches the one loaded (it is not reloaded);
    runs until cancelled. The file is hashed in a worker thread: never on the event loop."""
    warned: str | None = None
    while True:
        await asyncio.sleep(every_s)
        d = await asyncio.to_thread(lambda: drift(read(state_dir)))
        now = d.file_sha256 if d else None
        if d is not None and now != warned:
            log.warning("%s", d.message(), extra={"config": d.config})
            warned = now
        elif d is None:
            warned = None
