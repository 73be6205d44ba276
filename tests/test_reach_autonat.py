"""Reachability on the DHT (docs/dht-records.md, "Reachability"): client mode, dial-back,
observed address, services; real nodes on 127.0.0.x, and in the NAT lab behind real routers.

Loopback nodes get their own 127.0.0.x address each (and `local_by_port=False`, `/32`, as the
flood tests do), so "distinct peers at distinct IPs" is what it says. The lab tests run
tests/netns/dhtnode_probe.py inside namespaces; they fail where the lab cannot be built, never
skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.identity import generate_keypair
from gateway.p2p import DhtNode, DhtSettings, make_contact_record
from gateway.p2p.reachwire import (
    CLIENT_MARK,
    NONCE,
    parse_dialback_args,
    parse_dialback_reply,
    parse_info_reply,
    parse_nonce_datagram,
    validate_services,
)
from gateway.p2p.rpc import REQUEST, RESPONSE, pack, unpack
from tests.netns.natlab import Host, NatLab, lab_for_test
from tests.netns.procs import first_line

FAST_TIMEOUT = 0.3  # loopback peers answer in well under a millisecond
QUIET_S = 0.3  # how long a socket listens to show that nothing comes
SETTLE_S = 0.2  # ping-back admission checks finish within this on loopback
DHT_PROBE = str(Path(__file__).parent / "netns" / "dhtnode_probe.py")
DOC = Path(__file__).resolve().parents[1] / "docs" / "dht-records.md"


def settings(**kw: Any) -> DhtSettings:
    kw.setdefault("rpc_timeout", FAST_TIMEOUT)
    return DhtSettings(local_by_port=False, prefix_v4=32, **kw)


@contextlib.asynccontextmanager
async def network(n: int, first: int = 2, **kw: Any) -> AsyncIterator[list[DhtNode]]:
    """N full nodes, node i on 127.0.0.(first + i), all bootstrapped from the first."""
    nodes: list[DhtNode] = []
    try:
        for i in range(n):
            boot = [nodes[0].address] if nodes else []
            node = DhtNode(f"127.0.0.{first + i}", 0, bootstrap=boot, settings=settings(**kw))
            await node.start()
            nodes.append(node)
        await asyncio.sleep(SETTLE_S)
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


def knows(node: DhtNode, other: DhtNode) -> bool:
    return any(c.id == other.node_id for c in node.protocol.router.contacts())


class Raw:
    """A bare UDP socket speaking the wire format by hand."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def send(self, to: tuple[str, int], name: str, args: list[Any], mid: bytes) -> None:
        self.sock.sendto(REQUEST + mid + pack([name, args]), to)

    async def recv_all(self, wait: float = QUIET_S) -> list[tuple[bytes, tuple[str, int]]]:
        loop = asyncio.get_running_loop()
        got = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while True:
                    got.append(await loop.sock_recvfrom(self.sock, 9000))
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Raw]:
    r = Raw("127.0.0.9")
    yield r
    r.close()


# -- parsers ------------------------------------------------------------------------------------

ID, NONCE16 = b"\x22" * 20, b"\x33" * 16


def test_parsers_accept_the_documented_forms() -> None:
    assert parse_dialback_args([ID, NONCE16, None]).tcp_port is None
    assert parse_dialback_args(pack([ID, NONCE16, 4100])).tcp_port == 4100
    reply = parse_dialback_reply({"observed": ["203.0.113.10", 40000], "udp": True, "tcp": None})
    assert reply.observed == ("203.0.113.10", 40000) and reply.udp and reply.refused is None
    refused = parse_dialback_reply({"observed": ["::1", 1], "refused": "dialback_refused"})
    assert refused.refused == "dialback_refused" and not refused.udp
    info = parse_info_reply(
        {"client": False, "services": {"relay": "http://203.0.113.100:4100", "x": "quic://1.2.3.4"}}
    )
    assert info.services == {"relay": "http://203.0.113.100:4100"}  # unknown scheme left out
    assert parse_nonce_datagram(NONCE + NONCE16) == NONCE16


