"""Running as a systemd service: sd_notify over a real unix datagram socket (READY, WATCHDOG,
STOPPING), structured logs, a config edited while running, a second gateway on the same state
folder, and `doctor` on a running gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.ops import logs as ops_logs
from gateway.ops.sdnotify import Notifier, watchdog_interval

BIN = Path(sys.executable).parent
GW = str(BIN / "streembit-gateway")
READY_TIMEOUT_S = 20.0  # a cold start imports everything (about 1 s here)
STOP_TIMEOUT_S = 15.0

CONFIG = """
[gateway]
name = "svc-test"
state_dir = "{state}"
[gateway.http]
host = "127.0.0.1"
port = 0
[[things]]
name = "porch-light"
type = "switch"
driver = "sim"
"""


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    return sock


def _recv_until(sock: socket.socket, want: str, timeout_s: float) -> list[str]:
    """Datagrams until one contains the line WANT (or fail after TIMEOUT_S)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append(msg)
        if want in msg.split("\n"):
            return got
    raise AssertionError(f"no {want} within {timeout_s} s; got {got}")


def test_notifier_path_and_abstract_sockets(tmp_path: Path) -> None:
    sock = _listen(tmp_path / "n.sock")
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "n.sock")})
    assert n is not None
    assert n.ready("serving 2 things\nat http://x")
    msg = sock.recv(4096).decode().split("\n")
    assert "READY=1" in msg and "STATUS=serving 2 things at http://x" in msg
    assert n.stopping() and "STOPPING=1" in sock.recv(4096).decode().split("\n")
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"streembit-test-{os.getpid()}"
    abstract.bind("\0" + name)
    n2 = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
    assert n2 is not None and n2.watchdog()
    assert abstract.recv(64) == b"WATCHDOG=1"
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "relative"}) is None
    gone = Notifier(str(tmp_path / "gone.sock"))
    assert gone.ready() is False  # best effort: logged, never raised
    sock.close()
    abstract.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": pid}) == 0.5


async def test_watchdog_task_pings_while_healthy(tmp_path: Path) -> None:
    sock = _listen(tmp_path / "w.sock")
    sock.setblocking(False)
    n = Notifier(str(tmp_path / "w.sock"))
    healthy = True
    task = asyncio.create_task(n.run_watchdog(0.05, lambda: healthy), name="test-watchdog")
    await asyncio.sleep(0.18)
    healthy = False
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = []
    while True:
        try:
            pings.append(sock.recv(64))
        except BlockingIOError:
            break
    assert 3 <= len(pings) <= 5 and set(pings) == {b"WATCHDOG=1"}
    sock.close()


def test_journal_handler_sends_native_protocol_entries(tmp_path: Path) -> None:
    sock = _listen(tmp_path / "journal.sock")
    handler = ops_logs.JournalHandler(tmp_path / "journal.sock")
    logger = logging.getLogger("streembit.test.journal")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("lock %s jammed", "front-door", extra={"thing": "front-door"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("driver crashed")
    finally:
        logger.removeHandler(handler)
        handler.close()

    def fields(data: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        while data:
            line, _, rest = data.partition(b"\n")
            if b"=" in line:
                key, _, value = line.partition(b"=")
                out[key.decode()] = value.decode()
                data = rest
            else:  # binary form: NAME \n u64 length, value, \n
                (size,) = struct.unpack("<Q", rest[:8])
                out[line.decode()] = rest[8 : 8 + size].decode()
                data = rest[8 + size + 1 :]
        return out

    first = fields(sock.recv(65536))
    assert first["MESSAGE"] == "lock front-door jammed" and first["PRIORITY"] == "4"
    assert first["SYSLOG_IDENTIFIER"] == "streembit-gateway"
    assert first["STREEMBIT_THING"] == "front-door" and first["LOGGER"] == "streembit.test.journal"
    second = fields(sock.recv(65536))
    assert second["PRIORITY"] == "3" and "ValueError: boom" in second["MESSAGE"]
    sock.close()


def test_log_format_choice(tmp_path: Path) -> None:
    stream = (tmp_path / "stderr").open("w")
    st = os.fstat(stream.fileno())
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    assert ops_logs.on_journal(env, stream)
    assert not ops_logs.on_journal({"JOURNAL_STREAM": "1:2"}, stream)
    assert ops_logs.choose_format(None, {"STREEMBIT_LOG_FORMAT": "json"}) == "json"
    assert ops_logs.choose_format("text", {"STREEMBIT_LOG_FORMAT": "json"}) == "text"
    assert ops_logs.choose_format(None, {}, tmp_path / "no.sock") == "text"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi %s", ("there",), None)
    record.thing = "porch"
    line = json.loads(ops_logs.JsonFormatter().format(record))
    assert line["msg"] == "hi there" and line["level"] == "info" and line["thing"] == "porch"
    stream.close()


def test_run_under_a_service_manager(tmp_path: Path) -> None:
    """`run` as systemd runs it: READY=1, watchdog pings, JSON logs, STOPPING=1 at SIGTERM;
    meanwhile an edited config is reported (not loaded) and a second gateway is refused."""
    state = tmp_path / "state"
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(CONFIG.format(state=state))
    sock = _listen(tmp_path / "notify.sock")
    env = dict(
        os.environ,
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        WATCHDOG_USEC="300000",
        STREEMBIT_LOG_FORMAT="json",
    )
    env.pop("WATCHDOG_PID", None)
    cmd = [GW, "--log-level", "info", "run", "--config", str(cfg), "--create-key", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = _recv_until(sock, "READY=1", READY_TIMEOUT_S)
        assert any("STATUS=serving 1 things at http://127.0.0.1:" in m for m in got)
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["things"] == ["porch-light"]
        _recv_until(sock, "WATCHDOG=1", 2.0)
        _recv_until(sock, "WATCHDOG=1", 2.0)

        # the config is edited while the gateway runs: it keeps what it loaded
        cfg.write_text(CONFIG.format(state=state) + '[[things]]\nname = "x"\ntype = "switch"\n')
        import urllib.request

        with urllib.request.urlopen(f"{ready['http']}/things", timeout=5) as resp:
            assert [td["title"] for td in json.load(resp)] == ["porch-light"]
        doctor = subprocess.run(
            [GW, "doctor", "--config", str(cfg), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["gateway"]["status"] == "ok"
        assert checks["config changed"]["status"] == "warn"
        assert "systemctl restart" in checks["config changed"]["fix"]
        assert checks["HTTP"]["status"] == "ok"

        # a second gateway on the same state folder is refused, the first is untouched
        run_file = (state / "running.json").read_text()
        second = subprocess.run(
            [GW, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        assert "another gateway is running on this state folder" in second.stderr
        assert (state / "running.json").read_text() == run_file

        proc.send_signal(signal.SIGTERM)
        _recv_until(sock, "STOPPING=1", STOP_TIMEOUT_S)
        assert proc.wait(STOP_TIMEOUT_S) == 0
        assert proc.stderr is not None
        lines = [json.loads(x) for x in proc.stderr.read().splitlines() if x.startswith("{")]
        ready_logs = [x for x in lines if "ready at" in x["msg"]]
        assert ready_logs and ready_logs[0]["level"] == "info"
        assert ready_logs[0]["gateway"] == ready["id"]
        assert not (state / "running.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
