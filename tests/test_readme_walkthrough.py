"""The README's "Try it" walkthrough, run literally.

The shell blocks of README.md's "Try it" section are taken as they are written and run, one
after the other, by bash in one session, against a real `streembit-gateway demo` started with
the arguments the README gives (`deploy/dev.sh demo ARGS` runs `streembit-gateway demo ARGS` once
the venv exists). So that the README's own text (`/tmp/gw`, ports 8080, 8081 and 4242) runs
verbatim and nothing leaks or collides with anything else on the machine, it all runs in a
network and mount namespace made for it: `unshare -n -m`, loopback brought up, a fresh tmpfs on
/tmp; the commands run in a folder there with `.venv` linked to this repository's. Between the
commands the test only inserts markers, to tell each command's output and exit status apart.

Without unshare, ip or mount, or without the right to make namespaces, this test fails and says
what is missing; it never skips.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WORK = Path("/tmp/walkthrough")  # inside the namespace's own /tmp
MARK = "@@@walkthrough-step"
READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 240.0
ID_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


# --------------------------------------------------------------------------- the README
def try_it_section(text: str) -> str:
    start = text.index("\n## Try it\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def demo_args(section: str) -> list[str]:
    """The arguments of the demo the README says to run (`deploy/dev.sh demo ARGS`)."""
    m = re.search(r"`deploy/dev\.sh demo ([^`]*)`", section)
    assert m, "the Try it section names the demo to run: `deploy/dev.sh demo ...`"
    return shlex.split(m.group(1))


def shell_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def commands(block: str) -> list[str]:
    """The block's commands, a backslash-continued command as one (its lines kept as written)."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not line.strip() and not pending:
            continue
        pending += line + "\n"
        if not line.endswith("\\"):
            out.append(pending.rstrip("\n"))
            pending = ""
    if pending:
        out.append(pending.rstrip("\n"))
    return out


def script(cmds: list[str]) -> str:
    """CMDS as written, with a marker before each on both streams and its exit status after."""
    parts = []
    for i, cmd in enumerate(cmds):
        parts.append(f"printf '\\n{MARK} {i}\\n'; printf '\\n{MARK} {i}\\n' >&2")
        parts.append(cmd)
        parts.append(f"printf '\\n{MARK}-rc {i} %s\\n' \"$?\"")
    return "\n".join(parts) + "\n"


@dataclass
class Step:
    cmd: str
    rc: int
    out: str
    err: str


def split_steps(cmds: list[str], out: str, err: str) -> list[Step]:
    def pieces(stream: str) -> dict[int, str]:
        parts = re.split(rf"\n?{MARK} (\d+)\n", "\n" + stream)
        return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}

    outs, errs = pieces(out), pieces(err)
    steps = []
    for i, cmd in enumerate(cmds):
        text = outs.get(i, "")
        m = re.search(rf"\n?{MARK}-rc {i} (\d+)\n", text)
        rc = int(m.group(1)) if m else -1
        steps.append(Step(cmd, rc, text[: m.start()] if m else text, errs.get(i, "").strip()))
    return steps


# --------------------------------------------------------------------------- in the namespace
def inside() -> None:
    """Run in the namespace (lo up, /tmp a fresh tmpfs): the demo, then the README's commands.
    Reads {"demo": [ARGS], "script": TEXT} on stdin, prints the results as JSON."""
    job = json.load(sys.stdin)
    WORK.mkdir(parents=True)
    (WORK / ".venv").symlink_to(REPO / ".venv")
    gateway = REPO / ".venv" / "bin" / "streembit-gateway"
    demo_out, demo_err = WORK / "demo.out", WORK / "demo.err"
    with demo_out.open("wb") as o, demo_err.open("wb") as e:
        demo = subprocess.Popen([str(gateway), "demo", *job["demo"]], stdout=o, stderr=e, cwd=WORK)
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "ready at" not in demo_out.read_text() and time.monotonic() < deadline:
            if demo.poll() is not None:
                break
            time.sleep(0.1)
        ready = demo_out.read_text()
        result["ready"] = "ready at" in ready
        if result["ready"]:
            env = {
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": str(WORK),
                "LANG": "C.UTF-8",
            }
            try:
                proc = subprocess.run(
                    ["bash", "-c", job["script"]],
                    cwd=WORK,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=RUN_TIMEOUT_S,
                    check=False,
                )
                result.update(out=proc.stdout, err=proc.stderr, rc=proc.returncode)
            except subprocess.TimeoutExpired as exc:  # report how far it got
                out, err = (
                    x.decode() if isinstance(x, bytes) else x or ""
                    for x in (exc.stdout, exc.stderr)
                )
                result.update(out=out, err=err, rc=f"timed out after {RUN_TIMEOUT_S} s")
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            result["demo_rc"] = demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            result["demo_rc"] = demo.wait()
    result["demo_out"] = demo_out.read_text()
    result["demo_err"] = demo_err.read_text()
    print(json.dumps(result))