@pytest.mark.parametrize(
    "args",
    [
        [],
        [ID, NONCE16],
        [ID, NONCE16, None, ["192.0.2.1", 80]],  # no address can be given: never a reflector
        [ID[:19], NONCE16, None],
        [ID, NONCE16[:15], None],
        [ID, NONCE16, 0],
        [ID, NONCE16, 65536],
        [ID, NONCE16, True],
        [ID, NONCE16, "80"],
        b"\xc1",
        {"a": 1},
    ],
)
def test_dialback_args_are_exact(args: Any) -> None:
    with pytest.raises(ReachError) as err:
        parse_dialback_args(args)
    assert err.value.code == Code.DIALBACK_REFUSED


@pytest.mark.parametrize(
    "data", [b"", NONCE, NONCE + NONCE16[:15], NONCE + NONCE16 + b"x", b"\x01" + NONCE16]
)
def test_nonce_datagrams_are_exact(data: bytes) -> None:
    with pytest.raises(ReachError):
        parse_nonce_datagram(data)


@pytest.mark.parametrize(
    "services",
    [
        {"relay": "ftp://203.0.113.1/"},
        {"relay": "http://relay.example.net:4100"},  # not an IP literal
        {"relay": "http://user@203.0.113.1:4100"},
        {"relay": "http://203.0.113.1:4100/" + "a" * 256},
        {"relay": "http://203.0.113.1:99999"},
        {"Relay": "http://203.0.113.1"},
        {f"s{i}": "http://203.0.113.1" for i in range(9)},
        {"relay": 5},
        ["relay"],
    ],
)
def test_services_are_validated(services: Any) -> None:
    with pytest.raises(ReachError):
        validate_services(services)
    node = DhtNode()
    with pytest.raises(ReachError):
        node.services = services
    assert node.services == {}


def _doc_reach_vectors() -> list[bytes]:
    section = DOC.read_text().split("## Reachability", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith(("00 ", "01 ", "02 "))]
    return [bytes.fromhex(ln.replace(" ", "")) for ln in lines]


def test_doc_vectors_of_the_reachability_rpcs() -> None:
    mid, cmid = b"\x11" * 20, CLIENT_MARK + b"\x11" * 16
    ping_c, dialback, reply, nonce, info, info_reply = _doc_reach_vectors()
    assert ping_c == REQUEST + cmid + pack(["ping", [ID]])
    assert dialback == REQUEST + mid + pack(["dialback", [ID, NONCE16, 4100]])
    observed = {"observed": ["203.0.113.10", 40000], "udp": True, "tcp": False}
    assert reply == RESPONSE + mid + pack(observed)
    assert nonce == NONCE + NONCE16
    assert info == REQUEST + mid + pack(["info", [ID]])
    assert info_reply == RESPONSE + mid + pack(
        {"client": False, "services": {"relay": "http://203.0.113.100:4100"}}
    )
    assert parse_dialback_args(unpack(dialback[21:])[1]).tcp_port == 4100  # type: ignore[index]


# -- client mode --------------------------------------------------------------------------------


async def test_a_client_is_answered_but_never_admitted() -> None:
    async with network(5) as nodes:
        client = DhtNode("127.0.0.20", bootstrap=[nodes[0].address], settings=settings())
        client.set_client_mode(True)
        full = DhtNode("127.0.0.21", bootstrap=[nodes[0].address], settings=settings())
        async with client, full:
            assert client.client_mode and client.routing_size() >= 4  # it learnt the network
            kp = generate_keypair()
            text = make_contact_record(
                kp, seq=1, addrs=["ws://127.0.0.20:1/p2p"], td_digest="sha256:x"
            )
            stored = await client.publish(text)
            assert stored == 6 and dht_holds([*nodes, full], kp.id) == 6
            assert dht_holds([client], kp.id) == 0  # a client is no holder
            found = await client.get(kp.id)
            assert found is not None and found.seq == 1
            await asyncio.sleep(SETTLE_S)
            assert not any(knows(n, client) for n in nodes)
            assert any(knows(n, full) for n in nodes)  # the control: a full node is admitted

            client.set_client_mode(False)  # reachable after all: its next requests admit it
            await client.get(kp.id)
            await asyncio.sleep(SETTLE_S)
            admitted = [n for n in nodes if knows(n, client)]
            assert admitted
            client.set_client_mode(True)  # and a contact that turns client is dropped
            await asyncio.gather(*(client.protocol.ping_address(n.address) for n in admitted))
            assert not any(knows(n, client) for n in admitted)


