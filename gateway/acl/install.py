"""The ACL install lock and the version high-water mark, shared by every installer.

Every installer of an ACL -- `streembit-gateway acl apply` (its own process) and the running
gateway (`PUT /acl` and the P2P ``aclpush``, in a worker thread) -- holds `install_lock` (an
``flock`` on ``acl.lock`` in the state folder; not the running gateway's ``.lock``) while
it reads the installed version from disk, verifies the new ACL against it, and writes
``acl.jws`` then ``acl.version``. That makes an install one compare-and-swap on the version.

``acl.version`` is the high-water mark: ``{"owner": OWNER_ID, "version": N}``, the highest version
ever accepted for that owner. It is written after ``acl.jws`` and read before it, so a reader that
holds no lock always finds ``acl.jws`` at or above the mark, and a corrupt or deleted ``acl.jws``
does not lose rollback protection. An ownership transfer and a factory reset remove it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from gateway import jsonsafe
from gateway.errors import AclError
from gateway.locks import held_flock
from gateway.storage import atomic_write_text

log = logging.getLogger(__name__)

INSTALL_LOCK_FILE: Final = "acl.lock"
MARK_FILE: Final = "acl.version"
MARK_FILE_MODE: Final = 0o600
#: Holders verify one JWS and fsync two small files (milliseconds, even on an SD card); a lock
#: held longer than this is stuck, and the installer is refused with `acl_busy`.
INSTALL_LOCK_TIMEOUT_S: Final = 5.0
_MARK_MAX_BYTES: Final = 4096

#: AclError codes that are not the ACL's fault, and the outcome code a binding answers with.
TRANSIENT_OUTCOMES: Final = {"acl_busy": "busy", "acl_io": "storage_unavailable"}

#: Tests only: "PHASE:FOLDER" makes an installer stop at PHASE ("before-lock": the store is
#: loaded, the lock not taken; "locked": the lock is held and the ACL verified, nothing written),
#: create FOLDER/reached and wait for FOLDER/go. Unset in production.
TEST_PAUSE_ENV: Final = "STREEMBIT_TEST_ACL_INSTALL_PAUSE"
TEST_PAUSE_TIMEOUT_S: Final = 60.0  # a test that never says "go" must not hang forever


@contextlib.contextmanager
def install_lock(state_dir: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the state folder's ACL install lock; AclError("acl_busy") after TIMEOUT_S.

    Blocks the calling thread (jittered polling): call it from a worker thread in the gateway."""
    path = Path(state_dir) / INSTALL_LOCK_FILE
    limit = INSTALL_LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    busy = f"another ACL install held the lock for over {limit:g} s; try again"
    with held_flock(path, limit, AclError, ("acl_io", "acl_busy"), busy):
        yield


def read_mark(state_dir: Path, owner_id: str) -> int | None:
    """The highest version accepted for OWNER_ID, or None (no mark, another owner's, unreadable)."""
    path = Path(state_dir) / MARK_FILE
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MARK_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("%s unreadable: %s", path, exc.strerror)
        return None
    try:
        obj = jsonsafe.loads(raw, jsonsafe.FILE_LIMITS) if len(raw) <= _MARK_MAX_BYTES else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        obj = {}
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        log.error("%s is not a version mark; ignoring it", path)
        return None
    return version if obj.get("owner") == owner_id else None


def write_mark(state_dir: Path, owner_id: str, version: int) -> None:
    """Record VERSION as the highest accepted for OWNER_ID (atomic; raises OSError)."""
    text = json.dumps({"owner": owner_id, "version": version}, separators=(",", ":")) + "\n"
    atomic_write_text(Path(state_dir) / MARK_FILE, text, mode=MARK_FILE_MODE)


def pause_for_test(phase: str) -> None:
    """The test hook of `TEST_PAUSE_ENV` (a no-op unless that variable names PHASE)."""
    spec = os.environ.get(TEST_PAUSE_ENV, "")
    want, _, folder = spec.partition(":")
    if not folder or want != phase:
        return
    Path(folder, "reached").touch()
    deadline = time.monotonic() + TEST_PAUSE_TIMEOUT_S
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
