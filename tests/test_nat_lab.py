"""The NAT lab (tests/netns/natlab.py) behaves as each router kind claims.

Probes (tests/netns/natprobe.py) run inside the lab's namespaces: a home host sends UDP from one
port to two public echo servers, which answer with the address and port they see (the mapping);
then a third public host that was never contacted sends to that mapping. Every address exists
only inside the lab's namespaces. Where the lab cannot be built (no root, no iproute2, nftables
or miniupnpd) these tests fail, naming what is missing; they never skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.netns import natlab
from tests.netns.natlab import PROBE, Host, NatLab, NatLabUnavailable, lab_for_test, nat_lab
from tests.netns.procs import json_line

ECHO_UDP = 4000
ECHO_TCP = 4001
LISTEN_S = 1.5  # the home host waits this long for an unsolicited datagram
SEND_WAIT_S = 1.0  # the unsolicited sender waits this long for an answer


lab = lab_for_test  # fails (never skips) where the lab cannot be built


line = json_line  # a probe's JSON report line (tests/netns/procs.py)


def probe(host: Host, *args: str, timeout: float = 10.0) -> dict[str, Any]:
    out = host.run([sys.executable, PROBE, *args], timeout=timeout).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def echo_servers(lab: NatLab) -> tuple[Host, Host, Host]:
    """Two public echo servers and a third public host that no home host ever contacts."""
    a, b, stranger = lab.public("echo-a"), lab.public("echo-b"), lab.public("stranger")
    for host in (a, b):
        proc = host.popen([sys.executable, PROBE, "serve", "--udp", str(ECHO_UDP),
                           "--tcp", str(ECHO_TCP)])  # fmt: skip
        assert line(proc) == {"ready": True}
    return a, b, stranger


# kind: (one mapping for both destinations, an unsolicited inbound datagram reaches the host)
EXPECTED: dict[natlab.RouterKind, tuple[bool, bool]] = {
    "cone": (True, True),
    "port-restricted": (True, False),
    "symmetric": (False, False),
    "double": (True, False),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_mapping_and_filtering(kind: natlab.RouterKind) -> None:
    same_mapping, inbound = EXPECTED[kind]
    with lab() as nl:
        a, b, stranger = echo_servers(nl)
        home = nl.home(kind)
        assert home.router is not None
        proc = home.popen([sys.executable, PROBE, "udp", "--port", "40000",
                           "--to", f"{a.addr}:{ECHO_UDP}", "--to", f"{b.addr}:{ECHO_UDP}",
                           "--listen", str(LISTEN_S)])  # fmt: skip
        seen = line(proc)["mapped"]
        assert all(m["ip"] is not None for m in seen), f"{kind}: no echo answer: {seen}"
        assert {m["ip"] for m in seen} == {home.router.public_addr}, seen
        ports = [m["port"] for m in seen]
        if same_mapping:
            assert ports[0] == ports[1], f"{kind}: one mapping expected, saw {seen}"
        else:
            assert ports[0] != ports[1], f"{kind}: one mapping per destination expected: {seen}"

        reply = probe(stranger, "send", "--to", f"{seen[0]['ip']}:{ports[0]}",
                      "--wait", str(SEND_WAIT_S), "knock")["reply"]  # fmt: skip
        out, err = proc.communicate(timeout=LISTEN_S + 5)
        got = json.loads(out.strip().splitlines()[-1])["got"]
        if inbound:
            assert reply == "pong", f"{kind}: the stranger got no answer ({err})"
            assert got and got[0]["from"][0] == stranger.addr and got[0]["text"] == "knock"
        else:
            assert reply is None and got == [], f"{kind}: unsolicited inbound passed: {got}"

        if kind == "double":  # the internet sees the CGNAT, not the home router's WAN address
            assert home.router.upstream is not None
            assert home.router.wan_addr.startswith("100.64.")
            assert home.router.public_addr == home.router.upstream.wan_addr
            assert home.router.public_addr.startswith("203.0.113.")


def test_tcp_through_each_router_kind() -> None:
    """TCP out works through every kind; the server sees the router's public address."""
    with lab() as nl:
        a, _, _ = echo_servers(nl)
        for kind in EXPECTED:
            home = nl.home(kind)
            assert home.router is not None
            got = probe(home, "tcp-connect", "--to", f"{a.addr}:{ECHO_TCP}")
            assert got["connected"], f"{kind}: {got}"
            assert json.loads(got["text"])["ip"] == home.router.public_addr


