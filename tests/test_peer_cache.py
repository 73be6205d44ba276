"""The contact-record cache of `streembit-peer` (gateway/peer/cache.py), as subprocesses on
127.0.0.1: a seed node and a demo gateway; the cache lives in the test's own $XDG_CACHE_HOME.

Used while the DHT is gone; given up for a gateway that moved (found again through the DHT);
refused, with one warning, when edited; neither read nor written with --no-cache. In process:
expired, foreign and others-writable files, and no rollback to a lower seq. And the modules the
peer command line loads (lazy imports)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.errors import P2PError
from gateway.identity import generate_keypair, load_keypair
from gateway.messages.codec import b64url_decode, b64url_encode
from gateway.p2p import make_contact_record, verify_record
from gateway.peer.cache import ContactCache, default_cache_dir
from gateway.peer.find import Contact, contact_of
from tests.helpers import GW, PEER, provision_cli
from tests.test_peer_cli import run, start

STOP_TIMEOUT_S = 15  # a demo gateway or seed stops in well under a second on SIGTERM


@dataclass
class Net:
    gw_id: str
    boot: str
    keys: Path
    state: Path
    cache: Path
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    ws: str = ""

    def start_gateway(self) -> None:
        gw, info = start(GW, "demo", "--state", str(self.state), "--http-port", "0",
                         "--ws-port", "0", "--dht-port", "0", "--bootstrap", self.boot,
                         "--no-mdns", "--json")  # fmt: skip
        self.procs["gw"], self.ws = gw, info["ws"]

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0

    def read(self, *extra: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run(PEER, "--bootstrap", self.boot, "--key", str(self.keys / "alice"), "read",
                   *extra, "--", self.gw_id, "living-room", "temperature", ok=ok)  # fmt: skip

    def cached(self) -> dict[str, object]:
        doc = json.loads((self.cache / f"{self.gw_id}.json").read_text())
        rec = verify_record(doc["record"], key=self.gw_id)
        return {"addrs": list(rec.addrs), "seq": rec.seq, "text": rec.text}


@pytest.fixture
def net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    gw_id, st, k, _acl = provision_cli(tmp_path, "readproperty")
    seed, seed_info = start(PEER, "node", "--dht-port", "0", "--json")
    n = Net(gw_id, seed_info["dht"], k, st, tmp_path / "xdg" / "streembit" / "contacts")
    n.procs["seed"] = seed
    try:
        n.start_gateway()
        yield n
    finally:
        for name in list(n.procs):
            n.stop(name)


def warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if "contact cache" in line]


def test_the_cache_is_used_when_the_dht_is_gone_and_no_cache_skips_it(net: Net) -> None:
    assert float(net.read("--no-cache").stdout) > 0
    assert not net.cache.exists()  # --no-cache writes nothing either
    run(PEER, "--bootstrap", net.boot, "find", "--", net.gw_id)  # find refreshes the cache
    path = net.cache / f"{net.gw_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(net.cache.stat().st_mode) == 0o700
    assert net.cached()["addrs"] == [net.ws]

    net.stop("seed")  # the only DHT node the peer knows: no lookup can succeed now
    again = net.read()
    assert float(again.stdout) > 0 and not warnings(again)
    dht_only = net.read("--no-cache", ok=False)
    assert dht_only.returncode == 1 and "no DHT node answered" in dht_only.stderr
    found = run(PEER, "--bootstrap", net.boot, "find", "--", net.gw_id, ok=False)
    assert found.returncode == 1  # find always asks the DHT


def test_a_gateway_that_moved_is_found_again_through_the_dht(net: Net) -> None:
    net.read()
    before = net.cached()
    net.stop("gw")
    net.start_gateway()  # new ports, a new record with a higher seq on the seed
    assert net.ws != before["addrs"][0]  # type: ignore[index]
    moved = net.read()
    assert float(moved.stdout) > 0 and not warnings(moved)
    after = net.cached()
    assert after["addrs"] == [net.ws] and after["seq"] > before["seq"]  # type: ignore[operator]


def _tampered_address(text: str) -> str:
    header, payload, sig = text.split(".")
    claims = json.loads(b64url_decode(payload, "payload"))
    claims["addrs"] = ["ws://127.0.0.1:9/p2p"]
    return ".".join([header, b64url_encode(json.dumps(claims).encode()), sig])


def _tampered_signature(text: str) -> str:
    head, _, sig = text.rpartition(".")
    return f"{head}.{sig[:10]}{'A' if sig[10] != 'A' else 'B'}{sig[11:]}"


def test_a_tampered_cache_file_is_refused_with_one_warning(net: Net) -> None:
    net.read()
    good = str(net.cached()["text"])
    path = net.cache / f"{net.gw_id}.json"
    mallory = load_keypair(net.keys / "mallory")
    foreign = make_contact_record(mallory, seq=2**52, addrs=["ws://127.0.0.1:9/p2p"], td_digest="x")
    for bad, code in (
        (_tampered_address(good), "record_bad_signature"),
        (_tampered_signature(good), "record_bad_signature"),
        (foreign, "record_wrong_dht_key"),  # validly signed, by another key
    ):
        path.write_text(json.dumps({"v": 1, "record": bad}))
        proc = net.read()
        assert float(proc.stdout) > 0  # through the DHT
        (line,) = warnings(proc)
        assert "refused" in line and code in line and "using the DHT" in line
        assert net.cached()["text"] == good  # replaced by the record the DHT holds
    path.write_text("{not json")
    (line,) = warnings(net.read())
    assert "syntax" in line


# ----------------------------------------------------------------------------- in process
def test_expired_foreign_and_writable_files_and_no_rollback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kp = generate_keypair()
    cache = ContactCache(tmp_path / "c")

    def contact(seq: int, port: int, now: float | None = None, ttl: int = 3600) -> Contact:
        text = make_contact_record(kp, seq=seq, addrs=[f"ws://127.0.0.1:{port}/p2p"],
                                   td_digest="td", ttl=ttl, now=now)  # fmt: skip
        return contact_of(verify_record(text, key=kp.id, now=now), kp.id)

    assert cache.load(kp.id) is None  # nothing cached: no warning
    cache.save(contact(5, 1000))
    cache.save(contact(4, 1001))  # a lower seq never replaces it
    loaded = cache.load(kp.id)
    assert loaded is not None and loaded.addrs == ("ws://127.0.0.1:1000/p2p",)
    path = cache.path(kp.id)
    os.chmod(path, 0o620)
    assert cache.load(kp.id) is None and "writable by others" in caplog.text
    os.chmod(path, 0o600)
    caplog.clear()
    old = contact(9, 1002, now=1_700_000_000, ttl=60)
    path.unlink()
    cache.save(old)
    assert cache.load(kp.id) is None and "refused" not in caplog.text  # expired: quietly
    with pytest.raises(P2PError):
        cache.path("../../etc/passwd")


def test_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "streembit" / "contacts"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # XDG: only absolute paths count
    assert default_cache_dir() == Path.home() / ".cache" / "streembit" / "contacts"


def test_the_peer_command_line_imports_only_what_its_commands_use() -> None:
    """Lazy imports (issue 11): building the parser of `streembit-peer` (all that `keygen`,
    `id`, `token` and `acl` add to it is local) loads no hardware, image, mDNS, schema or
    HTTP library, no DHT, nor the gateway's own server side."""
    code = (
        "import sys, gateway.cli.peer_cli as pc; pc.parser(); "
        "print('\\n'.join(sorted(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=STOP_TIMEOUT_S, check=True)  # fmt: skip
    loaded = set(proc.stdout.split())
    unwanted = ("zeroconf", "gpiozero", "bleak", "jsonschema", "PIL", "zxingcpp", "segno",
                "kademlia", "aiohttp", "gateway.peer", "gateway.p2p", "sqlite3", "tomllib",
                "device_drivers.registry",
                "gateway.wot", "gateway.things", "gateway.requests", "gateway.audit",
                "gateway.bindings", "gateway.app", "gateway.config.load",
                "gateway.provisioning.events", "gateway.provisioning.payload")  # fmt: skip
    packages = tuple(f"{u}." for u in unwanted)
    assert not sorted(m for m in loaded if m in unwanted or m.startswith(packages))
