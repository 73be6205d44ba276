"""LAN discovery (mDNS `_wot._tcp`): what is announced, and where.

The announcing and browsing checks (tests/netns/mdns_checks.py) run in a network namespace made
for them here: `unshare -n`, loopback brought up, no other interface. Nothing is ever sent on a
real interface. Without unshare or ip this test fails and says what to install."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gateway.cli.discover import group, human
from gateway.config import MdnsConfig
from gateway.wot.mdns import Found, host_label, interfaces_for, plan
from tests.netns.unshared import run_unshared

INNER = Path(__file__).parent / "netns" / "mdns_checks.py"
NETNS_TIMEOUT_S = 90.0


def test_mdns_inside_a_private_network_namespace() -> None:
    proc = run_unshared(
        'exec "$0" -m pytest -q -p no:cacheprovider "$1"',
        [sys.executable, str(INNER)],
        who="the mDNS tests",
        env=dict(os.environ, STREEMBIT_NETNS="1"),
        timeout=NETNS_TIMEOUT_S,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_where_the_gateway_announces() -> None:
    default = MdnsConfig()
    assert interfaces_for(default, "127.0.0.1") == []  # the loopback demo stays quiet
    assert interfaces_for(default, "192.168.1.20") == ["192.168.1.20"]
    assert interfaces_for(MdnsConfig(enabled=False), "192.168.1.20") == []
    assert interfaces_for(MdnsConfig(enabled=True), "127.0.0.1") == ["127.0.0.1"]
    assert interfaces_for(MdnsConfig(interfaces=("10.0.0.2",)), "0.0.0.0") == ["10.0.0.2"]
    assert interfaces_for(default, "gw.example") == []  # a name: say which interfaces


def test_what_the_gateway_announces() -> None:
    ann = plan(
        gateway_id="Ab_c-123456789",
        name="Hall",
        base_url="https://gw.example:8443/home",
        things=["front-door"],
    )
    directory, door = ann
    assert directory.txt == {
        "td": "/home/.well-known/wot",
        "type": "Directory",
        "scheme": "https",
        "gw": "Ab_c-123456789",
    }
    assert door.txt["td"] == "/home/things/front-door" and door.txt["type"] == "Thing"
    assert door.port == 8443 and door.instance == "front-door @ Hall [Ab_c-123]"
    long = plan(gateway_id="x" * 43, name="n" * 80, base_url="http://h:1", things=[])[0]
    assert len(long.instance.encode()) <= 63 and long.instance.endswith("[xxxxxxxx]")
    assert host_label("Ab_c-1234567") == "streembit-ab-c-1234567.local."


def test_discover_listing_groups_by_gateway() -> None:
    def found(name: str, kind: str, td: str, gw: str | None) -> Found:
        return Found(name, kind, ("192.168.1.20",), 8080, "http", td, gw)

    data = group(
        [
            found("hall directory [GW1]", "Directory", "/.well-known/wot", "GW1"),
            found("door @ hall [GW1]", "Thing", "/things/door", "GW1"),
            found("printer", "Thing", "/td", None),
        ]
    )
    (gw,) = data["gateways"]
    assert gw["id"] == "GW1" and [t["td"] for t in gw["things"]] == ["/things/door"]
    assert data["other"][0]["td_url"] == "http://192.168.1.20:8080/td"
    text = human(data, 3)
    assert "gateway GW1  hall directory [GW1]" in text
    assert "  directory  http://192.168.1.20:8080/.well-known/wot" in text
    assert "  thing      http://192.168.1.20:8080/things/door  (door @ hall [GW1])" in text
    assert "other thing     http://192.168.1.20:8080/td  (printer)" in text
    assert human({"gateways": [], "other": []}, 3) == "nothing answered within 3 s"