def dht_holds(nodes: list[DhtNode], record_id: str) -> int:
    from gateway.p2p import dht_key_digest

    return sum(1 for n in nodes if dht_key_digest(record_id) in n.storage)


async def test_the_client_flag_on_the_wire(raw: Raw) -> None:
    async with network(1) as (node,):
        for mid, pinged_back in ((CLIENT_MARK + os.urandom(16), False), (os.urandom(20), True)):
            raw.send(node.address, "ping", [os.urandom(20)], mid)
            got = await raw.recv_all()
            replies = [d for d, _ in got if d[:1] == RESPONSE]
            assert [r[1:21] for r in replies] == [mid]  # answered either way, msg id echoed
            assert any(d[:1] == REQUEST for d, _ in got) is pinged_back  # the admission ping
        for client in (True, False):  # what this node sends in each mode
            node.set_client_mode(client)
            node.protocol.ping_address(raw.address)
            ((data, _),) = await raw.recv_all()
            assert data[:1] == REQUEST and data[1:21].startswith(CLIENT_MARK) is client


# -- dial-back ----------------------------------------------------------------------------------


async def test_dialback_names_the_observed_address_and_dials_from_a_fresh_port(raw: Raw) -> None:
    async with network(1) as (node,):
        raw.send(node.address, "dialback", [ID, NONCE16, None], b"\x11" * 20)
        got = await raw.recv_all()
        nonces = [(d, a) for d, a in got if d[:1] == NONCE]
        replies = [unpack(d[21:]) for d, _ in got if d[:1] == RESPONSE]
        assert replies == [{"observed": list(raw.address), "udp": True, "tcp": None}]
        assert [d for d, _ in nonces] == [NONCE + NONCE16]
        src = nonces[0][1]
        assert src[0] == node.host and src[1] != node.port  # the node's address, a new port


