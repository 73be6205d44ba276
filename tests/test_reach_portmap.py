"""Router port mapping (gateway/reach/portmap): NAT-PMP replies parsed totally, the default route
parsed totally, NAT-PMP retransmission against a fake router on 127.0.0.1, the facade's fallback,
renewal, loss and removal with fake routers, then the real thing in the NAT lab: miniupnpd maps
by NAT-PMP and by UPnP-IGD, a public host reaches the mapped TCP listener and UDP socket, and
the mapping is gone after stop. Where the lab cannot be built these tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.portmap import (
    Granted,
    MapReply,
    PortmapEvent,
    PortMapper,
    Proto,
    PublicReply,
    mapper,
    natpmp,
    parse_default_gateway,
    parse_reply,
)
from gateway.reach.portmap.model import check_public
from tests.fuzz.engine import run as fuzz_run
from tests.fuzz.targets import Target
from tests.helpers import udp_server
from tests.netns.natlab import PROBE, lab_for_test
from tests.netns.procs import command, json_line, probe_report

MAPPER_PROBE = str(Path(__file__).with_name("netns") / "mapper_probe.py")


# -- NAT-PMP replies ---------------------------------------------------------------------------
def public_reply(ip: str = "203.0.113.10", result: int = 0, epoch: int = 77) -> bytes:
    return struct.pack("!BBHI4s", 0, 128, result, epoch, socket.inet_aton(ip))


def map_reply(op: int = 2, internal: int = 4242, external: int = 4242, life: int = 3600) -> bytes:
    return struct.pack("!BBHIHHI", 0, 128 + op, 0, 77, internal, external, life)


def test_valid_replies_parse() -> None:
    assert parse_reply(public_reply()) == PublicReply(77, "203.0.113.10")
    assert parse_reply(map_reply()) == MapReply("tcp", 77, 4242, 4242, 3600)
    assert parse_reply(map_reply(op=1, external=5000)) == MapReply("udp", 77, 4242, 5000, 3600)
    assert parse_reply(map_reply() + b"extra") == MapReply("tcp", 77, 4242, 4242, 3600)


BAD_REPLIES = {
    "empty": (b"", Code.PORTMAP_UNAVAILABLE),
    "one byte": (b"\x00", Code.PORTMAP_UNAVAILABLE),
    "header only": (b"\x00\x80\x00\x00", Code.PORTMAP_UNAVAILABLE),
    "short public": (public_reply()[:11], Code.PORTMAP_UNAVAILABLE),
    "short map": (map_reply()[:15], Code.PORTMAP_UNAVAILABLE),
    "version 2 (PCP)": (b"\x02" + public_reply()[1:], Code.PORTMAP_UNAVAILABLE),
    "version 255": (b"\xff" + map_reply()[1:], Code.PORTMAP_UNAVAILABLE),
    "a request echoed": (b"\x00\x00", Code.PORTMAP_UNAVAILABLE),
    "opcode 131": (b"\x00\x83" + map_reply()[2:], Code.PORTMAP_UNAVAILABLE),
    "opcode 1 (no reply bit)": (b"\x00\x01" + map_reply()[2:], Code.PORTMAP_UNAVAILABLE),
    "internal port 0": (map_reply(internal=0), Code.PORTMAP_UNAVAILABLE),
    "oversized": (map_reply() + bytes(2000), Code.PORTMAP_UNAVAILABLE),
    "result 1 unsupported version": (public_reply(result=1), Code.PORTMAP_UNAVAILABLE),
    "result 2 refused": (public_reply(result=2), Code.PORTMAP_REFUSED),
    "result 3 network failure": (public_reply(result=3), Code.PORTMAP_UNAVAILABLE),
    "result 4 out of resources": (public_reply(result=4), Code.PORTMAP_REFUSED),
    "result 5 unsupported opcode": (public_reply(result=5), Code.PORTMAP_UNAVAILABLE),
    "result 999": (public_reply(result=999), Code.PORTMAP_UNAVAILABLE),
}


@pytest.mark.parametrize("name", list(BAD_REPLIES))
def test_malformed_replies_are_refused(name: str) -> None:
    data, code = BAD_REPLIES[name]
    with pytest.raises(ReachError) as info:
        parse_reply(data)
    assert info.value.code == code
    assert "\n" not in str(info.value)


def test_random_datagrams_never_escape() -> None:
    rng = random.Random(12)
    seeds = [public_reply(), map_reply(), map_reply(op=1)]
    for _ in range(20000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data) + 2)]
        try:
            parse_reply(bytes(data))
        except ReachError:
            pass


def natpmp_fuzz_target() -> Target:
    """What tests/fuzz/targets.py would register (see docs/reach.md, "Port mapping")."""
    seeds = [public_reply(), map_reply(), map_reply(op=1, external=5000, life=7200)]
    return Target("portmap/natpmp-reply", seeds, lambda d: d, parse_reply)


def test_natpmp_reply_under_the_fuzz_engine() -> None:
    result = fuzz_run(natpmp_fuzz_target(), 3000, seed=1)
    assert result.crash_count == 0, [str(c) for c in result.crashes.values()]
    assert result.refused > 0


# -- the default route -------------------------------------------------------------------------
ROUTE_HEAD = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def route_line(gw: str, *, dest: str = "00000000", flags: str = "0003", metric: int = 0) -> str:
    hexgw = f"{struct.unpack('=I', socket.inet_aton(gw))[0]:08X}"
    return f"eth0\t{dest}\t{hexgw}\t{flags}\t0\t0\t{metric}\t00000000\t0\t0\t0\n"


def test_default_gateway_from_proc_net_route() -> None:
    text = ROUTE_HEAD + "eth0\t0047A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    assert parse_default_gateway(text) is None  # only the on-link LAN route
    text += route_line("192.168.71.1", metric=100) + route_line("10.0.0.1", metric=5)
    assert parse_default_gateway(text) == "10.0.0.1"  # the lowest metric
    assert parse_default_gateway(ROUTE_HEAD + route_line("192.168.71.1", flags="0001")) is None
    assert parse_default_gateway(ROUTE_HEAD + route_line("0.0.0.0")) is None


@pytest.mark.parametrize(
    "text",
    ["", "garbage", ROUTE_HEAD + "eth0 zz yy xx\n", ROUTE_HEAD + "a\tb\tc\td\te\tf\tg\th\n",
     ROUTE_HEAD + "eth0\t00000000\tFFFFFFFFF\t0003\t0\t0\t0\t00000000\n", "\x00\n" * 10000,
     ROUTE_HEAD + route_line("192.168.71.1").replace("0003", "-3"), "x" * 10_000_000],
)  # fmt: skip
def test_default_gateway_is_total(text: str) -> None:
    assert parse_default_gateway(text) is None


def test_external_address_must_be_public() -> None:
    assert check_public("203.0.113.10", "t") == "203.0.113.10"  # the lab's documentation range
    for ip in ("100.64.0.2", "192.168.1.1", "10.1.2.3", "0.0.0.0", "", "not an ip", "::1"):
        with pytest.raises(ReachError) as info:
            check_public(ip, "t")
        assert info.value.code == Code.PORTMAP_UNAVAILABLE


# -- NAT-PMP against a fake router on 127.0.0.1 ------------------------------------------------
class FakeRouter(asyncio.DatagramProtocol):
    """Answers NAT-PMP requests; drops the first DROP requests, sends NOISE first."""

    def __init__(self, drop: int = 0, result: int = 0, noise: list[bytes] | None = None) -> None:
        self.drop, self.result, self.noise = drop, result, noise or []
        self.requests: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests.append(data)
        if len(self.requests) <= self.drop:
            return
        for junk in self.noise:
            self.transport.sendto(junk, addr)
        if data[1] == 0:
            self.transport.sendto(public_reply(result=self.result), addr)
        else:
            _, op, _, internal, external, life = struct.unpack("!BBHHHI", data)
            reply = struct.pack("!BBHIHHI", 0, 128 + op, self.result, 5, internal, external, life)
            self.transport.sendto(reply, addr)


def fake_router(**kwargs: Any) -> Any:
    return udp_server(lambda: FakeRouter(**kwargs))


async def test_natpmp_resends_and_ignores_noise() -> None:
    noise = [b"", b"\x00", b"\x00\x80", map_reply(internal=9), public_reply()[:6]]
    async with fake_router(drop=1, noise=noise) as (router, port):
        backend = await natpmp.NatPmpBackend.open("127.0.0.1", port)
        try:
            began = time.monotonic()
            assert await backend.external_address() == "203.0.113.10"
            assert 0.2 < time.monotonic() - began < 1.0  # one resend after 250 ms
            granted = await backend.map("tcp", 4242, 4242, 60)
            assert granted == Granted(4242, 60)
            await backend.unmap("tcp", 4242, 4242)
        finally:
            await backend.close()
    assert router.requests[-1] == struct.pack("!BBHHHI", 0, 2, 0, 4242, 0, 0)  # delete
    assert backend.ignored > 0


async def test_natpmp_refusal_is_quick_and_coded() -> None:
    async with fake_router(result=2) as (_, port):
        backend = await natpmp.NatPmpBackend.open("127.0.0.1", port)
        began = time.monotonic()
        with pytest.raises(ReachError) as info:
            await backend.map("udp", 4242, 4242, 60)
        await backend.close()
    assert info.value.code == Code.PORTMAP_REFUSED and time.monotonic() - began < 0.2


async def test_natpmp_silence_and_no_listener_are_bounded() -> None:
    async with fake_router(drop=99) as (_, port):
        backend = await natpmp.NatPmpBackend.open("127.0.0.1", port)
        began = time.monotonic()
        with pytest.raises(ReachError) as info:
            await backend.external_address()
        await backend.close()
    took = time.monotonic() - began
    assert info.value.code == Code.PORTMAP_UNAVAILABLE and 1.6 < took < 2.2, took
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    backend = await natpmp.NatPmpBackend.open("127.0.0.1", closed)
    began = time.monotonic()
    with pytest.raises(ReachError, match="does not listen"):
        await backend.external_address()
    await backend.close()
    assert time.monotonic() - began < 0.3


# -- the facade with fake routers --------------------------------------------------------------
class FakeBackend:
    def __init__(self, method: str, ip: str = "198.51.100.7", lifetime: int = 60) -> None:
        self.method, self.ip, self.lifetime = method, ip, lifetime
        self.fail: ReachError | None = None
        self.hang = False
        self.mapped: dict[tuple[str, int], int] = {}
        self.closed = False
        self.calls = 0

    async def _check(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail

    async def external_address(self) -> str:
        await self._check()
        return self.ip

    async def map(self, proto: Proto, internal: int, external: int, lease_s: int) -> Granted:
        await self._check()
        self.mapped[(proto, internal)] = external + 1000
        return Granted(external + 1000 if external == internal else external, self.lifetime)

    async def unmap(self, proto: Proto, internal: int, external: int) -> None:
        await self._check()
        self.mapped.pop((proto, internal), None)

    async def close(self) -> None:
        self.closed = True


def factories(*backends: FakeBackend) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for b in backends:

        async def make(gateway: str | None, b: FakeBackend = b) -> FakeBackend:
            await b._check()
            return b

        out[b.method] = make
    return out


PORTS = [("tcp", 4242), ("udp", 4242)]


async def test_falls_back_to_upnp_and_stops_cleanly() -> None:
    pmp, igd = FakeBackend("natpmp"), FakeBackend("upnp")
    pmp.fail = ReachError("natpmp: no answer", code=Code.PORTMAP_UNAVAILABLE)
    m = PortMapper(gateway="192.0.2.1", factories=factories(pmp, igd))
    got = await m.start(PORTS)
    assert [(x.proto, x.external_ip, x.external_port, x.method) for x in got] == [
        ("tcp", "198.51.100.7", 5242, "upnp"), ("udp", "198.51.100.7", 5242, "upnp")]  # fmt: skip
    status = m.status()
    assert status["method"] == "upnp" and status["state"] == "mapped"
    assert status["mappings"][0]["expires_in_s"] == pytest.approx(60, abs=1)
    json.dumps(status)
    await m.stop()
    assert igd.mapped == {} and igd.closed and m.status()["state"] == "stopped"


@pytest.mark.parametrize(
    ("codes", "expected"),
    [((Code.PORTMAP_UNAVAILABLE, Code.PORTMAP_UNAVAILABLE), Code.PORTMAP_UNAVAILABLE),
     ((Code.PORTMAP_UNAVAILABLE, Code.PORTMAP_REFUSED), Code.PORTMAP_REFUSED)],
)  # fmt: skip
async def test_failure_codes_and_reasons(codes: tuple[str, str], expected: str) -> None:
    pmp, igd = FakeBackend("natpmp"), FakeBackend("upnp")
    pmp.fail = ReachError("natpmp: A", code=codes[0])
    igd.fail = ReachError("upnp: B", code=codes[1])
    with pytest.raises(ReachError) as info:
        await PortMapper(gateway="192.0.2.1", factories=factories(pmp, igd)).start(PORTS)
    assert info.value.code == expected and str(info.value) == "natpmp: A; upnp: B"


async def test_private_external_address_is_unavailable_and_unmapped() -> None:
    igd = FakeBackend("upnp", ip="100.64.0.2")  # a carrier-grade NAT in front of the router
    with pytest.raises(ReachError, match="not public") as info:
        await PortMapper(method="upnp", gateway="192.0.2.1", factories=factories(igd)).start(PORTS)
    assert info.value.code == Code.PORTMAP_UNAVAILABLE and igd.closed


async def test_start_and_stop_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(mapper.TIMEOUTS_S, "natpmp", 0.2)
    monkeypatch.setattr(mapper, "STOP_TIMEOUT_S", 0.2)
    pmp = FakeBackend("natpmp")
    pmp.hang = True
    began = time.monotonic()
    with pytest.raises(ReachError, match=r"no answer within 0\.2 s"):
        await PortMapper(method="natpmp", gateway="g", factories=factories(pmp)).start(PORTS)
    assert time.monotonic() - began < 0.6
    pmp.hang = False
    m = PortMapper(method="natpmp", gateway="g", factories=factories(pmp))
    await m.start(PORTS)
    pmp.hang = True
    began = time.monotonic()
    await m.stop()
    assert time.monotonic() - began < 0.6 and pmp.closed


async def test_renewal_change_loss_and_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapper, "MIN_RENEW_S", 0.05)
    monkeypatch.setattr(mapper, "RETRY_INITIAL_S", 0.05)
    monkeypatch.setattr(mapper, "RETRY_CAP_S", 0.1)
    pmp = FakeBackend("natpmp", lifetime=1)
    m = PortMapper(method="natpmp", gateway="g", factories=factories(pmp))
    events: list[PortmapEvent] = []

    def broken(event: PortmapEvent) -> None:
        raise RuntimeError("a broken listener does not stop the others")

    m.on_change.append(broken)
    m.on_change.append(events.append)
    await m.start([("tcp", 4242)])
    await asyncio.sleep(0.8)
    assert m.renewals >= 1 and events == []
    pmp.ip = "198.51.100.99"  # the ISP gave the router a new address
    await asyncio.sleep(0.7)
    assert [e.kind for e in events] == ["changed"]
    assert events[0].mappings[0].external_ip == "198.51.100.99"
    pmp.fail = ReachError("natpmp: no answer", code=Code.PORTMAP_UNAVAILABLE)
    await asyncio.sleep(1.6)  # past the 1 s lease
    assert [e.kind for e in events] == ["changed", "lost"] and m.status()["state"] == "lost"
    assert m.failures >= 2 and "no answer" in (m.status()["last_error"] or "")
    pmp.fail = None
    await asyncio.sleep(0.6)
    assert [e.kind for e in events] == ["changed", "lost", "restored"]
    assert m.status()["state"] == "mapped"
    await m.stop()


@pytest.mark.parametrize(
    "ports", [[], [("sctp", 1)], [("tcp", 0)], [("tcp", 70000)], [("tcp", True)],
              [("udp", p) for p in range(1, 40)]],
)  # fmt: skip
async def test_bad_port_lists(ports: Any) -> None:
    with pytest.raises(ValueError):
        await PortMapper(gateway="g", factories={}).start(ports)


# -- the NAT lab -------------------------------------------------------------------------------
lab = lab_for_test  # fails (never skips) where the lab cannot be built


line = json_line  # a probe's JSON report line (tests/netns/procs.py)


def probe(host: Any, *args: str) -> dict[str, Any]:
    return probe_report(host, PROBE, *args)


TCP_PORT, UDP_PORT = 41010, 41011
LEASE_S = 4  # renewed every 2 s: the test sees a renewal


@pytest.mark.parametrize("method", ["natpmp", "upnp"])
def test_lab_maps_renews_and_removes(method: str) -> None:
    with lab() as nl:
        stranger = nl.public("stranger")
        home = nl.home("upnp")
        router = home.router
        assert router is not None
        proc = home.popen([sys.executable, MAPPER_PROBE, "--method", method, "--tcp",
                           str(TCP_PORT), "--udp", str(UDP_PORT), "--lease", str(LEASE_S)],
                          stdin=subprocess.PIPE)  # fmt: skip
        got = line(proc)
        assert got["ok"], f"{got}\n{nl.miniupnpd_log(router)[-3000:]}"
        print(f"{method}: mapped in {got['seconds']} s")
        tcp, udp = got["mappings"]
        assert (tcp["proto"], tcp["internal_port"], udp["proto"]) == ("tcp", TCP_PORT, "udp")
        assert {tcp["external_ip"], udp["external_ip"]} == {router.public_addr}
        assert tcp["method"] == method and got["status"]["gateway"] == router.lan_addr
        rules = router.nft("list", "chain", "inet", "filter", "prerouting_miniupnpd")
        assert f"dnat ip to {home.addr}:{TCP_PORT}" in rules, rules

        tcp_to = f"{tcp['external_ip']}:{tcp['external_port']}"
        reached = probe(stranger, "tcp-connect", "--to", tcp_to, "--timeout", "3")
        assert reached == {"connected": True, "text": "hello"}, reached
        udp_to = f"{udp['external_ip']}:{udp['external_port']}"
        assert probe(stranger, "send", "--to", udp_to, "--wait", "3")["reply"] == "pong"

        time.sleep(LEASE_S / 2 + 0.6)
        status = command(proc, "status")["status"]
        assert status["renewals"] >= 1 and status["failures"] == 0, status
        assert status["mappings"][0]["expires_in_s"] > LEASE_S / 2 - 1, status
        assert command(proc, "events") == {"events": []}

        stopped = command(proc, "stop")
        print(f"{method}: removed in {stopped['seconds']} s")
        assert stopped["stopped"] and stopped["seconds"] < mapper.STOP_TIMEOUT_S
        proc.wait(timeout=5)
        rules = router.nft("list", "chain", "inet", "filter", "prerouting_miniupnpd")
        assert f"{home.addr}:{TCP_PORT}" not in rules and f"{home.addr}:{UDP_PORT}" not in rules
        after = probe(stranger, "tcp-connect", "--to", tcp_to, "--timeout", "1")
        assert not after["connected"], after


@pytest.mark.parametrize(("method", "bound_s"), [("auto", 3.0), ("natpmp", 0.5), ("upnp", 2.5)])
def test_lab_router_without_mapping_is_unavailable_quickly(method: str, bound_s: float) -> None:
    with lab() as nl:
        home = nl.home("port-restricted")
        argv = [MAPPER_PROBE, "--method", method, "--tcp", str(TCP_PORT), "--udp", str(UDP_PORT)]
        proc = home.popen([sys.executable, *argv], stdin=subprocess.PIPE)
        got = line(proc)
        print(f"{method}: unavailable after {got.get('seconds')} s: {got.get('reason')}")
        assert not got["ok"] and got["code"] == Code.PORTMAP_UNAVAILABLE, got
        assert got["seconds"] < bound_s, got
        assert proc.wait(timeout=5) == 0


def test_ssdp_answer_must_point_at_its_sender() -> None:
    from async_upnp_client.utils import CaseInsensitiveDict

    from gateway.reach.portmap.upnp import _valid_location

    def answer(location: str, sender: str = "192.168.71.1") -> Any:
        return CaseInsensitiveDict(location=location, _remote_addr=(sender, 1900))

    good = "http://192.168.71.1:5000/rootDesc.xml"
    assert _valid_location(answer(good)) == (good, "192.168.71.1")
    for bad in (answer(good, sender="192.168.71.9"), answer("https://192.168.71.1/x"),
                answer("http://example.com/x"), answer("http://192.168.71.1:99999/x"),
                answer("x" * 5000), answer(""), CaseInsensitiveDict(location=good)):  # fmt: skip
        assert _valid_location(bad) is None


def wait_event(proc: subprocess.Popen[str], kind: str, within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        kinds = [e["kind"] for e in command(proc, "events")["events"]]
        if kind in kinds or time.monotonic() > deadline:
            return kinds
        time.sleep(0.25)


def test_lab_mapping_lost_and_restored() -> None:
    """The router stops answering NAT-PMP (an nft drop in front of miniupnpd): once the lease
    has run out the mapper reports `lost`; when it answers again, `restored`."""
    with lab() as nl:
        home = nl.home("upnp")
        router = home.router
        assert router is not None
        argv = [MAPPER_PROBE, "--method", "natpmp", "--tcp", str(TCP_PORT), "--udp",
                str(UDP_PORT), "--lease", str(LEASE_S)]  # fmt: skip
        proc = home.popen([sys.executable, *argv], stdin=subprocess.PIPE)
        assert line(proc)["ok"]
        router.nft("add", "chain", "inet", "filter", "block",
                   "{ type filter hook input priority -10; }")  # fmt: skip
        router.nft("add", "rule", "inet", "filter", "block", "udp", "dport", "5351", "drop")
        began = time.monotonic()
        kinds = wait_event(proc, "lost", LEASE_S + 6)
        print(f"lost after {time.monotonic() - began:.1f} s")
        assert kinds == ["lost"], kinds
        status = command(proc, "status")["status"]
        assert status["state"] == "lost" and "no answer" in status["last_error"], status
        router.nft("flush", "chain", "inet", "filter", "block")
        began = time.monotonic()
        kinds = wait_event(proc, "restored", 12)
        print(f"restored after {time.monotonic() - began:.1f} s")
        assert kinds == ["lost", "restored"], kinds
        rules = router.nft("list", "chain", "inet", "filter", "prerouting_miniupnpd")
        assert f"dnat ip to {home.addr}:{TCP_PORT}" in rules
        assert command(proc, "stop")["stopped"]
