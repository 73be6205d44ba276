"""The gateway's state folder: its key, the pinned owner, the ACL, the audit log, saved settings.

Layout (all files written atomically):
  gateway.key       the gateway's private key (PKCS#8 PEM, 0600); gateway.key.pub beside it
  owner.pub         the pinned owner's public key (written by `provision`)
  acl.jws           the installed owner-signed ACL
  audit.sqlite3     the append-only audit log
  thing-settings.json  writable Thing settings saved at shutdown
  VERSION           state schema version
  .lock             held (flock) by the running gateway so a second one refuses to start
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from gateway.errors import IdentityError, StreembitError
from gateway.identity import KeyPair, generate_keypair, load_keypair, write_keypair
from gateway.storage import atomic_write_text

STATE_VERSION = 1
KEY_FILE = "gateway.key"


class StateError(StreembitError):
    code = "state"


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self._lock_fd: int | None = None

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    def ensure(self) -> None:
        """Create the folder (0700) if missing; refuse one that others can write to."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot create state folder: {exc.strerror}") from None
        mode = stat.S_IMODE(os.stat(self.path).st_mode)
        if mode & 0o022:
            raise StateError(
                f"{self.path}: state folder is writable by others (mode {mode:o}); "
                f"run: chmod 700 {self.path}"
            )
        version = self.path / "VERSION"
        if not version.exists():
            atomic_write_text(version, f"{STATE_VERSION}\n", mode=0o644)

    def init_identity(self) -> tuple[KeyPair, bool]:
        """Load the gateway key, creating it if missing. Returns (key, created)."""
        self.ensure()
        if self.key_file.exists():
            return load_keypair(self.key_file), False
        kp = generate_keypair()
        write_keypair(self.key_file, kp)
        return kp, True

    def load_identity(self, *, create: bool = False) -> KeyPair:
        if create:
            return self.init_identity()[0]
        if not self.key_file.exists():
            raise IdentityError(
                f"{self.key_file}: no gateway key; run: streembit-gateway init --state {self.path}",
                code="no_key",
            )
        return load_keypair(self.key_file)

    def lock(self) -> None:
        """Hold an exclusive lock on the state folder for this process's lifetime."""
        self.ensure()
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(
                f"{self.path}: another gateway is running on this state folder", code="state_locked"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None
