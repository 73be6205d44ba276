"""PCP (RFC 6887) port mapping (gateway/reach/portmap/pcp.py): MAP requests as byte vectors,
replies parsed totally (every malformed variant and result code is a coded ReachError), the
epoch check, then a fake PCP router on 127.0.0.1 (map, renewal and deletion with one nonce,
retransmission, stray replies ignored, a router restart seen in the epoch), the mapper's order
(a NAT-PMP-only router answers PCP "unsupported version" and NAT-PMP maps at once; a silent
port 5351 is waited for once, not twice), and in the NAT lab miniupnpd mapping by PCP. Where
the lab cannot be built the lab tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.portmap import Granted, PortMapper, mapper, natpmp, pcp
from gateway.reach.portmap.model import NoAnswer
from gateway.reach.portmap.pcp import Epoch, MapReply, PcpBackend, map_request, parse_reply
from tests.fuzz.engine import run as fuzz_run
from tests.fuzz.targets import Target, make_targets
from tests.helpers import udp_server
from tests.netns.natlab import PROBE, lab_for_test
from tests.netns.procs import command, json_line, probe_report

NONCE = bytes(range(1, 13))
MAPPED = bytes(10) + b"\xff\xff"

# docs/reach.md, "Port mapping": a MAP request for TCP port 4242 from 192.168.71.2, and the answer
REQUEST_HEX = (
    "02010000" "00000e10" "00000000000000000000ffffc0a84702"  # header: v2 MAP, 3600 s, client
    "0102030405060708090a0b0c" "06000000" "1092" "1092"  # nonce, TCP, internal, external
    "00000000000000000000ffff00000000"  # suggested external address: any IPv4
)  # fmt: skip
REPLY_HEX = (
    "02810000" "00000e10" "000004d2" "000000000000000000000000"  # v2 MAP reply, 3600 s, epoch
    "0102030405060708090a0b0c" "06000000" "1092" "1092"  # nonce, TCP, internal, assigned
    "00000000000000000000ffffcb00710a"  # the external address 203.0.113.10
)  # fmt: skip


def reply(
    *,
    result: int = 0,
    life: int = 3600,
    epoch: int = 1234,
    nonce: bytes = NONCE,
    proto: int = 6,
    internal: int = 4242,
    external: int = 4242,
    ip: bytes = MAPPED + bytes([203, 0, 113, 10]),
    version: int = 2,
    op: int = 0x81,
) -> bytes:
    head = struct.pack("!BBBBII12x", version, op, 0, result, life, epoch)
    return head + struct.pack("!12sB3xHH16s", nonce, proto, internal, external, ip)


# -- the wire format -----------------------------------------------------------------------------
def test_map_request_vector() -> None:
    got = map_request("tcp", 4242, 4242, 3600, NONCE, "192.168.71.2")
    assert got.hex() == REQUEST_HEX and len(got) == 60
    udp = map_request("udp", 4242, 0, 0, NONCE, "192.168.71.2")  # a deletion
    assert udp[4:8] == bytes(4) and udp[36] == 17 and udp[40:44] == b"\x10\x92\x00\x00"
    v6 = map_request("tcp", 1, 1, 1, NONCE, "2001:db8::5")
    assert v6[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::5")
    for bad in (lambda: map_request("tcp", 0, 1, 1, NONCE, "10.0.0.2"),
                lambda: map_request("tcp", 1, 70000, 1, NONCE, "10.0.0.2"),
                lambda: map_request("tcp", 1, 1, 10**9, NONCE, "10.0.0.2"),
                lambda: map_request("tcp", 1, 1, 1, NONCE[:8], "10.0.0.2")):  # fmt: skip
        with pytest.raises(ValueError):
            bad()


def test_vectors_are_in_the_doc() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reach.md").read_text(encoding="utf-8")
    flat = "".join(doc.split())
    assert REQUEST_HEX in flat and REPLY_HEX in flat


def test_valid_replies_parse() -> None:
    want = MapReply("tcp", 3600, 1234, NONCE, 4242, 4242, "203.0.113.10")
    assert reply().hex() == REPLY_HEX
    assert parse_reply(bytes.fromhex(REPLY_HEX)) == want
    option = struct.pack("!BBH", 130, 0, 5) + b"abcde\0\0\0"  # an optional option, padded
    assert parse_reply(reply() + option) == want
    assert parse_reply(reply(proto=17, external=5000)).external_port == 5000
    deleted = parse_reply(reply(life=0, external=0, ip=bytes(16)))  # "::": no address
    assert (deleted.lifetime_s, deleted.external_ip) == (0, "0.0.0.0")


UNAVAILABLE, REFUSED = Code.PORTMAP_UNAVAILABLE, Code.PORTMAP_REFUSED
BAD_REPLIES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", UNAVAILABLE),
    "one byte": (b"\x02", UNAVAILABLE),
    "three bytes": (b"\x02\x81\x00", UNAVAILABLE),
    "header cut": (reply()[:20], UNAVAILABLE),
    "header only": (reply()[:24], UNAVAILABLE),
    "MAP cut": (reply()[:56], UNAVAILABLE),
    "not padded": (reply() + b"\0", UNAVAILABLE),
    "oversized": (reply() + bytes(1100), UNAVAILABLE),
    "NAT-PMP unsupported version": (struct.pack("!BBHI", 0, 129, 1, 77), UNAVAILABLE),
    "NAT-PMP success": (struct.pack("!BBHI4s", 0, 128, 0, 77, bytes(4)), UNAVAILABLE),
    "version 1": (reply(version=1), UNAVAILABLE),
    "version 255": (reply(version=255), UNAVAILABLE),
    "a request echoed": (bytes.fromhex(REQUEST_HEX), UNAVAILABLE),
    "ANNOUNCE reply": (reply(op=0x80), UNAVAILABLE),
    "PEER reply": (reply(op=0x82), UNAVAILABLE),
    "protocol 0": (reply(proto=0), UNAVAILABLE),
    "protocol SCTP": (reply(proto=132), UNAVAILABLE),
    "internal port 0": (reply(internal=0), UNAVAILABLE),
    "IPv6 external": (reply(ip=socket.inet_pton(socket.AF_INET6, "2001:db8::1")), UNAVAILABLE),
    "option cut": (reply() + b"\x80\x00", UNAVAILABLE),
    "option cut at 4": (reply() + b"\x80\x00\x00\x08", UNAVAILABLE),
    "option too long": (reply() + struct.pack("!BBH", 130, 0, 9) + bytes(8), UNAVAILABLE),
    "result 200": (reply(result=200), UNAVAILABLE),
    "result 1 header only": (reply(result=1)[:24], UNAVAILABLE),
}
RESULTS = {1: UNAVAILABLE, 2: REFUSED, 3: UNAVAILABLE, 4: UNAVAILABLE, 5: UNAVAILABLE,
           6: UNAVAILABLE, 7: UNAVAILABLE, 8: REFUSED, 9: UNAVAILABLE, 10: REFUSED,
           11: REFUSED, 12: UNAVAILABLE, 13: UNAVAILABLE}  # fmt: skip
for _code, _expected in RESULTS.items():
    BAD_REPLIES[f"result {_code} {pcp.RESULTS[_code]}"] = (reply(result=_code), _expected)


@pytest.mark.parametrize("name", list(BAD_REPLIES))
def test_malformed_replies_and_results_are_coded(name: str) -> None:
    data, code = BAD_REPLIES[name]
    with pytest.raises(ReachError) as info:
        parse_reply(data)
    assert info.value.code == code, str(info.value)
    assert str(info.value).startswith("pcp: ") and "\n" not in str(info.value)


def test_random_datagrams_never_escape() -> None:
    rng = random.Random(6887)
    seeds = [reply(), reply(proto=17), reply() + struct.pack("!BBH", 130, 0, 4) + bytes(4)]
    for _ in range(20000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data) + 2)]
        try:
            parse_reply(bytes(data))
        except ReachError:
            pass


def test_pcp_reply_under_the_fuzz_engine(tmp_path: Path) -> None:
    found = [t for t in make_targets(tmp_path) if t.name == "portmap/pcp-reply"]
    assert len(found) == 1
    target = Target("pcp", [*found[0].seeds, reply(result=8)], lambda d: d, parse_reply)
    result = fuzz_run(target, 3000, seed=1)
    assert result.crash_count == 0, [str(c) for c in result.crashes.values()]
    assert result.refused > 0


def test_epoch_check_follows_rfc_6887_8_5() -> None:
    e = Epoch()
    assert e.valid(1000, 50.0)  # the first answer is valid
    assert e.valid(1010, 60.0)  # both clocks ran 10 s
    assert e.valid(1009, 60.5)  # back by a second: still fine
    assert e.valid(1100, 155.0)  # 91 s against 94.5 s: within 2 s + 1/16
    assert not e.valid(5, 156.0)  # back to 5: the router restarted
    assert e.valid(65, 216.0)
    assert not e.valid(400, 226.0)  # 335 s of router time in 10 s
    assert not e.valid(410, 1226.0)  # 10 s of router time in 1000 s (a restart in between)


# -- a fake PCP router on 127.0.0.1 ---------------------------------------------------------------
class FakePcp(asyncio.DatagramProtocol):
    """Answers PCP MAP requests (NATPMP_ONLY: NAT-PMP answers only, "unsupported version" to
    PCP); drops the first DROP requests; sends NOISE(request) first."""

    def __init__(
        self,
        *,
        drop: int = 0,
        result: int = 0,
        natpmp_only: bool = False,
        ip: str = "203.0.113.10",
        noise: Callable[[bytes], list[bytes]] | None = None,
    ) -> None:
        self.drop, self.result, self.natpmp_only, self.ip = drop, result, natpmp_only, ip
        self.noise = noise or (lambda request: [])
        self.requests: list[bytes] = []
        self.boot = time.monotonic() - 1000  # epoch 1000 now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def epoch(self) -> int:
        return int(time.monotonic() - self.boot)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests.append(data)
        if len(self.requests) <= self.drop:
            return
        if data[0] != 0 and self.natpmp_only:  # RFC 6886 3.5: "unsupported version"
            self.transport.sendto(struct.pack("!BBHI", 0, 128 + data[1], 1, self.epoch()), addr)
            return
        if data[0] == 0:  # NAT-PMP (tests/test_reach_portmap.py's fake router, shortened)
            if data[1] == 0:
                ip = socket.inet_aton(self.ip)
                self.transport.sendto(struct.pack("!BBHI4s", 0, 128, 0, 5, ip), addr)
            else:
                _, op, _, internal, external, life = struct.unpack("!BBHHHI", data)
                out = struct.pack("!BBHIHHI", 0, 128 + op, 0, 5, internal, external, life)
                self.transport.sendto(out, addr)
            return
        for junk in self.noise(data):
            self.transport.sendto(junk, addr)
        life = struct.unpack_from("!I", data, 4)[0]
        nonce, proto, internal, external = struct.unpack_from("!12sB3xHH", data, 24)
        ip = MAPPED + socket.inet_aton(self.ip) if life else bytes(16)
        external = external if life else 0
        out = reply(result=self.result, life=min(life, 60), epoch=self.epoch(), nonce=nonce,
                    proto=proto, internal=internal, external=external, ip=ip)  # fmt: skip
        self.transport.sendto(out, addr)


def fake_pcp(**kwargs: Any) -> Any:
    return udp_server(lambda: FakePcp(**kwargs))


def fields(request: bytes) -> tuple[int, bytes, bytes, int, int]:
    """(lifetime, client address, nonce, protocol, internal port) of a MAP request."""
    life, client = struct.unpack_from("!I16s", request, 4)
    nonce, proto, internal = struct.unpack_from("!12sB3xH", request, 24)
    return life, client, nonce, proto, internal


async def test_map_renew_and_delete_keep_one_nonce() -> None:
    async with fake_pcp() as (router, port):
        backend = await PcpBackend.open("127.0.0.1", port)
        try:
            with pytest.raises(ReachError, match="before the first MAP"):
                await backend.external_address()
            assert await backend.map("tcp", 4242, 4242, 3600) == Granted(4242, 60, "203.0.113.10")
            assert await backend.external_address() == "203.0.113.10"
            assert await backend.map("udp", 4242, 4242, 3600) == Granted(4242, 60, "203.0.113.10")
            assert await backend.map("tcp", 4242, 4242, 3600) == Granted(4242, 60, "203.0.113.10")
            await backend.unmap("tcp", 4242, 4242)
            await backend.map("tcp", 4242, 4242, 3600)  # a new mapping: a new nonce
        finally:
            await backend.close()
    made, udp, renewed, deleted, again = (fields(r) for r in router.requests)
    assert made[0] == 3600 and made[1] == MAPPED + socket.inet_aton("127.0.0.1")
    assert router.requests[0][44:60] == MAPPED + bytes(4)  # suggested: any IPv4 address
    assert (made[3], udp[3]) == (6, 17) and udp[2] != made[2]
    assert renewed[2] == made[2] and deleted[2] == made[2] and deleted[0] == 0
    assert again[2] != made[2] and len(made[2]) == 12
    assert backend.restarts == 0 and backend.ignored == 0


async def test_resends_and_ignores_stray_replies() -> None:
    def noise(request: bytes) -> list[bytes]:
        _, _, nonce, proto, internal = fields(request)
        return [b"\x02", b"\x02\x81\x00", reply()[:40],  # short ones (asyncio sends no b"")
                reply(nonce=bytes(12), proto=proto, internal=internal),  # another nonce
                reply(nonce=nonce, proto=17 if proto == 6 else 6, internal=internal),
                reply(nonce=nonce, proto=proto, internal=internal + 1),  # another port
                reply(nonce=nonce, op=0x80), request,  # an ANNOUNCE reply, the request echoed
                reply(nonce=bytes(12), result=2)]  # a refusal of another request  # fmt: skip

    async with fake_pcp(drop=1, noise=noise) as (router, port):
        backend = await PcpBackend.open("127.0.0.1", port)
        try:
            began = time.monotonic()
            assert await backend.map("tcp", 4242, 4242, 60) == Granted(4242, 60, "203.0.113.10")
            assert 0.2 < time.monotonic() - began < 1.0  # one resend after 250 ms
        finally:
            await backend.close()
    assert len(router.requests) == 2 and router.requests[0] == router.requests[1]
    assert backend.ignored == 9


async def test_router_restart_is_seen_in_the_epoch() -> None:
    async with fake_pcp() as (router, port):
        backend = await PcpBackend.open("127.0.0.1", port)
        try:
            await backend.map("tcp", 4242, 4242, 60)
            await backend.map("tcp", 4242, 4242, 60)
            assert backend.restarts == 0
            router.boot = time.monotonic()  # restarted: epoch 0
            assert await backend.map("tcp", 4242, 4242, 60) == Granted(4242, 60, "203.0.113.10")
            assert backend.restarts == 1 and backend.epoch.server == 0
        finally:
            await backend.close()


@pytest.mark.parametrize(("result", "code"), [(2, REFUSED), (8, REFUSED), (7, UNAVAILABLE)])
async def test_result_codes_are_quick_and_coded(result: int, code: str) -> None:
    async with fake_pcp(result=result) as (_, port):
        backend = await PcpBackend.open("127.0.0.1", port)
        began = time.monotonic()
        with pytest.raises(ReachError) as info:
            await backend.map("udp", 4242, 4242, 60)
        await backend.close()
    assert info.value.code == code and time.monotonic() - began < 0.2


async def test_silence_and_no_listener_are_bounded_no_answers() -> None:
    async with fake_pcp(drop=99) as (router, port):
        backend = await PcpBackend.open("127.0.0.1", port)
        began = time.monotonic()
        with pytest.raises(NoAnswer, match="no answer after 3 tries"):
            await backend.map("tcp", 4242, 4242, 60)
        await backend.close()
    took = time.monotonic() - began
    assert 1.5 < took < mapper.TIMEOUTS_S["pcp"], took
    assert len(router.requests) == 3 and len(set(router.requests)) == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    backend = await PcpBackend.open("127.0.0.1", closed)
    began = time.monotonic()
    with pytest.raises(NoAnswer, match="does not listen") as info:
        await backend.map("tcp", 4242, 4242, 60)
    await backend.close()
    assert info.value.code == UNAVAILABLE and time.monotonic() - began < 0.3


# -- the mapper's order ---------------------------------------------------------------------------
def local_factories(port: int, calls: list[str]) -> dict[str, Any]:
    async def open_pcp(gateway: str | None) -> Any:
        calls.append("pcp")
        return await PcpBackend.open("127.0.0.1", port)

    async def open_natpmp(gateway: str | None) -> Any:
        calls.append("natpmp")
        return await natpmp.NatPmpBackend.open("127.0.0.1", port)

    async def open_upnp(gateway: str | None) -> Any:
        calls.append("upnp")
        raise ReachError("upnp: no Internet Gateway Device", code=UNAVAILABLE)

    return {"pcp": open_pcp, "natpmp": open_natpmp, "upnp": open_upnp}


PORTS = [("tcp", 4242), ("udp", 4242)]


async def test_pcp_first_then_removed_at_stop() -> None:
    calls: list[str] = []
    async with fake_pcp() as (router, port):
        m = PortMapper(gateway="127.0.0.1", factories=local_factories(port, calls))
        got = await m.start(PORTS)
        assert [(x.method, x.external) for x in got] == [("pcp", "203.0.113.10:4242")] * 2
        status = m.status()
        assert (status["method"], status["external_ip"]) == ("pcp", "203.0.113.10")
        await m.stop()
    assert calls == ["pcp"]
    deleted = [fields(r) for r in router.requests[2:]]
    assert [(d[0], d[3]) for d in deleted] == [(0, 6), (0, 17)]
    assert [d[2] for d in deleted] == [fields(r)[2] for r in router.requests[:2]]


async def test_natpmp_only_router_falls_to_natpmp_at_once() -> None:
    calls: list[str] = []
    async with fake_pcp(natpmp_only=True) as (router, port):
        m = PortMapper(gateway="127.0.0.1", factories=local_factories(port, calls))
        began = time.monotonic()
        got = await m.start(PORTS)
        took = time.monotonic() - began
        await m.stop()
    assert calls == ["pcp", "natpmp"] and took < 0.3, took
    assert {x.method for x in got} == {"natpmp"} and got[0].external == "203.0.113.10:4242"
    assert router.requests[0][0] == 2 and len([r for r in router.requests if r[0] == 2]) == 1


async def test_silent_port_5351_is_waited_for_once() -> None:
    calls: list[str] = []
    async with fake_pcp(drop=999) as (_, port):
        m = PortMapper(gateway="127.0.0.1", factories=local_factories(port, calls))
        began = time.monotonic()
        with pytest.raises(ReachError) as info:
            await m.start(PORTS)
        took = time.monotonic() - began
    print(f"silent port 5351: unavailable after {took:.2f} s")
    assert calls == ["pcp", "upnp"] and took < mapper.TIMEOUTS_S["pcp"] + 0.3, took
    assert info.value.code == UNAVAILABLE
    assert str(info.value) == ("pcp: no answer after 3 tries; natpmp: not tried (pcp got no "
                               "answer on its port); upnp: no Internet Gateway Device")  # fmt: skip


async def test_private_address_in_the_map_reply_is_unmapped() -> None:
    calls: list[str] = []
    async with fake_pcp(ip="100.64.0.2") as (router, port):
        m = PortMapper(method="pcp", gateway="127.0.0.1", factories=local_factories(port, calls))
        with pytest.raises(ReachError, match="not public") as info:
            await m.start(PORTS)
    assert info.value.code == UNAVAILABLE
    assert [fields(r)[0] for r in router.requests] == [3600, 0]  # mapped, then deleted


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, pcp, natpmp, upnp"):
        PortMapper(method="igd")  # type: ignore[arg-type]


# -- the NAT lab: miniupnpd speaks PCP -----------------------------------------------------------
MAPPER_PROBE = str(Path(__file__).with_name("netns") / "mapper_probe.py")
TCP_PORT, UDP_PORT = 41020, 41021


def probe(host: Any, *args: str) -> dict[str, Any]:
    return probe_report(host, PROBE, *args)


@pytest.mark.parametrize("method", ["pcp", "auto"])
def test_lab_maps_by_pcp_through_miniupnpd(method: str) -> None:
    with lab_for_test() as nl:
        stranger = nl.public("stranger")
        home = nl.home("upnp")
        router = home.router
        assert router is not None
        proc = home.popen([sys.executable, MAPPER_PROBE, "--method", method, "--tcp",
                           str(TCP_PORT), "--udp", str(UDP_PORT), "--lease", "600"],
                          stdin=subprocess.PIPE)  # fmt: skip
        got = json_line(proc)
        assert got["ok"], f"{got}\n{nl.miniupnpd_log(router)[-3000:]}"
        print(f"{method}: mapped by {got['status']['method']} in {got['seconds']} s")
        tcp, udp = got["mappings"]
        assert {tcp["method"], udp["method"], got["status"]["method"]} == {"pcp"}
        assert {tcp["external_ip"], udp["external_ip"]} == {router.public_addr}
        assert 0 < tcp["lifetime_s"] <= 600 and got["seconds"] < 1.0
        log = nl.miniupnpd_log(router)
        assert "PCP MAP" in log and "NAT-PMP port mapping request" not in log, log[-2000:]
        rules = router.nft("list", "chain", "inet", "filter", "prerouting_miniupnpd")
        assert f"dnat ip to {home.addr}:{TCP_PORT}" in rules, rules
        assert f"dnat ip to {home.addr}:{UDP_PORT}" in rules, rules

        tcp_to = f"{tcp['external_ip']}:{tcp['external_port']}"
        reached = probe(stranger, "tcp-connect", "--to", tcp_to, "--timeout", "3")
        assert reached == {"connected": True, "text": "hello"}, reached
        udp_to = f"{udp['external_ip']}:{udp['external_port']}"
        assert probe(stranger, "send", "--to", udp_to, "--wait", "3")["reply"] == "pong"

        stopped = command(proc, "stop")
        print(f"{method}: removed in {stopped['seconds']} s")
        assert stopped["stopped"] and stopped["seconds"] < mapper.STOP_TIMEOUT_S
        proc.wait(timeout=5)
        rules = router.nft("list", "chain", "inet", "filter", "prerouting_miniupnpd")
        assert f"{home.addr}:{TCP_PORT}" not in rules and f"{home.addr}:{UDP_PORT}" not in rules
        assert "mapping removed" in nl.miniupnpd_log(router)
        after = probe(stranger, "tcp-connect", "--to", tcp_to, "--timeout", "1")
        assert not after["connected"], after


def test_lab_silent_router_costs_one_wait_on_port_5351() -> None:
    """A router dropping everything on UDP 5351 and without UPnP: PCP's 2 s, then UPnP's SSDP
    window; NAT-PMP is not tried (before PCP, this case cost NAT-PMP's 2 s + the window)."""
    with lab_for_test() as nl:
        home = nl.home("port-restricted")
        router = home.router
        assert router is not None
        router.nft("add", "chain", "inet", "filter", "block",
                   "{ type filter hook input priority -10; }")  # fmt: skip
        router.nft("add", "rule", "inet", "filter", "block", "udp", "dport", "5351", "drop")
        argv = [MAPPER_PROBE, "--method", "auto", "--tcp", str(TCP_PORT), "--udp", str(UDP_PORT)]
        proc = home.popen([sys.executable, *argv], stdin=subprocess.PIPE)
        got = json_line(proc)
        print(f"silent router: unavailable after {got.get('seconds')} s: {got.get('reason')}")
        assert not got["ok"] and got["code"] == Code.PORTMAP_UNAVAILABLE, got
        assert got["reason"].startswith("pcp: no answer after 3 tries; natpmp: not tried"), got
        assert got["seconds"] < mapper.TIMEOUTS_S["pcp"] + mapper.TIMEOUTS_S["upnp"], got
        assert proc.wait(timeout=5) == 0
