"""The gateway's state folder: its key, the pinned owner, the ACL, the audit log, saved settings.

Layout (all files written atomically):
  gateway.key       the gateway's private key (PKCS#8 PEM, 0600); gateway.key.pub beside it
  owner.pub         the pinned owner's public key (written by `provision`)
  acl.jws           the installed owner-signed ACL
  audit.sqlite3     the append-only audit log (audit.sqlite3.journal: its durable append journal)
  thing-settings.json  writable Thing settings saved at shutdown
  running.json      written by a running gateway: pid, addresses, the config it loaded
  VERSION           state schema version (STATE_VERSION); older folders are migrated forward
  .lock             held (flock) by the running gateway so a second one refuses to start

Permissions: the folder and every file in it must not be writable by group or others, and the
private key must not be readable by them; a folder that breaks this is refused with the chmod
that fixes it. A folder whose VERSION is newer than this gateway's is refused (never downgraded).

Migrations: `MIGRATIONS[n]` takes a folder from version n to n+1. They run only while the
folder's lock is held (`lock()`: the gateway at start, `streembit-gateway migrate`), one step at a
time; each step is idempotent and VERSION is rewritten atomically after each, so a crash in the
middle leaves a folder that the next run migrates again from where it stopped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.audit import AUDIT_FILE
from gateway.errors import IdentityError, StreembitError
from gateway.identity import KeyPair, generate_keypair, load_keypair, write_keypair
from gateway.storage import atomic_write_text

log = logging.getLogger(__name__)

STATE_VERSION: Final = 2
KEY_FILE: Final = "gateway.key"
VERSION_FILE: Final = "VERSION"
LOCK_FILE: Final = ".lock"
#: Files that hold secrets or private records: 0600 (migration 1 -> 2 enforces it).
PRIVATE_FILES: Final = (
    KEY_FILE,
    "acl.jws",
    AUDIT_FILE,
    f"{AUDIT_FILE}-wal",
    f"{AUDIT_FILE}-shm",
    f"{AUDIT_FILE}.journal",  # gateway.audit.journal: records not yet imported into SQLite
    f"{AUDIT_FILE}.checkpoints",  # gateway.audit.checkpoint: the signed heads of the chain
    "thing-settings.json",
    "running.json",
)
#: Public files: 0644.
PUBLIC_FILES: Final = ("gateway.key.pub", "owner.pub", VERSION_FILE)
#: Files whose presence marks a folder that was used before VERSION files existed.
_LEGACY_MARKERS: Final = (KEY_FILE, "owner.pub", "acl.jws", AUDIT_FILE)


class StateError(StreembitError):
    code = "state"


# --------------------------------------------------------------------------- migrations
def _stamp_legacy(path: Path) -> None:
    """0 -> 1: a folder from before VERSION files: nothing to change but the stamp."""


def _normalise_modes(path: Path) -> None:
    """1 -> 2: private files 0600, public files 0644 (older versions left some at umask)."""
    for name in PRIVATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path / name, 0o600)
    for name in PUBLIC_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path / name, 0o644)


@dataclass(frozen=True)
class Migration:
    from_version: int
    summary: str
    apply: Callable[[Path], None]


#: from_version -> the step to from_version + 1. Add a step and bump STATE_VERSION together.
MIGRATIONS: Final[dict[int, Migration]] = {
    0: Migration(0, "stamp a folder made before state versions", _stamp_legacy),
    1: Migration(1, "private files 0600, public files 0644", _normalise_modes),
}


def _read_only(path: Path, st: os.stat_result) -> str:
    """Why PATH, which we cannot write, is read-only; "" when it is someone else's folder."""
    try:
        mounted_ro = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        mounted_ro = False
    if mounted_ro:
        return f"the state folder {path} is read-only (mounted read-only?)"
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == os.geteuid() and not mode & stat.S_IWUSR:
        return f"the state folder {path} is read-only (mode {mode:o}); run: chmod 700 {path}"
    return ""


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self._lock_fd: int | None = None

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    # ------------------------------------------------------------------ checks
    def ensure(self) -> None:
        """Create the folder (0700) if missing; refuse one that is unsafe, unwritable, or of a
        newer schema version. A new, empty folder is stamped with STATE_VERSION."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise StateError(
                    f"the state folder {self.path} cannot be created: its file system is "
                    "read-only (mounted read-only?)",
                    code="state_read_only",
                ) from None
            raise StateError(f"{self.path}: cannot create state folder: {exc.strerror}") from None
        self.check_permissions()
        version = self.version()
        if version is None:
            atomic_write_text(self.path / VERSION_FILE, f"{STATE_VERSION}\n", mode=0o644)
        elif version > STATE_VERSION:
            raise StateError(
                f"{self.path}: state folder version {version} is newer than this gateway's "
                f"{STATE_VERSION}; install the newer gateway again (state is never downgraded)",
                code="state_too_new",
            )

    def check_permissions(self) -> None:
        """StateError naming the fix for an unsafe or unusable folder or file."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from None
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o022:
            raise StateError(
                f"{self.path}: state folder is writable by others (mode {mode:o}); "
                f"run: chmod 700 {self.path}",
                code="unsafe_permissions",
            )
        if not os.access(self.path, os.W_OK | os.X_OK):
            read_only = _read_only(self.path, st)
            if read_only:
                raise StateError(read_only, code="state_read_only")
            raise StateError(
                f"{self.path}: state folder belongs to uid {st.st_uid} and this process "
                f"(uid {os.geteuid()}) cannot write it; run the command as the gateway's user "
                f"(e.g. sudo -u streembit ...) or: chown -R USER: {self.path}",
                code="state_not_writable",
            )
        try:
            entries = list(os.scandir(self.path))
        except OSError as exc:
            raise StateError(f"{self.path}: cannot list state folder: {exc.strerror}") from None
        for entry in entries:
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            if not stat.S_ISREG(est.st_mode):
                continue
            emode = stat.S_IMODE(est.st_mode)
            limit = 0o077 if entry.name == KEY_FILE else 0o022
            if emode & limit:
                what = "readable" if entry.name == KEY_FILE else "writable"
                want = "600" if entry.name in PRIVATE_FILES else "644"
                raise StateError(
                    f"{entry.path}: {what} by others (mode {emode:o}); run: chmod {want} "
                    f"{entry.path}",
                    code="unsafe_permissions",
                )

    def version(self) -> int | None:
        """The folder's schema version; 0 for a used folder without VERSION, None for a new
        folder. StateError for an unreadable VERSION file."""
        path = self.path / VERSION_FILE
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except FileNotFoundError:
            if any((self.path / m).exists() for m in _LEGACY_MARKERS):
                return 0
            return None
        except OSError as exc:
            raise StateError(f"{path}: cannot read: {exc.strerror}", code="state_version") from None
        if not text.isdigit():
            raise StateError(
                f"{path}: {text[:20]!r} is not a state version number; restore it from a backup "
                f"or write {STATE_VERSION} if the folder was made by this version",
                code="state_version",
            )
        return int(text)

    def pending_migrations(self) -> list[Migration]:
        version = self.version()
        if version is None:
            return []
        return [MIGRATIONS[v] for v in range(version, STATE_VERSION)]

    def migrate(self) -> list[Migration]:
        """Apply the pending migrations (the lock must be held); returns the steps applied."""
        if self._lock_fd is None:
            raise StateError(f"{self.path}: migrate() needs the state lock", code="state_locked")
        done: list[Migration] = []
        for step in self.pending_migrations():
            target = step.from_version + 1
            try:
                step.apply(self.path)
                atomic_write_text(self.path / VERSION_FILE, f"{target}\n", mode=0o644)
            except OSError as exc:
                raise StateError(
                    f"{self.path}: migration {step.from_version} -> {target} ({step.summary}) "
                    f"failed: {exc}; the folder is still at version {step.from_version} and "
                    "the next start retries",
                    code="state_migration",
                ) from None
            log.info("state %s migrated to version %d: %s", self.path, target, step.summary)
            done.append(step)
        return done

    # ---------------------------------------------------------------- identity
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

    # -------------------------------------------------------------------- lock
    def lock(self) -> None:
        """Hold an exclusive lock on the state folder for this process's lifetime, then bring
        the folder to STATE_VERSION (migrations run only under this lock)."""
        self.ensure()
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(
                f"{self.path}: another gateway is running on this state folder", code="state_locked"
            ) from None
        self._lock_fd = fd
        try:
            self.migrate()
        except BaseException:
            self.unlock()
            raise

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def is_locked_elsewhere(self) -> bool:
        """True while another process (a running gateway) holds the lock."""
        if self._lock_fd is not None:
            return False
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock we took
        return False
