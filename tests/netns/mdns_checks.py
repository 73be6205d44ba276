"""mDNS checks, run ONLY inside the network namespace that tests/test_mdns.py creates
(`unshare -n`, loopback up, nothing else): they announce and browse `_wot._tcp` on 127.0.0.1.
Outside such a namespace every test here fails at once, before anything is sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.wot.mdns import SERVICE_TYPE

BIN = Path(sys.executable).parent
GW = str(BIN / "streembit-gateway")
PEER = str(BIN / "streembit-peer")
LO = "127.0.0.1"
READY_TIMEOUT_S = 20.0
ANNOUNCE_TIMEOUT_S = 10.0  # probing takes about 1.5-2.5 s
GOODBYE_TIMEOUT_S = 5.0
DISCOVER_S = 4.0  # covers the gateway's probing (about 1.5-2.5 s) and its announcements


@pytest.fixture(autouse=True, scope="module")
def only_in_a_private_network_namespace() -> None:
    interfaces = [name for _, name in socket.if_nameindex()]
    if os.environ.get("STREEMBIT_NETNS") != "1" or interfaces != ["lo"]:
        pytest.fail(
            f"mDNS checks refuse to run outside their network namespace (interfaces: "
            f"{interfaces}); run tests/test_mdns.py, which creates one",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    state = tmp_path_factory.mktemp("mdns") / "state"
    proc = subprocess.Popen(
        [
            GW,
            "demo",
            "--state",
            str(state),
            "--http-port",
            "0",
            "--no-p2p",
            "--mdns-interface",
            LO,
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    info = json.loads(line)
    info["proc"] = proc
    yield info
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _fetch(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        data = json.load(resp)
    assert isinstance(data, dict)
    return data


async def test_announced_with_the_wot_discovery_txt_records(gateway: dict[str, object]) -> None:
    from zeroconf import IPVersion, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    assert gateway["mdns"] == [LO]
    port = int(str(gateway["http"]).rsplit(":", 1)[1])
    events: list[tuple[str, str, ServiceStateChange]] = []

    def seen(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        events.append((service_type, name, state_change))

    azc = AsyncZeroconf(interfaces=[LO], ip_version=IPVersion.V4Only)
    browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[seen])
    # `streembit-peer discover` listens while the gateway probes and announces
    discover = subprocess.Popen(
        [PEER, "discover", "--interface", LO, "--timeout", str(DISCOVER_S), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANNOUNCE_TIMEOUT_S
        while loop.time() < deadline:
            added = {n for t, n, c in events if c is ServiceStateChange.Added}
            if len(added) >= 3:  # the directory and two Things
                break
            await asyncio.sleep(0.1)
        assert len(added) == 3, events

        stdout, stderr = discover.communicate(timeout=DISCOVER_S + 20)
        assert discover.returncode == 0, stderr
        listing = json.loads(stdout)
        assert listing["other"] == []
        (gw,) = listing["gateways"]
        assert gw["id"] == gateway["id"]
        found = [gw["directory"], *gw["things"]]
        assert {f"{f['name']}.{SERVICE_TYPE}" for f in found} == added
        for f in found:
            assert f["addresses"] == [LO] and f["port"] == port and f["scheme"] == "http"
            assert set(f["txt"]) == {"td", "type", "scheme", "gw"}
            assert f["txt"]["gw"] == gateway["id"]
        directory = gw["directory"]
        assert directory["td_url"] == f"http://{LO}:{port}/.well-known/wot"
        assert directory["type"] == "Directory" and directory["txt"]["type"] == "Directory"
        assert directory["name"].endswith(f"[{str(gateway['id'])[:8]}]")
        things = {t["td"]: t for t in gw["things"]}
        assert set(things) == {"/things/front-door", "/things/living-room"}
        assert {t["type"] for t in gw["things"]} == {"Thing"}
        td = _fetch(things["/things/front-door"]["td_url"])
        assert td["title"] == "Front door" and str(td["id"]).startswith("urn:uuid:")
        assert _fetch(directory["td_url"])["@type"] == "ThingDirectory"

        # a clean stop withdraws every service (goodbye packets), seen by the running browser
        proc = gateway["proc"]
        assert isinstance(proc, subprocess.Popen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        deadline = loop.time() + GOODBYE_TIMEOUT_S
        while loop.time() < deadline:
            removed = {
                n for t, n, c in events if c is ServiceStateChange.Removed and t == SERVICE_TYPE
            }
            if len(removed) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(removed) == 3, events
    finally:
        if discover.poll() is None:
            discover.kill()
            discover.wait()
        await browser.async_cancel()
        await azc.async_close()
