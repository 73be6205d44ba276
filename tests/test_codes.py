"""The error-code registry (gateway/codes.py): every code's metadata, the documentation tables
that must equal it, rendering, the admin entry of the request processor, and a missing file
given to a command (one line, not a traceback)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.codes import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    Answer,
    Code,
    Scope,
    exit_code,
    http_status,
    render,
)
from gateway.errors import AclError, ConfigError, ProvisioningError, StreembitError
from gateway.messages import codes as message_codes
from gateway.peer import wire
from gateway.peer.errors import PeerConnectionError, PeerTimeoutError
from gateway.requests import Outcome, Request, RequestProcessor

DOCS = Path(__file__).resolve().parent.parent / "docs"
BIN = Path(sys.executable).parent
ROW = re.compile(r"^\| `([a-z0-9_]+)` \| (\d{3}) \|")


def _section(doc: str, heading: str) -> list[str]:
    """The lines of DOC from HEADING to the next heading of any level."""
    lines = (DOCS / doc).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start + 1 : end]


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("code", list(Code), ids=str)
def test_every_code_has_a_status_an_exit_code_and_a_meaning(code: Code) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", code.value)
    assert 200 <= code.status <= 599
    assert code.exit_code in (EXIT_OK, EXIT_FAIL, EXIT_USAGE)
    assert (code.exit_code == EXIT_OK) == (code is Code.OK) == (code.status == 200)
    assert code.scopes and code.meaning.strip()
    assert isinstance(code.answer, Answer)
    assert Code.lookup(code.value) is code
    assert code == code.value and str(code) == code.value and repr(code) == repr(code.value)


def test_unregistered_codes_take_the_defaults() -> None:
    assert Code.lookup("no_such_code") is None
    assert http_status("no_such_code") == 500
    assert exit_code("no_such_code") == EXIT_FAIL
    assert wire.refusal_status("no_such_code") == 400
    assert Outcome("no_such_code").http_status == 500


def test_the_message_codes_are_the_registry_s() -> None:
    assert message_codes.ALL_CODES == Code.in_scope(Scope.MESSAGE)
    assert len(message_codes.ALL_CODES) == 18  # 15 of sealed messages, 3 of sessions (§8)
    sealed = {c for c in message_codes.ALL_CODES if c.answer is Answer.SEALED}
    assert sealed == {Code.EXPIRED, Code.NOT_YET_VALID, Code.REPLAYED, Code.REPLAY_CACHE_FULL}


def test_statuses_kept_from_the_old_tables() -> None:
    # peer/wire.py, bindings/p2p/ops.py (provisioning) and requests/model.py had these
    assert [wire.refusal_status(c) for c in ("too_large", "replay_cache_full", "rate_limited")] == [
        413,
        503,
        429,
    ]
    assert wire.refusal_status("bad_signature") == 400
    old_provisioning = {
        "already_owned": 409,
        "no_setup_code": 409,
        "setup_code_used": 409,
        "bad_setup_code": 403,
        "claim_locked": 429,
        "not_owned": 409,
        "transfer_forbidden": 403,
        "transfer_not_owner": 403,
        "transfer_bad_signature": 403,
        "transfer_replayed": 409,
        "owner_changed": 409,
        "busy": 503,
        "state_io": 503,
        "setup_state_damaged": 503,
        "claim_malformed": 400,
        "transfer_invalid": 400,
        "provisioning": 400,
    }
    assert {c: http_status(c) for c in old_provisioning} == old_provisioning
    usage = {"config", "bad_key", "no_key", "identity", "acl_invalid", "acl_malformed"}
    usage |= {"driver_config", "cannot_listen", "usage", "bad_input"}
    usage |= {"not_streembit_payload", "payload_encoding", "payload_truncated", "no_qr"}
    usage |= {"payload_version", "payload_checksum", "payload_kind", "payload_malformed"}
    usage |= {"payload_too_large", "image_unreadable", "image_too_large", "several_qr"}
    usage |= {"bad_address", "reset_unconfirmed"}  # provisioning_gateway.BAD_INPUT had these
    assert {c.value for c in Code if c.exit_code == EXIT_USAGE} == usage | {"no_file"}


# --------------------------------------------------------------------------- docs
def test_the_http_status_table_is_the_registry() -> None:
    rows = [m.groups() for line in _section("http-binding.md", "## 3") if (m := ROW.match(line))]
    assert rows, "no status table in docs/http-binding.md §3"
    assert {code: int(status) for code, status in rows} == {
        c.value: c.status for c in Code.in_scope(Scope.REQUEST)
    }
    assert len(rows) == len(Code.in_scope(Scope.REQUEST))


def test_the_message_code_table_is_the_registry() -> None:
    names = re.compile(r"^\| `([a-z_]+)` \|")
    section = _section("protocol.md", "### 3.1")
    rows = [m.group(1) for line in section if (m := names.match(line))]
    assert rows == [c.value for c in Code.in_scope(Scope.MESSAGE)]


def test_the_provisioning_statuses_in_the_docs_are_the_registry() -> None:
    text = (DOCS / "provisioning.md").read_text(encoding="utf-8")
    found = re.findall(r"`([a-z_]+)` \(?(\d{3})\b", text)
    assert len(found) >= 12
    for code, status in found:
        assert http_status(code) == int(status), code


# --------------------------------------------------------------------------- render
def test_errors_render_from_the_registry() -> None:
    cfg = render(ConfigError("gw.toml", "http.port", "an integer"))
    assert (cfg.code, cfg.exit_code, cfg.status) == ("config", EXIT_USAGE, 500)
    assert cfg.line == "error: gw.toml: http.port: an integer [config]"
    assert cfg.body() == {"error": "config", "reason": "gw.toml: http.port: an integer"}
    claim = render(ProvisioningError("locked", code=Code.CLAIM_LOCKED))
    assert (claim.status, claim.exit_code) == (429, EXIT_FAIL)
    assert render(PeerTimeoutError("slow")).code == "timeout"
    assert render(PeerConnectionError("gone")).status == 502
    assert Outcome.of_error(AclError("x", code="acl_rollback")).code == "acl_rollback"


# --------------------------------------------------------------------------- admin entry
class _Audit:
    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy
        self.records: list[Any] = []

    async def recover(self) -> bool:
        return self.healthy

    async def append(self, rec: Any) -> None:
        self.records.append(rec)


def _processor(owner: str | None, audit: _Audit) -> RequestProcessor:
    acl = SimpleNamespace(
        owner=None if owner is None else SimpleNamespace(id=owner), gateway_id="gw", state_dir="."
    )
    return RequestProcessor({}, acl, audit)  # type: ignore[arg-type]


def _admin(
    proc: RequestProcessor, subject: str, *, owner_only: str | None, fail: bool = False
) -> Any:
    async def action() -> tuple[Any, str]:
        if fail:
            raise ProvisioningError("no", code=Code.ALREADY_OWNED)
        return {"done": True}, "did it"

    req = Request(subject, "aclpush", "", "acl", None, "p2p", "jti-1")
    return asyncio.run(proc.admin(req, action, rule="owner", owner_only=owner_only))


def test_admin_is_owner_only_and_audited_once() -> None:
    audit = _Audit()
    refused = _admin(_processor("OWNER", audit), "someone", owner_only="push an ACL")
    assert (refused.code, refused.rule, refused.http_status) == ("forbidden", "owner-only", 403)
    assert refused.reason == "only the owner can push an ACL"  # what the caller said
    done = _admin(_processor("OWNER", audit), "OWNER", owner_only="push an ACL")
    assert done.ok and done.output == {"done": True}
    assert [(r.subject, r.allowed, r.rule, r.detail) for r in audit.records] == [
        ("someone", False, "owner-only", ""),
        ("OWNER", True, "owner", "did it"),
    ]
    assert audit.records[1].reason == "ok" and audit.records[1].request_id == "jti-1"


def test_admin_refusals_carry_the_action_s_code_and_fail_closed() -> None:
    audit = _Audit()
    refused = _admin(_processor(None, audit), "anyone", owner_only=None, fail=True)
    assert (refused.code, refused.http_status) == ("already_owned", 409)
    assert audit.records[-1].reason == "already_owned: no" and not audit.records[-1].allowed
    down = _Audit(healthy=False)
    closed = _admin(_processor("OWNER", down), "OWNER", owner_only="push an ACL")
    assert (closed.code, closed.http_status) == ("audit_unavailable", 503)
    assert not down.records[-1].allowed  # attempted, refused, not done


# --------------------------------------------------------------------------- CLI
def test_a_missing_file_is_one_error_line_not_a_traceback(tmp_path: Path) -> None:
    gw = str(BIN / "streembit-gateway")
    state = tmp_path / "gw"
    init = subprocess.run(
        [gw, "init", "--state", str(state)], capture_output=True, text=True, timeout=60
    )
    assert init.returncode == 0, init.stderr
    missing = tmp_path / "no-such-acl.jws"
    proc = subprocess.run(
        [gw, "acl", "apply", "--state", str(state), str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {missing}: No such file or directory [no_file]"
    ]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_an_os_error_without_a_file_is_one_line_too() -> None:
    from argparse import Namespace

    from gateway.cli.common import fail, os_failure

    err = os_failure(ConnectionResetError(104, "Connection reset by peer"))
    assert isinstance(err, StreembitError) and err.code == "error"
    assert fail(Namespace(json=False), err) == EXIT_FAIL


def test_dht_record_codes_are_the_registry_and_the_doc() -> None:
    """Every refusal code of docs/dht-records.md's check table is registered (Scope.DHT), and
    every registered record code is in that table and is what gateway.p2p.records raises."""
    import re

    from gateway.codes import Code, Scope
    from gateway.p2p.records import RecordCode

    doc = (Path(__file__).resolve().parents[1] / "docs" / "dht-records.md").read_text()
    in_doc = set(re.findall(r"`(record_[a-z_]+)`", doc))
    registered = {c.value for c in Code.in_scope(Scope.DHT)}
    assert registered == in_doc
    assert {v for k, v in vars(RecordCode).items() if k.isupper()} == registered


def test_lookup_codes_are_registered_and_in_the_doc_table() -> None:
    """The lookup service's refusal codes (gateway/reach/lookup.py) are registry members, and
    docs/reach.md's table of them lists exactly those."""
    import re

    from gateway.reach.lookup import LOOKUP_CODES

    doc = (DOCS / "reach.md").read_text()
    table = doc[doc.index("Refusal codes (`LOOKUP_CODES`") :].split("\n\n")[1]
    in_doc = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert in_doc == [c.value for c in LOOKUP_CODES]
    assert all(Code.lookup(c) is c for c in LOOKUP_CODES)
    assert (Code.NOT_FOUND.status, Code.UNAVAILABLE.status, Code.BAD_ID.status) == (404, 503, 400)


