"""The companion frame codec and sessions on CPython (the very module the boards run), the
gateway's DeviceLink against bad input (truncated, oversized, out of order, bad MAC, old counter,
a flood), the persistent counter, and the USB serial link over a pty."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
import tty
from pathlib import Path
from typing import Any

import pytest

from device_drivers.base import Reading
from device_drivers.companion import CompanionDriver, CompanionHub, Timing
from device_drivers.errors import DriverConfigError, DriverError
from micropython_client import frames
from micropython_client.counter import Counter
from micropython_client.link import encode_line

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "vectors" / "companion.json"
SUPPORT = REPO / "tests" / "companion_support"
KEY = bytes(range(32))


def test_vectors_file_is_current() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tests.companion_support.make_vectors", "--check"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, "tests/vectors/companion.json is stale: run make_vectors"


def test_cpython_agrees_with_the_vectors() -> None:
    sys.path.insert(0, str(REPO / "micropython_client"))
    sys.path.insert(0, str(SUPPORT))
    try:
        import check_vectors

        assert check_vectors.check(str(VECTORS)) >= 30
    finally:
        sys.path.remove(str(REPO / "micropython_client"))
        sys.path.remove(str(SUPPORT))


def test_cpython_runs_the_companion_logic() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'micropython_client'}:{SUPPORT}"}
    res = subprocess.run(
        [sys.executable, str(SUPPORT / "mp_logic.py")],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("RESULT "), res.stdout


class Ctr:
    def __init__(self, start: int = 0) -> None:
        self.v = start

    def next(self) -> int:
        self.v += 1
        return self.v


def test_counter_reserves_blocks_and_survives_torn_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    c = Counter(path, 100)
    values = [c.next() for _ in range(250)]
    assert values == list(range(1, 251)) and c.writes == 3
    c2 = Counter(path, 100)
    assert c2.next() > values[-1]
    (tmp_path / "c.a").write_text("12")  # torn: no check value
    (tmp_path / "c.b").write_text("garbage")
    c3 = Counter(path, 100)
    assert c3.next() == 1  # both slots lost: starts over (the board must be paired again)


@pytest.fixture
async def hub(tmp_path: Path) -> Any:
    h = CompanionHub(
        gateway_id="gw",
        keys={"kitchen": KEY},
        counter_dir=tmp_path / "ctr",
        timing=Timing(command_timeout_s=0.5, retransmit_s=0.1, max_frames_per_s=50, burst=20),
    )
    await h.start()
    yield h
    await h.stop()


def board_session(link_sent: list[bytes]) -> frames.Session:
    return frames.Session(KEY, "kitchen", frames.UP, Ctr(1000), lambda n: b"\x07" * n)


async def handshake(hub: CompanionHub) -> tuple[Any, frames.Session, list[bytes]]:
    link = hub.device("kitchen")
    sent: list[bytes] = []
    link.send = lambda f: sent.append(f) or True
    link.transport_changed(True)
    board = board_session(sent)
    link.receive(board.hello({"lt": 3000}))
    for f in list(sent):
        kind, obj = board.open(f)
        if kind == "H":
            link.receive(board.welcome(obj["n"]))
    sent.clear()
    assert board.ready and link.session.ready
    return link, board, sent


async def test_device_link_refuses_bad_input_and_survives_a_flood(hub: CompanionHub) -> None:
    link, board, _sent = await handshake(hub)
    seen: list[tuple[str, Any]] = []
    link.add_listener(lambda ch, item: seen.append((ch, item)))
    good = board.seal("R", {"v": {"temp": 21.0}})
    link.receive(good)
    assert link.online and link.reading("temp").value == 21.0
    bad = [
        good[:10],  # truncated
        good + bytes(frames.MAX_FRAME),  # oversized
        good[:-1] + bytes([good[-1] ^ 1]),  # bad MAC
        good,  # replayed (old counter)
        frames.encode(KEY, "R", "U", "garage", 10**9, b"{}"),  # other device
        frames.encode(KEY, "C", "D", "kitchen", 10**9, b"{}"),  # wrong direction
    ]
    older = board.seal("R", {"v": {"temp": 99.0}})
    newer = board.seal("R", {"v": {"temp": 22.0}})
    link.receive(newer)
    link.receive(older)  # out of order: refused
    for frame in bad:
        link.receive(frame)
    assert link.reading("temp").value == 22.0
    assert link.refused_total == len(bad) + 1
    # a sensor the board reports as failing is a DriverError, never a stale value
    link.receive(board.seal("R", {"v": {}, "e": {"temp": "no DS18B20"}}))
    with pytest.raises(DriverError, match="no DS18B20"):
        link.reading("temp")
    assert isinstance(seen[-1][1], DriverError)
    # a flood: beyond the token bucket the frames are dropped before any check
    for _ in range(200):
        link.receive(b"\x01" * 60)
    assert link.dropped >= 150
    await asyncio.sleep(0.5)  # the bucket refills: a genuine frame gets through again
    link.receive(board.seal("R", {"v": {"temp": 20.5}}))
    assert link.reading("temp").value == 20.5


async def test_command_is_retransmitted_until_acknowledged(hub: CompanionHub) -> None:
    link, board, sent = await handshake(hub)
    task = asyncio.create_task(link.command({"relay": True}))
    await asyncio.sleep(0.35)  # first copy "lost": the hub resends, sealed afresh
    assert len([f for f in sent if board.open(f)[0] == "C"]) >= 2
    sent.clear()
    link._resend(next(iter(link.pending)))
    _kind, obj = board.open(sent[-1])
    link.receive(board.seal("A", {"id": obj["id"], "ok": True, "v": {"relay": True}}))
    ack = await task
    assert ack["v"]["relay"] is True
    with pytest.raises(DriverError, match="no acknowledgement"):
        await link.command({"relay": False})


async def test_driver_maps_channels_and_refuses_bad_settings(hub: CompanionHub) -> None:
    link, board, _ = await handshake(hub)
    drv = CompanionDriver("t", "switch", {"device": "kitchen", "channels": {"output": "relay"}},
                          hub=hub)  # fmt: skip
    got: list[Any] = []
    drv.subscribe("output", lambda ch, item: got.append(item))
    await drv.start()
    link.receive(board.seal("R", {"v": {"relay": False}}))
    assert (await drv.read("output")).value is False
    assert isinstance(got[-1], Reading)
    await drv.stop()
    for settings, msg in (
        ({}, "'device': required"),
        ({"device": "kitchen", "pins": 3}, "unknown companion setting"),
        ({"device": "kitchen", "channels": {"bolt": "x"}}, "no channel"),
        ({"device": "nope"}, "not paired"),
    ):
        with pytest.raises(DriverConfigError, match=msg):
            CompanionDriver("t", "switch", settings, hub=hub)
    with pytest.raises(DriverConfigError, match="companion hub"):
        CompanionDriver("t", "switch", {"device": "kitchen"})


async def test_serial_link_over_a_pty(tmp_path: Path) -> None:
    hub = CompanionHub(gateway_id="gw", keys={"kitchen": KEY}, counter_dir=tmp_path / "c")
    board_fd, gw_fd = pty.openpty()
    tty.setraw(board_fd)
    hub.add_serial("kitchen", os.ttyname(gw_fd))
    await hub.start()
    try:
        link = hub.device("kitchen")
        board = board_session([])
        os.write(board_fd, b"MicroPython v1.25 REPL noise\r\n" + encode_line(board.hello()))
        buf = b""
        for _ in range(100):
            await asyncio.sleep(0.02)
            try:
                buf += os.read(board_fd, 4096)
            except BlockingIOError:
                pass
            if buf.count(b"\n") >= 2:
                break
        from micropython_client.link import LineSplitter

        kinds = [board.open(f)[0] for f in LineSplitter().feed(buf)]
        assert "W" in kinds and "H" in kinds and link.transport_up
    finally:
        await hub.stop()
        os.close(board_fd)
        os.close(gw_fd)


async def test_hostile_authenticated_payloads_are_refused_and_the_hub_keeps_serving(
    hub: CompanionHub,
) -> None:
    link, board, _sent = await handshake(hub)
    hostile = [
        b'{"v":' + b"[" * 1000,  # unclosed: RecursionError in CPython's json.loads before
        b'{"v":{"temp":' + b"9" * 900 + b"}}",
        b'{"v":{"temp":1e400}}',
        b'{"v":{"temp":NaN}}',
        b'{"v":{"temp":1},"v":{"temp":2}}',
        b'{"v":{"temp":"\\ud800"}}',
    ]
    codes: list[str] = []
    count = link._refuse
    link._refuse = lambda code: codes.append(code) or count(code)  # type: ignore[method-assign]
    for payload in hostile:
        link.receive(frames.encode(KEY, "R", "U", "kitchen", board.counter.next(), payload))
        assert codes[-1:] == ["bad_payload"], payload
    # a bug reachable from a frame never escapes the hub: it is counted, and the next frame served
    real_open = link.session.open
    link.session.open = lambda frame: {}["boom"]  # type: ignore[method-assign]
    link.receive(board.seal("R", {"v": {"temp": 1.0}}))
    assert codes[-1:] == ["internal"] and len(codes) == len(hostile) + 1
    link.session.open = real_open  # type: ignore[method-assign]
    link.receive(board.seal("R", {"v": {"temp": 19.5}}))
    assert link.online and link.reading("temp").value == 19.5


def test_board_session_refuses_deep_payloads_with_a_frame_error() -> None:
    gw = frames.Session(KEY, "kitchen", frames.DOWN, Ctr(5000), lambda n: b"\x01" * n)
    board = board_session([])
    board.floor = 0
    deep = frames.encode(KEY, "C", "D", "kitchen", 10, b'{"set":' + b"[" * 1000)
    with pytest.raises(frames.FrameError) as info:
        board.open(deep)
    assert info.value.code == frames.BAD_PAYLOAD
    kind, obj = board.open(gw.seal("C", {"id": 1, "set": {"relay": True}}))
    assert kind == "C" and obj["set"] == {"relay": True}
