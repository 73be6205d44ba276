"""Signed audit checkpoints: the gateway's statement "my log had COUNT records, the last one
(row id ID) has hash HEAD", at time IAT.

A checkpoint is a compact JWS (ES256, typ CHECKPOINT_TYP, kid = the gateway id) over the JSON
payload {"count", "gw", "head", "iat", "id"} (keys sorted, no spaces; `head` lower-case hex).
Checkpoints are appended, one per line, to the checkpoints file beside the database
(audit.sqlite3.checkpoints) with ONE O_APPEND write and an fdatasync; a torn last line is
ignored by readers. See docs/audit.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError

from gateway.compact import peek_header
from gateway.errors import AuditError
from gateway.identity import KeyPair, PublicIdentity
from gateway.jsonsafe import JsonLimits

CHECKPOINT_TYP: Final = "streembit-audit-checkpoint+jws"
CHECKPOINT_ALG: Final = "ES256"
CHECKPOINTS_SUFFIX: Final = ".checkpoints"  # beside the database: audit.sqlite3.checkpoints
FILE_MODE: Final = 0o600
MAX_CHECKPOINT_BYTES: Final = 2048  # one line; longer ones are not checkpoints
MAX_FILE_BYTES: Final = 64 << 20  # read at most this much of the checkpoints file
_HEADER_LIMITS: Final = JsonLimits(max_bytes=MAX_CHECKPOINT_BYTES, max_depth=2)  # flat header


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    gw: str
    id: int  # row id of the last record covered (0: empty log)
    count: int  # records up to and including it
    head: str  # hex SHA-256 chain hash of that record
    iat: int  # unix seconds
    jws: str = ""

    def payload(self) -> bytes:
        body = {"count": self.count, "gw": self.gw, "head": self.head, "iat": self.iat}
        body["id"] = self.id
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def checkpoints_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + CHECKPOINTS_SUFFIX)


def sign(kp: KeyPair, rid: int, count: int, head: bytes, iat: int | None = None) -> Checkpoint:
    """A checkpoint of the chain head (RID, COUNT, HEAD) signed by the gateway key KP."""
    cp = Checkpoint(kp.id, rid, count, head.hex(), int(time.time()) if iat is None else iat)
    header = {"alg": CHECKPOINT_ALG, "typ": CHECKPOINT_TYP, "kid": kp.id}
    text = jws.serialize_compact(header, cp.payload(), kp.jose_key(), algorithms=[CHECKPOINT_ALG])
    return dataclasses.replace(cp, jws=text)


def verify(text: str, gateway: PublicIdentity) -> Checkpoint:
    """The checkpoint TEXT after checking it is signed by GATEWAY; AuditError why not."""
    text = text.strip()
    if not text or len(text) > MAX_CHECKPOINT_BYTES:
        raise AuditError("not an audit checkpoint (empty or too long)")
    try:
        header = peek_header(text, _HEADER_LIMITS, what="checkpoint header")
    except ValueError:
        raise AuditError("not an audit checkpoint (not a compact JWS)") from None
    if header.get("alg") != CHECKPOINT_ALG or header.get("typ") != CHECKPOINT_TYP:
        raise AuditError(f"not an audit checkpoint (alg must be ES256, typ {CHECKPOINT_TYP})")
    try:
        obj = jws.deserialize_compact(text, gateway.jose_key(), algorithms=[CHECKPOINT_ALG])
    except JoseError:
        raise AuditError("checkpoint signature is not the gateway's") from None
    try:
        body: Any = json.loads(obj.payload)
        cp = Checkpoint(
            str(body["gw"]), body["id"], body["count"], str(body["head"]), body["iat"], text
        )
    except (ValueError, KeyError, TypeError):
        raise AuditError("checkpoint payload is malformed") from None
    if cp.gw != gateway.id or header.get("kid") != gateway.id:
        raise AuditError("checkpoint names another gateway")
    if not all(isinstance(v, int) and v >= 0 for v in (cp.id, cp.count, cp.iat)):
        raise AuditError("checkpoint payload is malformed (id, count, iat)")
    if len(cp.head) != 64 or any(c not in "0123456789abcdef" for c in cp.head):
        raise AuditError("checkpoint payload is malformed (head)")
    return cp


def append(path: Path, cp: Checkpoint) -> None:
    """Append CP to the checkpoints file at PATH durably (one write, fdatasync); OSError."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        line = cp.jws.encode() + b"\n"
        if os.write(fd, line) != len(line):
            raise OSError("short write of an audit checkpoint")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if created:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_lines(path: Path) -> list[str]:
    """The whole lines of the checkpoints file at PATH ([] if there is none)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the audit checkpoints: {exc}") from None
    whole = data[: data.rfind(b"\n") + 1]  # a torn last line is not a checkpoint yet
    return [ln.decode("ascii", "replace") for ln in whole.splitlines() if ln.strip()]


def latest(path: Path) -> str | None:
    """The last whole line of the checkpoints file (unverified), None if there is none."""
    lines = read_lines(path)
    return lines[-1] if lines else None
