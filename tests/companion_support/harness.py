"""Test harness: a real mosquitto configured by the gateway's own broker writer, and a companion
board (the micropython_client modules on CPython, with the machine/usocket/ssl shims and the
umqtt.simple stand-in) running in a thread."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parents[1] / "micropython_client"
for p in (str(HERE), str(CLIENT)):
    if p not in sys.path:
        sys.path.insert(0, p)

BROKER_READY_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, conf: Path, port: int, log: Path) -> None:
        self.conf, self.port, self.log = conf, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + BROKER_READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.005)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class FakeDS18X20:
    temperature = 21.5

    def __init__(self, bus: Any) -> None:
        pass

    def scan(self) -> list[bytes]:
        return [b"\x28\x00\x00\x00\x00\x00\x00\x01"]

    def convert_temp(self) -> None:
        pass

    def read_temp(self, rom: bytes) -> float:
        return FakeDS18X20.temperature


class _OneWire:
    @staticmethod
    def OneWire(pin: Any) -> Any:
        return pin


class _DSMod:
    DS18X20 = FakeDS18X20


class Board:
    """One companion board: app.Companion stepping in a thread until stop()."""

    def __init__(self, cfg: dict[str, Any], workdir: Path) -> None:
        import app  # micropython_client/app.py
        import counter
        import machine
        import ssl_shim
        from umqtt.simple import MQTTClient

        self.machine = machine
        self.cfg = app.load_config(json.dumps(cfg))
        self.logs: list[str] = []
        link = app.make_link(self.cfg, MQTTClient, ssl_shim)
        ctr = counter.Counter(str(workdir / "counter"), self.cfg["counter_block"])
        self.comp = app.Companion(
            self.cfg, machine, link, ctr, {"onewire": _OneWire, "ds18x20": _DSMod},
            log=self.logs.append,
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="companion-board", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.comp.step(10)
        except BaseException as exc:  # surfaced by the tests
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.comp.link.close()

    def pin(self, number: int) -> int:
        return int(self.machine.Pin.pins[number].value())
