"""`streembit-peer` network commands as subprocesses: a seed node, a gateway, find and control."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import GW, PEER, run_cli
from tests.helpers import provision_cli as provision


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, ok=ok)


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(
            f"{args[1]} did not start: {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, json.loads(line)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, str]]:
    gw_id, st, k, acl = provision(tmp_path, "readproperty,invokeaction,subscribeevent")
    seed, seed_info = start(PEER, "node", "--dht-port", "0", "--json")
    gw, gw_info = start(GW, "demo", "--state", str(st), "--http-port", "0", "--ws-port", "0",
                        "--dht-port", "0", "--bootstrap", seed_info["dht"], "--json")  # fmt: skip
    try:
        assert gw_info["ws"].startswith("ws://127.0.0.1:") and gw_info["dht"].startswith(
            "127.0.0.1:"
        )
        yield {"gw": gw_id, "boot": seed_info["dht"], "k": str(k), "acl": acl}
    finally:
        for p in (gw, seed):
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=15) == 0


def test_find_things_read_invoke_and_refusal(net: dict[str, str]) -> None:
    b, k, gw = ["--bootstrap", net["boot"]], net["k"], net["gw"]
    rec = json.loads(run(PEER, *b, "find", "--json", "--", gw).stdout)
    assert rec["id"] == gw and rec["addrs"][0].startswith("ws://127.0.0.1:")
    alice = [*b, "--key", f"{k}/alice"]
    things = json.loads(run(PEER, *alice, "things", "--json", "--", gw).stdout)
    assert {t["name"] for t in things} == {"front-door", "living-room"}
    td = json.loads(run(PEER, *alice, "td", "--json", "--", gw, "front-door").stdout)
    assert set(td["actions"]) == {"lock", "unlock"}
    out = run(PEER, *alice, "invoke", "--json", "--", gw, "front-door", "unlock").stdout
    assert json.loads(out) == "unlocked"
    assert (
        json.loads(run(PEER, *alice, "read", "--", gw, "front-door", "state").stdout) == "unlocked"
    )
    refused = run(
        PEER, *alice, "write", "--", gw, "living-room", "targetTemperature", "22", ok=False
    )
    assert refused.returncode == 1 and "operation not granted" in refused.stdout
    mallory = run(PEER, *b, "--key", f"{k}/mallory", "invoke", "--", gw, "front-door", "lock",
                  ok=False)  # fmt: skip
    assert mallory.returncode == 1 and "forbidden" in mallory.stdout
    missing = run(PEER, *b, "find", "--", "A" * 43, ok=False)
    assert missing.returncode == 1 and "no contact record" in missing.stderr


def test_subscribe_and_owner_acl_push(net: dict[str, str]) -> None:
    b, k, gw = ["--bootstrap", net["boot"]], net["k"], net["gw"]
    sub = subprocess.Popen(
        [PEER, *b, "--key", f"{k}/alice", "subscribe", "--count", "1", "--json", "--", gw,
         "front-door", "unlocked"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    import time

    time.sleep(1.5)  # let the subscription reach the gateway
    run(PEER, *b, "--key", f"{k}/owner", "invoke", "--", gw, "front-door", "unlock")
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["name"] == "unlocked" and event["data"]["actor"]
    run(PEER, "acl", "revoke", "--key", f"{k}/owner", "--acl", net["acl"], "--gateway", gw,
        "--subject", f"{k}/alice.pub")  # fmt: skip
    denied = run(PEER, *b, "--key", f"{k}/alice", "acl", "push", "--acl", net["acl"], "--", gw,
                 ok=False)  # fmt: skip
    assert denied.returncode == 1
    pushed = run(PEER, *b, "--key", f"{k}/owner", "acl", "push", "--acl", net["acl"], "--json",
                 "--", gw)  # fmt: skip
    assert json.loads(pushed.stdout)["version"] == 2
    gone = run(PEER, *b, "--key", f"{k}/alice", "read", "--", gw, "front-door", "state", ok=False)
    assert gone.returncode == 1


def test_delegate_offline_then_act_on_the_chain_then_revoke_the_link(
    net: dict[str, str], tmp_path: Path
) -> None:
    """docs/acl.md §6's walk-through: grant with a depth, delegate offline, invoke with
    --delegation, a use count, and the owner ending the one link."""
    b, k, gw = ["--bootstrap", net["boot"]], net["k"], net["gw"]
    owner = ["--key", f"{k}/owner", "--acl", net["acl"], "--gateway", gw]
    run(PEER, "acl", "grant", *owner, "--subject", f"{k}/alice.pub", "--things", "front-door",
        "--ops", "invokeaction,readproperty", "--delegate", "1")  # fmt: skip
    run(PEER, *b, "--key", f"{k}/owner", "acl", "push", "--acl", net["acl"], "--", gw)
    chain = tmp_path / "mallory.dlg"
    made = run(PEER, "delegate", "--key", f"{k}/alice", "--gateway", gw, "--to",
               f"{k}/mallory.pub", "--things", "front-door", "--ops", "invokeaction",
               "--uses", "2", "--out", str(chain), "--json")  # fmt: skip
    assert json.loads(made.stdout)["links"] == 1 and chain.stat().st_mode & 0o077 == 0
    mallory = [*b, "--key", f"{k}/mallory"]
    plain = run(PEER, *mallory, "invoke", "--", gw, "front-door", "unlock", ok=False)
    assert plain.returncode == 1 and "forbidden" in plain.stdout
    dlg = ["--delegation", str(chain)]
    out = run(PEER, *mallory, "invoke", *dlg, "--json", "--", gw, "front-door", "unlock").stdout
    assert json.loads(out) == "unlocked"
    read = run(PEER, *mallory, "read", *dlg, "--", gw, "front-door", "state", ok=False)
    assert read.returncode == 1 and "operation not granted" in read.stdout  # the link's ops only
    run(PEER, *mallory, "invoke", *dlg, "--", gw, "front-door", "lock")
    used = run(PEER, *mallory, "invoke", *dlg, "--", gw, "front-door", "unlock", ok=False)
    assert used.returncode == 1 and "delegation_used_up" in used.stdout
    run(PEER, "acl", "revoke", *owner, "--link", str(chain))
    run(PEER, *b, "--key", f"{k}/owner", "acl", "push", "--acl", net["acl"], "--", gw)
    ended = run(PEER, *mallory, "invoke", *dlg, "--", gw, "front-door", "lock", ok=False)
    assert ended.returncode == 1 and "delegation_revoked" in ended.stdout
    chain.write_text("not a chain\n")
    bad = run(PEER, *mallory, "invoke", *dlg, "--", gw, "front-door", "lock", ok=False)
    assert bad.returncode != 0 and "delegation_malformed" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
