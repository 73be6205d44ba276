"""Issue 10 leftovers, against the installed command lines as subprocesses: `streembit-peer
--host` before the command, `[gateway] advertise`, a listen host that is not this machine's,
ids and JSON arguments checked where they are read, `find` times for people, `run --create-key`
creating nothing from a bad config, hostile JWK key files, and `doctor` off systemd."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError, IdentityError
from gateway.identity import generate_keypair, load_public, write_keypair
from gateway.ops import doctor
from tests.helpers import GW, PEER, one_error_line
from tests.helpers import run_cli as run

ELSEWHERE = "198.51.100.77"  # TEST-NET-2: an address of no machine here
A_ID = "A" * 43
DEEP = "[" * 3000
LONG = "9" * 5000


def config(tmp_path: Path, gateway: str = "", http: str = "", p2p: str = "") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "gw"}"\n{gateway}\n'
        f"[gateway.http]\nport = 0\n{http}\n"
        f"[gateway.p2p]\nenabled = true\nws_port = 0\ndht_port = 0\n{p2p}\n"
        '[[things]]\nname = "porch"\ntype = "switch"\ndriver = "sim"\n'
    )
    return path


@contextmanager
def gateway(*argv: str | Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The gateway running with ARGV; yields it and its first stdout line."""
    proc = subprocess.Popen(
        [GW, *(str(a) for a in argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield proc, line
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- ids, JSON
@pytest.mark.parametrize(
    "argv",
    [
        ["find"],
        ["things"],
        ["td", "--", "not-an-id", "porch"],
        ["read", "--", "not-an-id", "porch", "on"],
        ["write", "--", "not-an-id", "porch", "on", "true"],
        ["invoke", "--", "not-an-id", "porch", "toggle"],
        ["observe", "--", "not-an-id", "porch", "on"],
        ["subscribe", "--", "not-an-id", "porch", "changed"],
        ["acl", "push", "--acl", "a.jws"],
        ["transfer", "--to", "new.pub"],
    ],
)
def test_a_positional_gateway_id_is_checked_where_it_is_read(argv: list[str]) -> None:
    if "--" not in argv:
        argv = [*argv, "--", "not-an-id"]
    proc = run(PEER, "--bootstrap", "127.0.0.1:9", "--key", "k", *argv)
    assert proc.returncode == 2, proc.stderr
    assert "argument GW_ID: not an id (43 characters" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("command", "text", "problem"),
    [
        (["invoke", "--", A_ID, "porch", "toggle"], DEEP, "INPUT: nesting deeper than"),
        (["invoke", "--", A_ID, "porch", "toggle"], LONG, "INPUT: a number longer than"),
        (["write", "--", A_ID, "porch", "on"], "yes", "VALUE: not valid JSON"),
        (["write", "--", A_ID, "porch", "on"], "NaN", "VALUE: NaN is not a JSON number"),
    ],
)
def test_a_json_argument_is_refused_before_any_network(
    command: list[str], text: str, problem: str
) -> None:
    # the bootstrap node does not exist and the key file neither: neither is reached
    proc = run(PEER, "--bootstrap", "127.0.0.1:9", "--key", "missing.key", *command, text)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert problem in line and line.endswith("[bad_input]")


def test_a_hostile_jwk_key_file_is_a_bad_key(tmp_path: Path) -> None:
    owner = tmp_path / "owner.key"
    write_keypair(owner, generate_keypair())
    jwk = json.dumps(generate_keypair().public.jwk)
    files = {
        "deep": '{"kty":"EC","a":' + DEEP + "}",
        "long": '{"kty":"EC","x":' + LONG + "}",
        "nested": '{"kty":"EC","a":[[[[1]]]]}',
        "twice": jwk[:-1] + ',"kty":"EC"}',
    }
    for name, text in files.items():
        path = tmp_path / f"{name}.jwk"
        path.write_text(text)
        with pytest.raises(IdentityError) as info:
            load_public(path)
        assert info.value.code == "bad_key" and str(path) in str(info.value)
        acl: list[str | Path] = ["--key", owner, "--acl", tmp_path / "a.jws", "--gateway", A_ID]
        proc = run(PEER, "acl", "grant", *acl, "--subject", path, "--things", "*", "--ops", "all")
        assert proc.returncode == 2, proc.stderr
        assert "not a JWK JSON file" in one_error_line(proc)
        assert not (tmp_path / "a.jws").exists()
    (tmp_path / "good.jwk").write_text(jwk)
    assert load_public(tmp_path / "good.jwk").jwk == json.loads(jwk)


# --------------------------------------------------------------------------- listening
@pytest.mark.parametrize(
    ("table", "key"),
    [("http", "host"), ("p2p", "ws_host"), ("p2p", "dht_host")],
)
def test_a_listen_host_of_another_machine_names_the_key(
    tmp_path: Path, table: str, key: str
) -> None:
    line = f'{key} = "{ELSEWHERE}"'
    path = config(tmp_path, **{table: line})
    proc = run(GW, "run", "--config", path, "--create-key")
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        f"cannot listen on {ELSEWHERE} ([gateway.{table}] {key} in {path}): "
        "not an address of this machine"
    ) in one_error_line(proc)
    assert not (tmp_path / "gw").exists()  # nothing started, no key, no folder


def test_a_listen_host_that_does_not_resolve_names_the_key(tmp_path: Path) -> None:
    path = config(tmp_path, p2p='ws_host = "no such host"')
    proc = run(GW, "run", "--config", path, "--create-key")
    assert proc.returncode == 2
    assert "([gateway.p2p] ws_host in " in one_error_line(proc)
    assert "not a known host name" in proc.stderr


def test_run_create_key_with_a_bad_thing_creates_nothing(tmp_path: Path) -> None:
    path = config(tmp_path)
    path.write_text(path.read_text() + '[things.driver_settings]\nsafe_output = "yes"\n')
    proc = run(GW, "run", "--config", path, "--create-key")
    check = run(GW, "check-config", path)
    assert proc.returncode == check.returncode == 2
    assert one_error_line(proc) == one_error_line(check)
    assert not (tmp_path / "gw").exists()


# --------------------------------------------------------------------------- advertise
ADVERTISE = 'advertise = ["127.0.0.2", "https://gw.example:8443", "ws://gw.example:9000/p2p"]'


def test_config_advertise_in_the_forms_of_demo(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, gateway=ADVERTISE))
    assert cfg.advertise == ("127.0.0.2",)
    assert cfg.http.base_url == "https://gw.example:8443"
    assert cfg.p2p.public_ws == ("ws://gw.example:9000/p2p",)


