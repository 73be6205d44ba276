"""TCP hole punching (gateway/reach/punch.py) and the observer client (gateway/reach/observe.py).

On 127.0.0.1: message validation, the observer client (strict parsing, bounds, a closed socket
that leaves the port free at once), simultaneous open and the whole coordination. In the NAT lab
(tests/netns/natlab.py): two probe processes (tests/netns/punch_probe.py) behind two routers punch
through, with this process as their relay; the lab tests fail, never skip, where the lab cannot
be built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.observe import (
    CLOSE_WAIT_S,
    MAX_RESPONSE_BYTES,
    Address,
    observe,
    observe_tcp,
    parse_observe_response,
)
from gateway.reach.punch import (
    MAX_ADDRS,
    CancelMsg,
    ConnectMsg,
    PunchResponder,
    PunchTiming,
    SyncMsg,
    encode_message,
    parse_message,
    punch,
    simultaneous_open,
    validate_message,
)
from tests.netns import punch_probe
from tests.netns.natlab import Host, NatLab, RouterKind, lab_for_test
from tests.netns.procs import first_line

LO = "127.0.0.1"
PROBE = punch_probe.__file__
OBSERVER_PORT = 8480


# -- messages ---------------------------------------------------------------------------------
def test_messages_round_trip() -> None:
    connect = ConnectMsg((("203.0.113.10", 40000), ("2001:db8::1", 443)))
    assert encode_message(connect) == {
        "type": "connect",
        "addrs": ["203.0.113.10:40000", "[2001:db8::1]:443"],
    }
    for msg in (connect, SyncMsg(), CancelMsg("no thanks")):
        assert validate_message(encode_message(msg)) == msg
        assert parse_message(json.dumps(encode_message(msg))) == msg
    assert validate_message({"type": "connect", "addrs": ["[::ffff:1.2.3.4]:5"]}) == ConnectMsg(
        (("1.2.3.4", 5),)
    )


@pytest.mark.parametrize(
    "msg",
    [
        None,
        [],
        "sync",
        {},
        {"type": "hello"},
        {"type": 1},
        {"type": "sync", "extra": 1},
        {"type": "connect"},
        {"type": "connect", "addrs": []},
        {"type": "connect", "addrs": "1.2.3.4:5"},
        {"type": "connect", "addrs": ["1.2.3.4:5"] * (MAX_ADDRS + 1)},
        {"type": "connect", "addrs": [5]},
        {"type": "connect", "addrs": ["1.2.3.4"]},
        {"type": "connect", "addrs": ["1.2.3.4:0"]},
        {"type": "connect", "addrs": ["1.2.3.4:65536"]},
        {"type": "connect", "addrs": ["1.2.3.4:+5"]},
        {"type": "connect", "addrs": ["1.2.3.4:\u0665"]},  # an Arabic-Indic digit
        {"type": "connect", "addrs": ["0.0.0.0:5"]},
        {"type": "connect", "addrs": ["224.0.0.1:5"]},
        {"type": "connect", "addrs": ["example.org:80"]},
        {"type": "connect", "addrs": ["2001:db8::1:80"]},
        {"type": "connect", "addrs": ["1.2.3.4:5" + " " * 100]},
        {"type": "cancel"},
        {"type": "cancel", "reason": "x" * 201},
        {"type": "cancel", "reason": ["x"]},
    ],
)
def test_bad_messages_are_refused_with_punch_failed(msg: object) -> None:
    with pytest.raises(ReachError) as info:
        validate_message(msg)
    assert info.value.code == Code.PUNCH_FAILED and str(info.value).startswith("punch: ")


@pytest.mark.parametrize(
    "data", [b"", b"[]", b"{", b'{"type":"sync","type":"sync"}', b"[" * 50, b" " * 3000, b"\xff"]
)
def test_bad_json_is_refused_with_punch_failed(data: bytes) -> None:
    with pytest.raises(ReachError) as info:
        parse_message(data)
    assert info.value.code == Code.PUNCH_FAILED


# -- the observer client ----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[Address]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LO, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        await runner.cleanup()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[Address]:
    server = await asyncio.start_server(handler, LO, 0)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        server.close()


def plain_bind(port: int) -> None:
    """Bind and listen on PORT with no reuse option: fails while any socket (also one in
    TIME_WAIT) holds the port."""
    with socket.socket() as s:
        s.bind((LO, port))
        s.listen()


def tcp_states(port: int) -> list[str]:
    """The states of the TCP sockets whose local port is PORT (from /proc/net/tcp)."""
    states = []
    with open("/proc/net/tcp") as fh:
        for row in fh.readlines()[1:]:
            local, st = row.split()[1], row.split()[3]
            if int(local.split(":")[1], 16) == port:
                states.append(st)
    return states


async def test_observe_returns_the_mapping_and_frees_the_port() -> None:
    async with serve(punch_probe.observer_app()) as obs:
        found = await observe((LO, 0), obs)
        assert found.local[0] == LO and found.external == found.local
        port = found.local[1]
        assert await observe_tcp((LO, port), obs) == (LO, port)  # the same port again at once
        assert tcp_states(port) == []  # the server closed first: no TIME_WAIT on our side
        plain_bind(port)


async def test_a_server_that_never_closes_is_cut_off_without_time_wait() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"ip": "198.51.100.7", "port": 4242}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await asyncio.sleep(30)  # keeps the connection open

    async with raw_server(handler) as addr:
        started = time.monotonic()
        found = await observe((LO, 0), addr)
        assert found.external == ("198.51.100.7", 4242)
        assert time.monotonic() - started < CLOSE_WAIT_S + 1
        await asyncio.sleep(0.05)
        assert tcp_states(found.local[1]) == []  # an abortive close: nothing left
        plain_bind(found.local[1])


BAD_ANSWERS = [
    b"",
    b"garbage",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ip": "1.2.3.4"}',
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ip": "1.2.3.4", "port": true}',
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ip": "nope", "port": 5}',
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ip": "1.2.3.4", "port": 1e400}',
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{"ip": "a"}',
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + b"[" * 40,
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_RESPONSE_BYTES + b"\r\n\r\n",
]


@pytest.mark.parametrize("answer", BAD_ANSWERS)
async def test_bad_observer_answers_are_refused(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(handler) as addr:
        with pytest.raises(ReachError) as info:
            await observe((LO, 0), addr)
    assert info.value.code == Code.RELAY_UNREACHABLE and str(info.value).startswith("observe: ")
    with pytest.raises(ReachError):
        parse_observe_response(answer)


async def test_a_silent_observer_times_out_with_a_reason() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with raw_server(handler) as addr:
        started = time.monotonic()
        with pytest.raises(ReachError, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.3 s"):
            await observe((LO, 0), addr, timeout_s=0.3)
        assert time.monotonic() - started < 1.0


async def test_observe_names_a_refused_observer() -> None:
    with socket.socket() as s:
        s.bind((LO, 0))
        port = s.getsockname()[1]
    with pytest.raises(ReachError, match=r"observe: .*refused") as info:
        await observe((LO, 0), (LO, port))
    assert info.value.code == Code.RELAY_UNREACHABLE


# -- simultaneous open on loopback ------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((LO, 0))
        port: int = s.getsockname()[1]
    return port


async def both_ways(a: socket.socket, b: socket.socket) -> None:
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)
    wa.write(b"ping\n")
    wb.write(b"pong\n")
    assert await rb.readline() == b"ping\n"
    assert await ra.readline() == b"pong\n"
    wa.close()
    wb.close()


async def test_simultaneous_open_connects_two_bound_ports() -> None:
    """On loopback a SYN to a port nobody dials from is refused at once, so one side's listener
    takes it (the lab shows connect-only punching, where routers drop the early SYN)."""
    pa, pb = free_port(), free_port()
    start = asyncio.get_running_loop().time() + 0.05
    a, b = await asyncio.gather(
        simultaneous_open(pa, (LO, pb), start_at=start, local_host=LO),
        simultaneous_open(pb, (LO, pa), start_at=start + 0.1, local_host=LO),
    )
    assert a.getsockname()[1] == pa and a.getpeername()[1] == pb
    assert b.getsockname()[1] == pb and b.getpeername()[1] == pa
    await both_ways(a, b)


async def test_simultaneous_open_gives_up_within_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(
        ReachError, match=r"punch: no connection with 127\.0\.0\.1:\d+ within 0\.5 s"
    ) as info:
        await simultaneous_open(free_port(), (LO, free_port()), deadline_s=0.5, local_host=LO)
    assert info.value.code == Code.PUNCH_FAILED
    assert time.monotonic() - started < 1.0


async def test_a_busy_port_is_retried_then_named() -> None:
    with socket.socket() as holder:  # no reuse options: every later bind of the port fails
        holder.bind((LO, 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ReachError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already"):
            await simultaneous_open(port, (LO, free_port()), local_host=LO)
        started = time.monotonic()
        with pytest.raises(
            ReachError, match=r"3 connects to .* failed \(last: bind: Address already in use\)"
        ) as info:
            await simultaneous_open(port, (LO, 9), local_host=LO, listen=False, attempts=3)
    assert info.value.code == Code.PUNCH_FAILED
    assert time.monotonic() - started < 2.0  # three backoff steps of at most 0.5 s


async def test_simultaneous_open_is_cancellable() -> None:
    task = asyncio.create_task(simultaneous_open(free_port(), (LO, free_port()), local_host=LO))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- the coordination on loopback -------------------------------------------------------------
def relay_pair() -> tuple[Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                          Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                          asyncio.Queue[dict[str, Any]]]:  # fmt: skip
    """Two exchange callables joined by queues (the relayed session); the responder's first
    message is read from the queue returned."""
    to_resp: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    to_init: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def initiator(msg: dict[str, Any]) -> dict[str, Any]:
        await to_resp.put(msg)
        return await to_init.get()

    async def responder(msg: dict[str, Any]) -> dict[str, Any]:
        await to_init.put(msg)
        return await to_resp.get()

    return initiator, responder, to_resp


async def test_punch_over_a_relayed_exchange() -> None:
    ex_i, ex_r, first = relay_pair()
    async with serve(punch_probe.observer_app()) as obs:

        async def responder() -> Any:
            return await punch("responder", ex_r, obs, incoming=await first.get(), local=(LO, 0))

        i, r = await asyncio.gather(punch("initiator", ex_i, obs, local=(LO, 0)), responder())
    assert i.plan.rtt_s is not None and 0 <= i.plan.rtt_s < 0.5
    assert i.plan.remote == (r.plan.observed,) and r.plan.remote == (i.plan.observed,)
    assert i.peer == r.plan.local and r.peer == i.plan.local
    await both_ways(i.sock, r.sock)


async def test_punch_responder_as_a_handler() -> None:
    async with serve(punch_probe.observer_app()) as obs:
        resp = PunchResponder(obs, local=(LO, 0))

        async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
            return await resp.handle(msg)

        i = await punch("initiator", exchange, obs, local=(LO, 0))
        r = await resp.result()
    await both_ways(i.sock, r.sock)
    with pytest.raises(ReachError, match="second connect"):
        await resp.handle({"type": "connect", "addrs": ["127.0.0.1:9"]})
    with pytest.raises(ReachError, match="sync out of order"):
        await PunchResponder(obs).handle({"type": "sync"})


async def test_punch_fails_with_a_reason_when_the_other_side_cancels() -> None:
    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        return {"type": "cancel", "reason": "busy\x1b[2J"}

    async with serve(punch_probe.observer_app()) as obs:
        with pytest.raises(ReachError, match="the other side gave up: busy") as info:
            await punch("initiator", exchange, obs, local=(LO, 0))
    assert info.value.code == Code.PUNCH_FAILED and "\x1b" not in str(info.value)


async def test_punch_fails_when_the_relayed_session_does_not_answer() -> None:
    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(30)
        raise AssertionError

    timing = PunchTiming(exchange_s=0.2)
    async with serve(punch_probe.observer_app()) as obs:
        with pytest.raises(ReachError, match=r"no answer over the relayed session within 0\.2 s"):
            await punch("initiator", exchange, obs, local=(LO, 0), timing=timing)


async def test_punch_fails_when_the_observer_is_unreachable() -> None:
    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not reached")

    with pytest.raises(ReachError, match="punch: observe: ") as info:
        await punch("initiator", exchange, (LO, free_port()), local=(LO, 0))
    assert info.value.code == Code.PUNCH_FAILED


async def test_punch_refuses_an_out_of_order_answer() -> None:
    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        return {"type": "sync"}

    async with serve(punch_probe.observer_app()) as obs:
        with pytest.raises(ReachError, match="did not answer connect with connect"):
            await punch("initiator", exchange, obs, local=(LO, 0))
        with pytest.raises(ReachError, match="sync out of order"):
            await punch("responder", exchange, obs, incoming={"type": "sync"}, local=(LO, 0))


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="dial_s"):
        PunchTiming(dial_s=float("nan"))
    with pytest.raises(ValueError, match="attempts"):
        PunchTiming(attempts=0)

    async def exchange(msg: dict[str, Any]) -> dict[str, Any]:
        return msg

    with pytest.raises(ValueError, match="role"):
        asyncio.run(punch("bystander", exchange, (LO, 9)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="incoming"):
        asyncio.run(punch("responder", exchange, (LO, 9)))


# -- the NAT lab ------------------------------------------------------------------------------
lab = lab_for_test  # fails (never skips) where the lab cannot be built


def start_observer(host: Host) -> None:
    proc = host.popen([sys.executable, PROBE, "observer", "--port", str(OBSERVER_PORT)])
    line = first_line(proc, 10.0)
    assert json.loads(line or "null") == {"ready": True}, proc.communicate()[1]


def pump(src: subprocess.Popen[str], dst: subprocess.Popen[str], out: dict[str, Any]) -> None:
    """Copy SRC's {"to_peer": M} lines to DST's stdin as {"from_peer": M}; keep its result."""
    assert src.stdout is not None and dst.stdin is not None
    for line in src.stdout:
        doc = json.loads(line)
        if "result" in doc:
            out.update(doc["result"])
            return
        with contextlib.suppress(BrokenPipeError, ValueError):
            dst.stdin.write(json.dumps({"from_peer": doc["to_peer"]}) + "\n")
            dst.stdin.flush()


DIAL_S = 3.0  # the dial window of a lab punch; a failing pair ends after it


def lab_punch(
    nl: NatLab, kind_a: RouterKind, kind_b: RouterKind, *, listen: bool = True
) -> tuple[dict[str, Any], ...]:
    """Punch between a host behind a new KIND_A router (initiator) and one behind KIND_B."""
    more = [] if listen else ["--no-listen"]
    obs = nl.public(f"observer-{kind_a}-{kind_b}")
    start_observer(obs)
    a, b = nl.home(kind_a), nl.home(kind_b)
    argv = [sys.executable, PROBE, "punch", "--observer", f"{obs.addr}:{OBSERVER_PORT}",
            "--dial", str(DIAL_S), *more]  # fmt: skip
    procs = [
        host.popen([*argv, "--role", role], stdin=subprocess.PIPE)
        for host, role in ((a, "initiator"), (b, "responder"))
    ]
    results: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    threads = [
        threading.Thread(target=pump, args=(procs[0], procs[1], results[0]), daemon=True),
        threading.Thread(target=pump, args=(procs[1], procs[0], results[1]), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
    errs = [p.stderr.read() if p.stderr and p.poll() is not None else "" for p in procs]
    assert results[0] and results[1], f"a probe gave no result: {errs}"
    for res, host in zip(results, (a, b), strict=True):
        res["public"] = host.router.public_addr if host.router else None
    return results


OK_KINDS: list[RouterKind] = ["cone", "port-restricted", "double"]
OK_PAIRS = [(x, y) for i, x in enumerate(OK_KINDS) for y in OK_KINDS[i:]]


@pytest.mark.parametrize(("kind_a", "kind_b"), OK_PAIRS)
def test_lab_punch_succeeds_and_carries_data_both_ways(
    kind_a: RouterKind, kind_b: RouterKind
) -> None:
    with lab() as nl:
        ini, res = lab_punch(nl, kind_a, kind_b)
    assert ini["ok"] and res["ok"], (ini, res)
    assert ini["got"] == "hello from responder" and res["got"] == "hello from initiator"
    assert ini["observed"][0] == ini["public"] and res["observed"][0] == res["public"]
    assert ini["peer"] == res["observed"] and res["peer"] == ini["observed"]
    assert ini["seconds"] < DIAL_S and res["seconds"] < DIAL_S


# measured (docs/reach.md, "Direct upgrade"): with a symmetric NAT on one side, only a
# full-cone other side works: the symmetric side's SYN comes from a new port, and the cone
# side's listener accepts it
SYMMETRIC_PAIRS: dict[tuple[RouterKind, RouterKind], bool] = {
    ("symmetric", "port-restricted"): False,
    ("port-restricted", "symmetric"): False,
    ("symmetric", "cone"): True,
    ("cone", "symmetric"): True,
}


@pytest.mark.parametrize(("kind_a", "kind_b"), list(SYMMETRIC_PAIRS))
def test_lab_punch_with_a_symmetric_nat(kind_a: RouterKind, kind_b: RouterKind) -> None:
    with lab() as nl:
        ini, res = lab_punch(nl, kind_a, kind_b)
    if SYMMETRIC_PAIRS[kind_a, kind_b]:
        assert ini["ok"] and res["ok"], (ini, res)
        assert ini["got"] == "hello from responder" and res["got"] == "hello from initiator"
        return
    for side in (ini, res):
        assert not side["ok"] and side["code"] == Code.PUNCH_FAILED, (ini, res)
        assert side["reason"].startswith("punch: no connection with "), side
        assert side["seconds"] < DIAL_S + 2.0, side  # the dial window plus the exchanges


def test_lab_connect_only_punch_is_a_true_simultaneous_open() -> None:
    """Without the listener, two port-restricted NATs still connect: each router drops the first
    SYN and lets the other side's in, which meets a socket in SYN_SENT (simultaneous open)."""
    with lab() as nl:
        ini, res = lab_punch(nl, "port-restricted", "port-restricted", listen=False)
    assert ini["ok"] and res["ok"], (ini, res)
    assert ini["got"] == "hello from responder" and res["got"] == "hello from initiator"