def run_in_namespace(job: dict[str, Any]) -> dict[str, Any]:
    from tests.netns.unshared import run_unshared  # here: the --inside run has no `tests`

    proc = run_unshared(
        'exec "$0" "$1" --inside',
        [sys.executable, __file__],
        who="the README walkthrough tests",
        mount=True,
        input=json.dumps(job),
        timeout=READY_TIMEOUT_S + RUN_TIMEOUT_S + 60,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# --------------------------------------------------------------------------- the test
def test_the_readme_walkthrough_runs_as_written() -> None:
    section = try_it_section(README.read_text(encoding="utf-8"))
    blocks = shell_blocks(section)
    assert len(blocks) == 4, "Try it: the HTTP, P2P, revocation and delegation blocks"
    cmds = [c for block in blocks for c in commands(block)]
    res = run_in_namespace({"demo": demo_args(section), "script": script(cmds)})
    assert res["ready"], res["demo_out"] + res["demo_err"]
    steps = split_steps(cmds, res["out"], res["err"])
    log = "\n".join(f"$ {s.cmd}\n[rc {s.rc}]\n{s.out}\n{s.err}" for s in steps)
    assert res["rc"] == 0, f"{res['rc']}\n{log[-6000:]}"

    def step(start: str, nth: int = 0) -> Step:
        found = [s for s in steps if s.cmd.startswith(start)]
        assert len(found) > nth, f"no command {start!r} in the README's Try it section"
        return found[nth]

    # every command but the refused ones succeeds, and none prints a traceback
    refused = {
        steps.index(step("curl -s -H", 1)),
        steps.index(step("streembit-peer $B --key alice.key read", 1)),
    }
    for i, s in enumerate(steps):
        assert "Traceback" not in s.err, log
        if i not in refused:
            assert s.rc == 0, log

    # init: the id alone on stdout (what GW=$(...) captures); the note on stderr
    init = step("GW=$(streembit-gateway init")
    assert "already had the gateway key in /tmp/gw" in init.err, log
    gw_id = res["demo_out"].split("gateway ", 1)[1].split()[0]
    assert ID_RE.match(gw_id)
    assert f"pinned on gateway {gw_id}" in step("streembit-gateway provision").out, log
    assert "version 1" in step("streembit-peer acl grant").out, log
    applied = step("streembit-gateway acl apply").out
    assert "ACL version 1 installed" in applied and "gateway has picked it up" in applied, log

    # HTTP: the directory without auth, Alice's token reads and unlocks
    tds = json.loads(step("curl -s http://127.0.0.1:8080/things").out)
    assert {td["title"] for td in tds} >= {"Front door", "Living room"}, log
    temp = json.loads(step("curl -s -H").out)
    assert isinstance(temp, float) and round(temp, 1) == temp and 5 < temp < 35, log
    unlock = step("curl -s -X POST").out
    assert "error" not in unlock, log

    # P2P, by the gateway's id alone, through the demo's DHT node
    assert gw_id in step("streembit-peer $B find").out, log
    things = step("streembit-peer $B --key alice.key things").out
    assert "front-door" in things and "living-room" in things, log
    read = float(step("streembit-peer $B --key alice.key read").out.strip())
    assert round(read, 1) == read and 5 < read < 35, log
    assert step("streembit-peer $B --key alice.key invoke").rc == 0, log
    observed = [
        ln for ln in step("streembit-peer $B --key alice.key observe").out.splitlines() if ln
    ]
    assert len(observed) == 2, log

    # revocation: a new ACL pushed by the owner; Alice refused at once on both paths
    assert "version 2" in step("streembit-peer acl revoke").out, log
    after = step("curl -s -H", 1)
    assert json.loads(after.out)["error"] in ("unauthenticated", "forbidden"), log
    p2p = step("streembit-peer $B --key alice.key read", 1)
    assert p2p.rc == 1, log

    # the audit log: Alice's requests allowed, then denied
    audit = step("streembit-gateway audit").out
    alice = step("streembit-peer keygen --key alice.key").out.strip()
    assert ID_RE.match(alice), log
    mine = [ln for ln in audit.splitlines() if alice[:12] in ln]
    assert any(" ALLOW " in ln for ln in mine) and any(" DENY " in ln for ln in mine), audit

    # delegation: Alice re-granted with a depth, her offline link lets the cleaner lock
    assert "version 3" in step("streembit-peer acl grant", 1).out, log
    assert "1 link(s)" in step("streembit-peer delegate").out, log
    assert json.loads(step("streembit-peer $B --key cleaner.key invoke").out) == "locked", log

    # the demo said it was provisioned, and stopped cleanly
    assert "not provisioned yet" in res["demo_out"], res["demo_out"]
    assert "provisioned: owner" in res["demo_out"], res["demo_out"]
    assert res["demo_rc"] == 0 and "Traceback" not in res["demo_err"], res["demo_err"]


def test_the_walkthrough_parser() -> None:
    block = 'A=1\ncmd --x \\\n    --y "z"   # note\n\nlast\n'
    assert commands(block) == ["A=1", 'cmd --x \\\n    --y "z"   # note', "last"]
    cmds = ["echo one", "echo two >&2; false"]
    proc = subprocess.run(["bash", "-c", script(cmds)], capture_output=True, text=True, check=False)
    steps = split_steps(cmds, proc.stdout, proc.stderr)
    assert [(s.rc, s.out.strip(), s.err) for s in steps] == [(0, "one", ""), (1, "", "two")]


if __name__ == "__main__" and sys.argv[1:] == ["--inside"]:
    inside()
