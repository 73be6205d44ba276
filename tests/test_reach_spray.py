"""The birthday-paradox spray (gateway/reach/spray.py) and its place in the punch protocol:
message shape, target and descriptor checks, the two roles meeting on 127.0.0.1, and the
gateway's limits (one spray at a time, two per peer a minute). The NAT lab runs it for real
(tests/test_reach_upgrade.py, tests/test_reach_matrix.py)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from gateway.errors import ReachError
from gateway.reach.punch import ConnectMsg, encode_message, validate_message
from gateway.reach.spray import COUNT, MIN_COUNT, budget, spray_open, sprayable
from gateway.reach.upgrade import SPRAY_INTERVAL_S, SPRAYS_PER_INTERVAL, UpgradeResponder


def test_connect_carries_the_initiator_s_spray_role() -> None:
    msg = {"type": "connect", "addrs": ["203.0.113.10:4000"], "spray": "S"}
    got = validate_message(msg)
    assert got == ConnectMsg((("203.0.113.10", 4000),), "S")
    assert encode_message(got) == msg
    assert "spray" not in encode_message(ConnectMsg((("203.0.113.10", 4000),)))
    for bad in ("s", "X", 1, None, ["E"]):
        with pytest.raises(ReachError) as err:
            validate_message({**msg, "spray": bad})
        assert err.value.code == "punch_failed"
    with pytest.raises(ReachError):
        validate_message({**msg, "extra": 1})


@pytest.mark.parametrize(
    ("ip", "ok"),
    [
        ("203.0.113.10", True),  # TEST-NET-3: the NAT lab's internet
        ("8.8.8.8", True),
        ("2001:db8::1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("127.0.0.1", False),
        ("169.254.1.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("not-an-ip", False),
    ],
)
def test_a_spray_goes_to_public_addresses_only(ip: str, ok: bool) -> None:
    assert sprayable(ip) is ok


def test_the_budget_is_bounded_by_free_descriptors() -> None:
    n = budget()
    assert n == 0 or MIN_COUNT <= n <= COUNT
    assert budget(10) == 0  # fewer than MIN_COUNT: not worth trying


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_two_roles_meet_and_every_other_socket_is_closed() -> None:
    """On 127.0.0.1 the S side's connects reach the E side's listener (no NAT to match)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    before = _open_fds()
    e_side = asyncio.create_task(
        spray_open("E", port, ("127.0.0.1", 9), count=MIN_COUNT, local_host="127.0.0.1")
    )
    await asyncio.sleep(0.05)  # E listens first
    s_sock = await spray_open("S", 0, ("127.0.0.1", port), count=MIN_COUNT)
    s_sock.setblocking(True)
    s_sock.sendall(b"hello")  # S writes first on the one it chose; E takes that one
    e_sock = await e_side
    try:
        e_sock.setblocking(True)
        assert e_sock.recv(5) == b"hello"
        e_sock.sendall(b"back")
        assert s_sock.recv(4) == b"back"
    finally:
        s_sock.close()
        e_sock.close()
    assert _open_fds() <= before + 1  # the losers are closed (the +1: asyncio's own)


async def test_a_spray_without_a_match_fails_in_time_with_a_reason() -> None:
    with pytest.raises(ReachError) as err:
        await spray_open("S", 0, ("127.0.0.1", 9), count=MIN_COUNT, deadline_s=0.5)
    assert err.value.code == "punch_failed"


async def _serve(link: object, ip: str) -> None:
    return None


async def test_the_gateway_sprays_once_at_a_time_and_a_few_times_per_peer() -> None:
    responder = UpgradeResponder(_serve, lambda: [("127.0.0.1", 9)])
    connect = {"type": "connect", "addrs": ["203.0.113.10:4000"], "spray": "S"}
    try:
        responder._spraying["other-session"] = 1  # another session's spray in progress
        busy = await responder("s1", "alice", connect)
        assert (busy.code, busy.reason) == ("rate_limited", "another spray is in progress")
        responder._spraying.clear()
        now = asyncio.get_running_loop().time()
        responder._sprayed["alice"] = [now] * SPRAYS_PER_INTERVAL
        often = await responder("s1", "alice", connect)
        assert often.code == "rate_limited" and "sprays per peer" in often.reason
        responder._sprayed["alice"] = [now - SPRAY_INTERVAL_S - 1] * SPRAYS_PER_INTERVAL
        fine = await responder("s1", "alice", connect)
        assert fine.code != "rate_limited", fine  # old sprays no longer count
    finally:
        await responder.close()