def test_upnp_and_natpmp_mappings_open_the_router() -> None:
    upnpc = shutil.which("upnpc")
    if upnpc is None:
        pytest.fail("`upnpc` is missing: apt-get install miniupnpc", pytrace=False)
    with lab() as nl:
        a, _, stranger = echo_servers(nl)
        home = nl.home("upnp")
        router = home.router
        assert router is not None
        public = router.public_addr

        # TCP before any mapping: the port-restricted router drops the stranger's SYN
        before = probe(stranger, "tcp-connect", "--to", f"{public}:41001", "--timeout", "1")
        assert not before["connected"], before

        # UPnP-IGD (miniupnpc's upnpc; -i: the lab's WAN address is a documentation address)
        add = home.run([upnpc, "-i", "-e", "natlab", "-a", home.addr, "41001", "41001", "TCP"],
                       check=False, timeout=15)  # fmt: skip
        assert f"external {public}:41001 TCP is redirected to internal {home.addr}:41001" in (
            add.stdout
        ), f"{add.stdout}\n{add.stderr}\n{nl.miniupnpd_log(router)}"
        listener = home.popen([sys.executable, PROBE, "tcp-listen", "--port", "41001",
                               "--seconds", "5"])  # fmt: skip
        assert line(listener) == {"listening": 41001}
        after = probe(stranger, "tcp-connect", "--to", f"{public}:41001", "--timeout", "3")
        assert after["connected"] and after["text"] == "hello", after
        assert line(listener)["from"][0] == stranger.addr  # DNAT keeps the source address

        # NAT-PMP (RFC 6886): the public address, then a UDP mapping the stranger can reach
        pmp = probe(home, "natpmp", "--gw", router.lan_addr, "--proto", "udp", "--port", "41000")
        assert pmp["public"] == public and pmp["result"] == 0 and pmp["mapped"] == 41000, pmp
        proc = home.popen([sys.executable, PROBE, "udp", "--port", "41000",
                           "--to", f"{a.addr}:{ECHO_UDP}", "--listen", "3"])  # fmt: skip
        assert line(proc)["mapped"][0]["ip"] == public
        reply = probe(stranger, "send", "--to", f"{public}:41000", "--wait", "2", "knock")
        assert reply["reply"] == "pong", reply
        got = json.loads(proc.communicate(timeout=10)[0].strip().splitlines()[-1])["got"]
        assert got and got[0]["from"][0] == stranger.addr

        rules = router.nft("list", "chain", "inet", "filter", "prerouting_miniupnpd")
        assert f"dnat ip to {home.addr}:41001" in rules and f"{home.addr}:41000" in rules


def own_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         timeout=10).stdout  # fmt: skip
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix)]


def test_lab_deletes_its_namespaces_even_on_interrupt() -> None:
    made: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with lab() as nl:
            nl.home("cone")
            nl.public("p")
            made = own_namespaces(f"nl{nl.suffix}-")
            assert len(made) == 4  # internet, router, home host, public host
            raise KeyboardInterrupt
    assert made and not own_namespaces(f"nl{made[0][2:8]}-")


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the failure message says where a tool is missing (the real tools are not touched)."""
    before = set(own_namespaces("nl"))
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    with pytest.raises(NatLabUnavailable, match="iproute2"):
        NatLab()
    monkeypatch.setattr(
        shutil, "which", lambda name, path=None: None if name == "nft" else "/usr/sbin/ip"
    )
    with pytest.raises(NatLabUnavailable, match="nftables"):
        with nat_lab():
            pass
    assert set(own_namespaces("nl")) == before  # the internet namespace made was deleted
