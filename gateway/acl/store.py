"""The gateway's pinned owner key and installed ACL, persisted in the state folder.

Files: ``owner.pub`` (the owner's public key, PEM, written once at provisioning), ``acl.jws``
(the installed ACL exactly as the owner signed it) and ``acl.version`` (the highest version ever
accepted, `gateway.acl.install`). All are replaced atomically; a refused ACL leaves the installed
one and the files untouched.

Install rule: every installer (this store in `acl apply`, in the running gateway's HTTP and P2P
paths) holds the install lock while it reads the installed version *from disk*, verifies the new
ACL against it and writes it: one compare-and-swap, so the installed version only increases and
every acknowledged version stays installed or is superseded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.acl.document import read_acl_unverified, verify_acl
from gateway.acl.install import MARK_FILE, install_lock, pause_for_test, read_mark, write_mark
from gateway.acl.model import MAX_ACL_BYTES, Acl
from gateway.errors import AclError, IdentityError, ProvisioningError
from gateway.identity import PublicIdentity, load_public
from gateway.storage import atomic_write_bytes

log = logging.getLogger(__name__)

OWNER_FILE = "owner.pub"
ACL_FILE = "acl.jws"
PUBLIC_FILE_MODE = 0o644  # a public key is not secret
ACL_FILE_MODE = 0o600  # the ACL names who may enter: keep it private to the gateway user


class AclStore:
    """Owner pin and current ACL; `install` verifies, persists, then notifies `on_change`."""

    def __init__(self, state_dir: Path, gateway_id: str) -> None:
        self.state_dir = Path(state_dir)
        self.gateway_id = gateway_id
        self.on_change: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._owner: PublicIdentity | None = None
        self._current: Acl | None = None
        self._stamp: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) of acl.jws
        owner_path = self.state_dir / OWNER_FILE
        if owner_path.exists():
            try:
                self._owner = load_public(owner_path)
            except IdentityError as exc:
                raise ProvisioningError(
                    f"{owner_path}: pinned owner key unreadable: {exc}", code="bad_owner_key"
                ) from None
        self._load_acl()

    # ----------------------------------------------------------------------- state
    @property
    def owner(self) -> PublicIdentity | None:
        """The pinned owner key, or None before provisioning."""
        return self._owner

    @property
    def current(self) -> Acl | None:
        """The installed, verified ACL, or None."""
        return self._current

    @property
    def installed_version(self) -> int | None:
        acl = self._current
        return acl.version if acl else None

    def key_for(self, subject_id: str) -> PublicIdentity | None:
        """The public key of the owner or of a granted, non-revoked subject; else None."""
        owner = self._owner
        if owner is not None and subject_id == owner.id:
            return owner
        acl = self._current
        if acl is None or subject_id in acl.revoked:
            return None
        grant = acl.grant_for(subject_id)
        return grant.key if grant else None

    # --------------------------------------------------------------------- changes
    def pin_owner(self, pub: PublicIdentity) -> None:
        """Pin the owner key (idempotent); ProvisioningError("already_owned") for another key."""
        with self._lock:
            if self._owner is not None:
                if self._owner.id == pub.id:
                    return
                raise ProvisioningError("this gateway already has an owner", code="already_owned")
            atomic_write_bytes(self.state_dir / OWNER_FILE, pub.pem(), mode=PUBLIC_FILE_MODE)
            self._owner = pub
        self._notify()

    def transfer_owner(self, new_owner: PublicIdentity, *, from_owner_id: str) -> None:
        """Pin NEW_OWNER in place of the owner FROM_OWNER_ID and remove that owner's ACL.

        The caller has verified the owner-signed transfer statement
        (`gateway.provisioning.transfer`); this only applies it, atomically with respect to other
        changes: ProvisioningError("owner_changed") if the owner is no longer FROM_OWNER_ID.
        The old owner's grants end at once (the ACL was their decision); the new owner signs a
        new ACL, starting again at any version.
        """
        try:
            with install_lock(self.state_dir), self._lock:  # no ACL install in between
                if self._owner is None or self._owner.id != from_owner_id:
                    raise ProvisioningError(
                        "the owner changed meanwhile; the transfer is void", code="owner_changed"
                    )
                atomic_write_bytes(
                    self.state_dir / OWNER_FILE, new_owner.pem(), mode=PUBLIC_FILE_MODE
                )
                (self.state_dir / ACL_FILE).unlink(missing_ok=True)
                (self.state_dir / MARK_FILE).unlink(missing_ok=True)  # new owner, new versions
                self._owner = new_owner
                self._current = None
                self._stamp = None
        except AclError as exc:  # the install lock stayed busy, or cannot be opened
            raise ProvisioningError(str(exc), code="busy") from None
        log.info("ownership transferred from %s to %s", from_owner_id, new_owner.id)
        self._notify()

    def forget(self) -> None:
        """Drop the owner and the ACL from memory (after a factory reset wiped their files):
        until re-provisioned, nobody has access."""
        with self._lock:
            self._owner = None
            self._current = None
            self._stamp = None
        self._notify()

    def install(self, text: str) -> Acl:
        """Verify TEXT against the pinned owner and the installed version on disk, write it, make
        it current, notify; AclError if refused. Blocks (the install lock): in the event loop use
        `install_async`."""
        acl = self._install(text, None)
        self._notify()
        return acl

    async def install_async(self, text: str) -> Acl:
        """`install` in a worker thread. The listeners run in the loop, before this returns; they
        also run when the caller is cancelled after the ACL was written."""
        loop = asyncio.get_running_loop()

        def notify_in_loop() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to tell
                loop.call_soon_threadsafe(self._notify)

        return await asyncio.to_thread(self._install, text, notify_in_loop)

    def _install(self, text: str, installed: Callable[[], object] | None) -> Acl:
        """The compare-and-swap: under the install lock, read owner and version from disk, verify
        TEXT against them, write acl.jws then the mark, adopt; then INSTALLED (if any)."""
        pause_for_test("before-lock")
        with install_lock(self.state_dir):
            owner = self._owner_on_disk()
            acl = verify_acl(
                text,
                owner=owner,
                gateway_id=self.gateway_id,
                installed_version=self._version_on_disk(owner),
            )
            pause_for_test("locked")
            path = self.state_dir / ACL_FILE
            try:
                atomic_write_bytes(path, text.strip().encode("utf-8"), mode=ACL_FILE_MODE)
            except OSError as exc:
                raise AclError(f"cannot store the ACL: {exc.strerror}", code="acl_io") from None
            try:  # installed now: a mark that lags behind acl.jws only protects less
                write_mark(self.state_dir, owner.id, acl.version)
            except OSError as exc:
                log.error("ACL version mark not updated (acl.jws is): %s", exc.strerror)
            with self._lock:
                self._owner = owner
                if self._current is None or self._current.version < acl.version:
                    self._current = acl
                self._stamp = self._file_stamp(path)
            if installed is not None:
                installed()
        log.info("ACL version %d installed (%d grants)", acl.version, len(acl.grants))
        return acl

    def _owner_on_disk(self) -> PublicIdentity:
        """The owner pinned in owner.pub now (it may have changed since this store was made)."""
        path = self.state_dir / OWNER_FILE
        try:
            owner = load_public(path) if path.exists() else None
        except IdentityError as exc:
            raise AclError(f"{path}: pinned owner key unreadable: {exc}", code="acl_io") from None
        if owner is None:
            raise AclError("no owner is pinned: provision the gateway first", code="acl_no_owner")
        mine = self._owner
        if mine is not None and mine.id != owner.id:
            raise AclError(
                "the owner changed while this ACL was being installed; try again",
                code="acl_owner_changed",
            )
        return owner

    def _version_on_disk(self, owner: PublicIdentity) -> int | None:
        """The installed version: the highest of the mark, acl.jws (if it verifies) and the
        version in memory. Holds the install lock (the mark is read before the file)."""
        versions = [read_mark(self.state_dir, owner.id)]
        path = self.state_dir / ACL_FILE
        try:
            with path.open("rb") as fh:
                text = fh.read(MAX_ACL_BYTES + 1).decode("utf-8")
            disk = verify_acl(text, owner=owner, gateway_id=self.gateway_id, installed_version=None)
            versions.append(disk.version)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError, AclError) as exc:  # the mark still holds the floor
            log.warning("%s unusable while installing: %s", path, exc)
        current = self._current
        if current is not None and self._owner is not None and self._owner.id == owner.id:
            versions.append(current.version)
        known = [v for v in versions if v is not None]
        return max(known) if known else None

    def reload_if_changed(self) -> Acl | None:
        """Pick up an ACL installed by another process (`streembit-gateway acl apply` while the
        gateway runs). Returns the new ACL, or None when nothing changed or the file was refused
        (then the current ACL stays; rollback and foreign signatures are refused as usual)."""
        if self._owner is None:  # provisioned by `streembit-gateway provision` meanwhile
            owner_path = self.state_dir / OWNER_FILE
            if owner_path.exists():
                try:
                    self._owner = load_public(owner_path)
                    log.info("owner %s pinned", self._owner.id)
                    self._notify()
                except IdentityError as exc:
                    log.error("%s unreadable: %s", owner_path, exc)
        path = self.state_dir / ACL_FILE
        stamp = self._file_stamp(path)
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        owner = self._owner
        if owner is None:
            return None
        try:
            mark = read_mark(self.state_dir, owner.id)  # before the file: then file >= mark
            with path.open("rb") as fh:
                text = fh.read(MAX_ACL_BYTES + 1).decode("utf-8")
            with self._lock:
                current = self._current
                if current is not None and _version_of(text) == current.version:
                    return None  # the ACL in force (our own install, seen once more)
                acl = verify_acl(
                    text,
                    owner=owner,
                    gateway_id=self.gateway_id,
                    installed_version=current.version if current else None,
                )
                _check_mark(acl, mark)
                self._current = acl
        except (OSError, UnicodeDecodeError, AclError) as exc:
            log.error("%s changed on disk but was refused; keeping the current ACL: %s", path, exc)
            return None
        log.info("ACL version %d picked up from %s", acl.version, path)
        self._notify()
        return acl

    # --------------------------------------------------------------------- helpers
    @staticmethod
    def _file_stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _notify(self) -> None:
        for callback in list(self.on_change):
            try:
                callback()
            except Exception:
                log.exception("ACL change callback failed")

    def _load_acl(self) -> None:
        """Re-verify the stored ACL. A bad one is logged and ignored (fail closed: owner only)."""
        path = self.state_dir / ACL_FILE
        if not path.exists():
            return
        self._stamp = self._file_stamp(path)
        if self._owner is None:
            log.error("%s exists but no owner is pinned; ignoring it", path)
            return
        try:
            mark = read_mark(self.state_dir, self._owner.id)  # before the file: then file >= mark
            with path.open("rb") as fh:
                data = fh.read(MAX_ACL_BYTES + 1)
            acl = verify_acl(
                data.decode("utf-8"),
                owner=self._owner,
                gateway_id=self.gateway_id,
                installed_version=None,
            )
            _check_mark(acl, mark)
            self._current = acl
        except (OSError, UnicodeDecodeError, AclError) as exc:
            log.error("%s refused at load, only the owner has access: %s", path, exc)


def _version_of(text: str) -> int | None:
    try:
        return read_acl_unverified(text).version
    except AclError:
        return None


def _check_mark(acl: Acl, mark: int | None) -> None:
    """Refuse an acl.jws below the highest version ever accepted (replaced behind our back)."""
    if mark is not None and acl.version < mark:
        raise AclError(
            f"ACL version {acl.version} is below version {mark}, which was accepted before",
            code="acl_rollback",
        )