@pytest.mark.parametrize(
    ("value", "http", "expected"),
    [
        ('["gw.example:8443"]', "", "a host without a port"),
        ('["ftp://gw.example"]', "", "http://, https://, ws:// or wss://"),
        ('["http://gw.example:99999"]', "", "http://, https://, ws:// or wss://"),
        ('["https://a.example", "http://b.example"]', "", "one http(s):// base URL only"),
        ('["0.0.0.0"]', "", "an address other machines can reach"),
        ('"192.168.1.20"', "", "a list of host names, addresses or URLs"),
        ("[]", "", "a list of host names, addresses or URLs"),
        ("[1]", "", "a list of host names, addresses or URLs"),
        ('["https://a.example"]', 'base_url = "https://b.example"', "base_url is set"),
        ('["192.168.1.20"]', "", "gateway.http.host is 127.0.0.1 (this machine only)"),
    ],
)
def test_config_advertise_errors_name_file_and_key(
    tmp_path: Path, value: str, http: str, expected: str
) -> None:
    path = config(tmp_path, gateway=f"advertise = {value}", http=http)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path) and info.value.key == "gateway.advertise"
    assert expected in info.value.expected
    proc = run(GW, "check-config", path)
    assert proc.returncode == 2 and "gateway.advertise" in one_error_line(proc)