async def test_dialback_goes_to_the_sender_only(raw: Raw) -> None:
    """The TCP dial goes to the sender's own IP at the port asked: a listener on another
    address never hears of it, and a request naming an address is dropped unanswered."""
    connected: list[str] = []

    async def on_conn(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        connected.append(w.get_extra_info("sockname")[0])
        w.close()

    here = await asyncio.start_server(on_conn, raw.address[0], 0)
    port = here.sockets[0].getsockname()[1]
    elsewhere = await asyncio.start_server(on_conn, "127.0.0.10", port)
    try:
        async with network(1) as (node,):
            raw.send(node.address, "dialback", [ID, NONCE16, port], b"\x11" * 20)
            got = await raw.recv_all(1.0)
            replies = [unpack(d[21:]) for d, _ in got if d[:1] == RESPONSE]
            assert replies == [{"observed": list(raw.address), "udp": True, "tcp": True}]
            assert connected == [raw.address[0]]
            raw.send(
                node.address, "dialback", [ID, NONCE16, port, ["127.0.0.10", port]], b"\x12" * 20
            )
            raw.send(node.address, "dialback", [ID, NONCE16, None, "127.0.0.10"], b"\x13" * 20)
            assert await raw.recv_all() == []  # dropped: no reply, no datagram, no dial
            assert connected == [raw.address[0]]
            closed = socket.socket()
            closed.bind((raw.address[0], 0))
            free = closed.getsockname()[1]
            closed.close()
            raw.send(node.address, "dialback", [ID, NONCE16, free], b"\x14" * 20)
            got = await raw.recv_all(1.0)
            assert [unpack(d[21:])["tcp"] for d, _ in got if d[:1] == RESPONSE] == [False]  # type: ignore[index]
    finally:
        here.close()
        elsewhere.close()


async def test_dialbacks_are_rate_limited_per_source_and_in_all(raw: Raw) -> None:
    async with network(1, dialback_burst=2, dialback_rate=0.01) as (node,):
        for i in range(3):
            raw.send(node.address, "dialback", [ID, NONCE16, None], bytes([i]) * 20)
        got = await raw.recv_all()
        replies = [unpack(d[21:]) for d, _ in got if d[:1] == RESPONSE]
        assert len(replies) == 3 and len([d for d, _ in got if d[:1] == NONCE]) == 2
        assert replies[2] == {"observed": list(raw.address), "refused": "dialback_refused"}
        other = Raw("127.0.0.11")  # another source still gets its dial-backs
        try:
            other.send(node.address, "dialback", [ID, NONCE16, None], b"\x05" * 20)
            assert len([d for d, _ in await other.recv_all() if d[:1] == NONCE]) == 1
        finally:
            other.close()
        assert node.protocol.reach.refused == 1 and node.protocol.reach.dialled == 3
    async with network(1, dialback_global_burst=3, dialback_global_rate=0.01) as (node,):
        socks = [Raw(f"127.0.0.{30 + i}") for i in range(4)]
        try:
            for s in socks:
                s.send(node.address, "dialback", [ID, NONCE16, None], b"\x06" * 20)
            nonces = [sum(1 for d, _ in await s.recv_all() if d[:1] == NONCE) for s in socks]
        finally:
            for s in socks:
                s.close()
        assert sorted(nonces) == [0, 1, 1, 1]


async def test_check_reachability_on_loopback() -> None:
    async with network(4) as nodes:
        me = nodes[-1]
        r = await me.check_reachability()
        assert r.observed == (me.host, me.port)
        assert r.udp_reachable and r.confirmations == 3 and r.asked == 3 and r.answered == 3
        assert r.tcp_reachable is None

        server = await asyncio.start_server(lambda _r, w: w.close(), me.host, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            r = await me.check_reachability(port)
            assert r.tcp_reachable is True
        finally:
            server.close()
        r = await me.check_reachability(port)
        assert r.tcp_reachable is False  # closed now

        # A NAT that filters unsolicited datagrams, simulated: the nonces do not arrive.
        me.protocol.nonce_received = lambda data, sender: None  # type: ignore[method-assign]
        r = await me.check_reachability()
        assert not r.udp_reachable and r.confirmations == 0 and r.observed == (me.host, me.port)


async def test_one_peer_cannot_decide() -> None:
    """One liar among 3 does not move the observed address; one peer alone decides nothing."""
    async with network(4) as nodes:
        me, liar = nodes[-1], nodes[0]
        liar.protocol.reach.dialback = lambda sender, args: {  # type: ignore[method-assign]
            "observed": ["192.0.2.66", 6666],
            "udp": True,
            "tcp": None,
        }
        r = await me.check_reachability()
        assert r.observed == (me.host, me.port) and r.confirmations == 2 and r.udp_reachable
    async with network(2) as (_a, b):
        with pytest.raises(ReachError) as err:
            await b.check_reachability()
        assert err.value.code == Code.REACH and "1 of 1" in str(err.value)


async def test_a_peer_that_drops_dialback_stays_a_contact() -> None:
    """Old nodes drop the new RPCs: their silence must not get them evicted as dead."""
    async with network(4) as nodes:
        me, old = nodes[-1], nodes[0]
        real = old.protocol.handle_request

        def drop_new(name: str, args: list[Any], sender: Any, *, client: bool = False) -> object:
            if name in ("dialback", "info"):
                return real("nosuch", args, sender)
            return real(name, args, sender, client=client)

        old.protocol.handle_request = drop_new  # type: ignore[method-assign]
        r = await me.check_reachability()
        assert r.answered == 2 and r.udp_reachable
        assert knows(me, old) and not any(
            me.protocol.is_dead(c) for c in me.protocol.router.contacts()
        )
        assert await me.find_services("relay", 1) == []
        assert knows(me, old)


# -- services -----------------------------------------------------------------------------------


async def test_find_services_keeps_urls_at_the_nodes_own_address() -> None:
    async with network(6) as nodes:
        nodes[1].services = {"relay": f"http://{nodes[1].host}:4100"}
        nodes[2].services = {"relay": f"ws://{nodes[2].host}:4100/relay", "other": "http://1.2.3.4"}
        nodes[3].services = {"relay": "http://127.0.0.99:4100"}  # a third party's address
        nodes[4].services = {"relay": f"http://{nodes[4].host}:4100"}
        nodes[4].set_client_mode(True)  # still in tables, but says it is a client: skipped
        me = nodes[5]
        found = await me.find_services("relay", 5)
        assert sorted(found) == sorted(
            [f"http://{nodes[1].host}:4100", f"ws://{nodes[2].host}:4100/relay"]
        )
        assert len(await me.find_services("relay", 1)) == 1
        assert await me.find_services("nosuch", 3) == []
        assert nodes[1].services == {"relay": f"http://{nodes[1].host}:4100"}


# -- the NAT lab --------------------------------------------------------------------------------


def probe_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> dict[str, Any]:
    text = first_line(proc, timeout)
    assert text, f"no output: {proc.communicate(timeout=5)[1]}"
    result: dict[str, Any] = json.loads(text)
    return result


@contextlib.contextmanager
def seeded_lab() -> Iterator[tuple[NatLab, list[Host]]]:
    """The lab with 3 public seed nodes (DHT port 4000), the 2nd and 3rd joined via the 1st."""
    with lab_for_test() as lab:
        seeds = [lab.public(f"seed{i}") for i in range(1, 4)]
        for i, seed in enumerate(seeds):
            argv = [sys.executable, DHT_PROBE, "serve", "--host", seed.addr]
            if i:
                argv += ["--bootstrap", f"{seeds[0].addr}:4000"]
            argv += ["--service", f"relay=http://{seed.addr}:4100"]
            assert probe_line(seed.popen(argv))["ready"] is True
        yield lab, seeds


def check(host: Host, seeds: list[Host], *extra: str) -> dict[str, Any]:
    argv = [sys.executable, DHT_PROBE, "check", "--bootstrap", f"{seeds[0].addr}:4000", *extra]
    proc = host.popen(argv)
    result = probe_line(proc)
    assert "error" not in result, result
    return result


def test_lab_reachability_behind_each_router() -> None:
    with seeded_lab() as (lab, seeds):
        public = lab.public("pub")
        pub = check(public, seeds, "--tcp-listen", "4100")
        assert pub["observed"][0] == public.addr
        assert pub["udp_reachable"] is True and pub["tcp_reachable"] is True
        assert pub["confirmations"] == 3 and pub["asked"] == 3

        home = lab.home("port-restricted")
        assert home.router is not None
        pr = check(home, seeds, "--tcp-listen", "4100", "--client")
        assert pr["observed"][0] == home.router.public_addr
        assert pr["udp_reachable"] is False and pr["confirmations"] == 0
        assert pr["tcp_reachable"] is False and pr["answered"] == 3

        cone = lab.home("cone")
        assert cone.router is not None
        fc = check(cone, seeds)
        assert fc["observed"][0] == cone.router.public_addr
        assert fc["udp_reachable"] is True and fc["confirmations"] >= 2

        find = ["find", "--bootstrap", f"{seeds[0].addr}:4000", "--name", "relay"]
        found = probe_line(home.popen([sys.executable, DHT_PROBE, *find]))
        assert sorted(found["services"]) == sorted(f"http://{s.addr}:4100" for s in seeds)