def test_every_code_the_product_raises_is_registered() -> None:
    """Each `code="..."` given to an error (and each error class's `code = "..."`) in gateway/
    and device_drivers/ is a registry member: no code falls back to the defaults unnoticed."""
    import re

    root = Path(__file__).resolve().parents[1]
    raised: dict[str, str] = {}
    for path in [*root.glob("gateway/**/*.py"), *root.glob("device_drivers/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r'\bcode="([a-z_]+)"|^    code = "([a-z_]+)"$', text, flags=re.M):
            raised.setdefault(m.group(1) or m.group(2), str(path.relative_to(root)))
    assert len(raised) > 50  # the scan sees the literal codes (most code with Code.X)
    missing = {c: where for c, where in raised.items() if Code.lookup(c) is None}
    assert missing == {}


def test_acl_codes_are_the_registry_and_the_doc_table() -> None:
    """docs/acl.md §2.1 lists exactly the registry's ACL codes, in order."""
    import re

    table = "\n".join(_section("acl.md", "### 2.1 Error codes"))
    in_doc = re.findall(r"^\| `(acl_[a-z_]+)` \|", table, flags=re.M)
    registered = [c.value for c in Code.in_scope(Scope.ACL)]
    assert sorted(in_doc) == sorted(registered) and len(in_doc) == 12