def test_peer_host_before_or_after_the_command_and_advertised_addresses(tmp_path: Path) -> None:
    """One gateway from a config that advertises; the peer's --host in both positions; `find`
    for people (ISO 8601 UTC) and for scripts (Unix seconds)."""
    path = config(tmp_path, gateway=ADVERTISE)
    with gateway("run", "--config", path, "--create-key", "--json") as (_proc, line):
        ready = json.loads(line)
        port = ready["dht"].rsplit(":", 1)[1]
        assert ready["dht"] == f"127.0.0.2:{port}"  # the advertised host, the DHT's port
        assert ready["http"] == "https://gw.example:8443"
        assert ready["ws"] == "ws://gw.example:9000/p2p"
        boot = ["--bootstrap", f"127.0.0.1:{port}"]  # it listens on 127.0.0.1 only
        gw = ready["id"]
        found = run(PEER, *boot, "--host", "127.0.0.1", "find", "--json", "--", gw)
        assert found.returncode == 0, found.stderr
        record = json.loads(found.stdout)
        assert isinstance(record["iat"], int) and isinstance(record["exp"], int)
        assert record["addrs"][0] == "ws://gw.example:9000/p2p"
        assert any(a.startswith("ws://127.0.0.2:") for a in record["addrs"])
        # before the command: used (a host of no machine here cannot bind) ...
        refused = run(PEER, "--host", ELSEWHERE, *boot, "find", "--", gw)
        assert refused.returncode == 1 and ELSEWHERE in one_error_line(refused)
        # ... and after the command wins when both are given
        human = run(PEER, "--host", ELSEWHERE, *boot, "find", "--host", "127.0.0.1", "--", gw)
        assert human.returncode == 0, human.stderr
        lines = dict(x.split(": ", 1) for x in human.stdout.strip().splitlines())
        assert lines["iat"].endswith("Z") and lines["iat"].startswith("20")
        iat = dt.datetime.fromisoformat(lines["iat"].replace("Z", "+00:00"))
        assert abs(iat.timestamp() - record["iat"]) <= 1
        exp = dt.datetime.fromisoformat(lines["exp"].replace("Z", "+00:00"))
        assert exp.tzinfo == dt.UTC and exp > iat
    # `node` too: the top-level --host is where the seed listens
    with subprocess.Popen(
        [PEER, "--host", "127.0.0.2", "node", "--dht-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as node:
        try:
            assert node.stdout is not None
            info = json.loads(node.stdout.readline())
            assert info["dht"].startswith("127.0.0.2:")
        finally:
            node.terminate()
            node.wait(timeout=30)


def test_a_wildcard_dht_without_advertise_says_every_interface(tmp_path: Path) -> None:
    path = config(tmp_path, p2p='dht_host = "0.0.0.0"')
    with gateway("run", "--config", path, "--create-key") as (proc, first):
        assert first.startswith("gateway ")
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
    p2p = lines[1]
    assert "P2P: ws://127.0.0.1:" in p2p
    assert "on all interfaces (0.0.0.0:" in p2p and "others bootstrap through" in p2p


# --------------------------------------------------------------------------- doctor
def test_doctor_without_a_service_suggests_the_demo_or_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    units = tmp_path / "units"
    units.mkdir()
    monkeypatch.setattr(doctor, "DEFAULT_CONFIG", tmp_path / "etc" / "gateway.toml")
    monkeypatch.setattr(doctor.service, "UNIT_DIRS", (units,))
    assert run(GW, "init", "--state", tmp_path / "gw").returncode == 0
    by_name = {c.name: c for c in doctor.run_checks(None, tmp_path / "gw")}
    fix = by_name["gateway"].fix
    assert by_name["gateway"].status == "warn" and "systemctl" not in fix
    assert f"deploy/dev.sh demo --state {tmp_path / 'gw'}" in fix
    assert "streembit-gateway run --config" in fix
    (units / "streembit-gateway.service").write_text("[Service]\n")
    by_name = {c.name: c for c in doctor.run_checks(None, tmp_path / "gw")}
    assert by_name["gateway"].fix.startswith("sudo systemctl start streembit-gateway")
