"""The provisioning commands: as subprocesses of the installed scripts for the main paths (a
running demo gateway claimed, transferred and reset with the commands), in-process for the
matrix of bad inputs (each: exit 2, a clear message, nothing pinned, one audit record)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import segno
from PIL import Image, ImageFilter

from gateway.audit import AuditLog
from gateway.cli import gateway_cli
from gateway.identity import generate_keypair, load_public, write_keypair
from gateway.provisioning import payload as pl
from gateway.provisioning import qr
from gateway.state import StateDir

BIN = Path(sys.executable).parent
GW = str(BIN / "streembit-gateway")
PEER = str(BIN / "streembit-peer")
TIMEOUT_S = 60


def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc


def j(*args: str, code: int = 0) -> Any:
    return json.loads(run(*args, "--json", code=code).stdout)


def audit(state: Path, op: str | None = None) -> list[dict[str, Any]]:
    log = AuditLog.open(state / "audit.sqlite3")
    try:
        return [r.as_dict() for r in log.query(limit=1000) if op is None or r.op == op]
    finally:
        log.close()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    for name in ("owner", "new-owner", "stranger"):
        write_keypair(d / f"{name}.key", generate_keypair())
    return d


@pytest.fixture
def state(tmp_path: Path) -> Path:
    st = tmp_path / "state"
    StateDir(st).init_identity()
    return st


def main(*argv: str) -> int:
    return gateway_cli.main(list(argv))


# ------------------------------------------------------------------ owner QR -> provision
def test_owner_qr_photo_provisions_the_gateway(keys: Path, state: Path, tmp_path: Path) -> None:
    owner_id = load_public(keys / "owner.key.pub").id
    png, svg = tmp_path / "owner.png", tmp_path / "owner.svg"
    shown = j(
        PEER,
        "owner-qr",
        "--key",
        str(keys / "owner.key"),
        "--png",
        str(png),
        "--svg",
        str(svg),
        "--bootstrap",
        "192.168.1.20:4242",
    )
    assert shown["owner"] == owner_id and shown["payload"].startswith("SB:")
    assert svg.read_text().count("<svg") == 1
    with Image.open(png) as im:  # a skewed, blurred, dim photo of the screen
        photo = im.convert("L").resize((im.width * 2 // 3, im.height * 2 // 3))
        photo = photo.rotate(33, expand=True, fillcolor=255).filter(ImageFilter.GaussianBlur(1))
        photo = photo.point(lambda v: 60 + v * 100 // 255)
    photo.save(tmp_path / "photo.png")
    got = j(GW, "provision", "--state", str(state), "--qr", str(tmp_path / "photo.png"))
    assert got["owner"] == owner_id and got["source"] == "qr" and not got["already"]
    assert got["bootstrap"] == ["192.168.1.20:4242"]
    again = j(GW, "provision", "--state", str(state), "--payload", shown["payload"])
    assert again["already"] and again["owner"] == owner_id
    human = run(PEER, "owner-qr", "--key", str(keys / "owner.key.pub")).stdout
    assert owner_id in human and "▀" in human  # the terminal drawing
    other = pl.OwnerPayload(load_public(keys / "stranger.key.pub")).encode()
    refused = run(GW, "provision", "--state", str(state), "--payload", other, code=1)
    assert "already owned" in refused.stderr
    assert load_public(state / "owner.pub").id == owner_id
    rows = audit(state, "provision")
    assert [r["allowed"] for r in reversed(rows)] == [True, True, False]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    owner = generate_keypair().public
    good = pl.OwnerPayload(owner).encode()
    i = 3 + 15
    flipped = good[:i] + ("1" if good[i] != "1" else "2") + good[i + 1 :]
    gw_payload = pl.GatewayPayload(generate_keypair().public, (), (), bytes(10)).encode()
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 300), 255).save(blank)
    url = tmp_path / "url.png"
    segno.make("https://example.com/owner").save(str(url), scale=6)
    notimg = tmp_path / "notes.png"
    notimg.write_text("hello")
    return {
        "wrong checksum": (["--payload", flipped], "payload_checksum"),
        "truncated": (["--payload", good[:30]], "payload_truncated"),
        "unknown version": (
            ["--payload", "SB:" + pl.base38_encode(b"\x07\x01\x00\x00")],
            "payload_version",
        ),
        "the gateway's QR": (["--payload", gw_payload], "payload_kind"),
        "a web address": (["--payload", "https://example.com"], "not_streembit_payload"),
        "image without a QR": (["--qr", str(blank)], "no_qr"),
        "QR of a web address": (["--qr", str(url)], "not_streembit_payload"),
        "not an image": (["--qr", str(notimg)], "image_unreadable"),
        "missing image": (["--qr", str(tmp_path / "nope.png")], "image_unreadable"),
        "bad key file": (["--owner-key", str(notimg)], "bad_key"),
    }


def test_bad_input_exits_2_pins_nothing_and_is_audited(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _bad_inputs(tmp_path)
    for name, (argv, code) in cases.items():
        assert main("provision", "--state", str(state), *argv, "--json") == 2, name
        out = capsys.readouterr()
        assert json.loads(out.out)["error"] == code, name
        assert f"[{code}]" in out.err and "error:" in out.err
        assert not (state / "owner.pub").exists(), name
    rows = audit(state, "provision")
    assert len(rows) == len(cases) and not any(r["allowed"] for r in rows)
    assert {r["reason"].split(":")[0] for r in rows} == {c for _, c in cases.values()}
    # and once as a subprocess: the exit status and the message a person sees
    res = run(GW, "provision", "--state", str(state), "--payload", "SB:0000", code=2)
    assert "error:" in res.stderr and "[payload_" in res.stderr


def test_provision_from_the_camera(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    owner = generate_keypair().public
    Image.new("L", (320, 240), 90).save(frames / "0001.png")
    qr.write_png(pl.OwnerPayload(owner).encode(), frames / "0002.png")
    with Image.open(frames / "0002.png") as im:
        im.convert("L").rotate(150, expand=True, fillcolor=255).save(frames / "0002.png")
    assert (
        main(
            "provision",
            "--state",
            str(state),
            "--camera",
            "--camera-source",
            f"dir:{frames}",
            "--json",
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["owner"] == owner.id
    assert load_public(state / "owner.pub").id == owner.id


def test_camera_without_backend_names_the_fix(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    monkeypatch.delenv("STREEMBIT_CAMERA", raising=False)
    assert main("provision", "--state", str(state), "--camera") == 1
    assert "sudo apt install python3-picamera2" in capsys.readouterr().err
    assert not (state / "owner.pub").exists()
    assert audit(state, "provision")[0]["reason"].startswith("no_camera")


def test_reset_needs_confirmation_and_presence(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # not a terminal
    assert main("reset", "--state", str(state)) == 2
    assert "--yes" in capsys.readouterr().err and (state / "gateway.key").exists()
    assert not audit(state, "reset")[0]["allowed"]


def test_qr_of_an_owned_gateway_has_no_code(
    state: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main("provision", "--state", str(state), "--owner-key", str(keys / "owner.key.pub")) == 0
    capsys.readouterr()
    assert main("qr", "--state", str(state), "--addr", "ws://127.0.0.1:1/p2p", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["setup_code"] is None and shown["owner"] == load_public(keys / "owner.key.pub").id
    assert pl.decode_gateway(shown["payload"]).setup_code is None
    assert main("qr", "--state", str(state), "--new-code") == 1
    assert main("qr", "--state", str(state), "--addr", "http://x/") == 2
    assert "[bad_address]" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end
def test_claim_transfer_and_reset_with_the_commands(keys: Path, tmp_path: Path) -> None:
    st = tmp_path / "gw-state"
    demo = subprocess.Popen(
        [
            GW,
            "demo",
            "--state",
            str(st),
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--dht-port",
            "0",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        ready = json.loads(demo.stdout.readline())
        assert ready["owner"] is None
        png = tmp_path / "gw.png"
        shown = j(GW, "qr", "--state", str(st), "--addr", ready["ws"], "--png", str(png))
        assert shown["gateway"] == ready["id"] and len(shown["setup_code"]) == 19
        gp = pl.decode_gateway(shown["payload"])
        assert gp.addrs == (ready["ws"],) and gp.setup_code is not None
        assert j(GW, "qr", "--state", str(st), "--addr", ready["ws"])["payload"] == shown["payload"]

        wrong = pl.GatewayPayload(gp.gateway, gp.addrs, (), bytes(10)).encode()
        refused = j(PEER, "claim", wrong, "--key", str(keys / "stranger.key"), code=1)
        assert refused["error"] == "bad_setup_code" and refused["status"] == 403

        owner_id = load_public(keys / "owner.key.pub").id
        claimed = j(PEER, "claim", "--qr", str(png), "--key", str(keys / "owner.key"))
        assert claimed == {"owner": owner_id, "gateway": ready["id"]}
        again = j(PEER, "claim", shown["payload"], "--key", str(keys / "stranger.key"), code=1)
        assert again["error"] == "already_owned"

        busy = run(GW, "reset", "--state", str(st), "--yes", code=1)
        assert "running" in busy.stderr and (st / "gateway.key").exists()

        new_id = load_public(keys / "new-owner.key.pub").id
        moved = j(
            PEER,
            "transfer",
            "--key",
            str(keys / "owner.key"),
            "--to",
            str(keys / "new-owner.key.pub"),
            "--via",
            shown["payload"],
            ready["id"],
        )
        assert moved == {"owner": new_id, "previous": owner_id, "gateway": ready["id"]}
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=15) == 0
    assert load_public(st / "owner.pub").id == new_id
    done = j(GW, "reset", "--state", str(st), "--yes")
    assert "gateway.key" in done["removed"] and "owner.pub" in done["removed"]
    assert done["kept"] == ["audit.sqlite3"]
    rows = j(GW, "audit", "--state", str(st))
    ops = [(r["op"], r["allowed"]) for r in rows]
    assert ops[0] == ("reset", True)
    assert ("claim", True) in ops and ("claim", False) in ops and ("transfer", True) in ops
    assert ("reset", False) in ops and ("setupcode", True) in ops
    assert shown["setup_code"] not in json.dumps(rows)
