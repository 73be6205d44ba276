"""Factory reset: needs physical presence, wipes keys, owner, ACL, setup code and pairings.

Two ways in, both local:

- `streembit-gateway reset --state DIR` run on the device as the gateway service's user (the
  owner of the state folder, or root). It refuses while a gateway runs on the folder (the
  StateDir ``.lock`` is held): stop the service first, or use the button.
- `ResetButton`: a long press (`hold_time`, default 10 s) of a GPIO button wired to the running
  gateway, which resets its own state folder, forgets its owner in memory and then calls
  `on_done` (the service stops; systemd starts it again with a fresh identity).

What is wiped: `WIPED_FILES`. What is kept: the audit log (with a record of the reset) and the
Things' saved settings. Nothing of this is reachable from the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from gateway.acl import AclStore
from gateway.acl.install import install_lock
from gateway.audit import AUDIT_FILE, AuditLog
from gateway.errors import ProvisioningError, StreembitError
from gateway.provisioning.events import audit_local, record
from gateway.provisioning.locking import provisioning_lock
from gateway.state import StateDir

log = logging.getLogger(__name__)

#: Files a factory reset deletes from the state folder.
WIPED_FILES: Final = (
    "gateway.key",
    "gateway.key.pub",
    "owner.pub",
    "acl.jws",
    "acl.version",  # the ACL's version high-water mark (gateway.acl.install)
    "setup-code.json",
    "pairings.json",
    "transfers.json",
)
KEPT_FILES: Final = (AUDIT_FILE,)
DEFAULT_HOLD_S: Final = 10.0  # a long press: nobody resets a gateway by brushing against it


def _check_user(path: Path) -> None:
    uid = os.geteuid()
    owner = path.stat().st_uid
    if uid not in (0, owner):
        raise ProvisioningError(
            f"{path} belongs to uid {owner}: run the reset as the gateway service's user "
            "(e.g. sudo -u streembit streembit-gateway reset ...)",
            code="not_service_user",
        )


def _wipe(path: Path) -> list[str]:
    removed: list[str] = []
    with provisioning_lock(path), install_lock(path):  # no ACL install lands after the wipe
        for name in WIPED_FILES:
            try:
                (path / name).unlink()
            except FileNotFoundError:
                continue
            removed.append(name)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return removed


def factory_reset(
    state_dir: Path,
    *,
    by: str | None = None,
    running_gateway: bool = False,
    audit: AuditLog | None = None,
) -> list[str]:
    """Wipe the state folder (see the module docstring); returns the names removed.

    RUNNING_GATEWAY: the caller is the gateway that holds the state lock (the button); otherwise
    the lock must be free and is held during the wipe. BY names who reset it, for the audit."""
    path = Path(state_dir).expanduser().absolute()
    if not path.is_dir():
        raise ProvisioningError(f"{path}: no such state folder", code="no_state")
    state = StateDir(path)
    try:
        if not running_gateway:
            _check_user(path)
            try:
                state.lock()
            except StreembitError as exc:
                if exc.code != "state_locked":
                    raise
                raise ProvisioningError(
                    f"{path}: a gateway is running on this state folder; stop it first "
                    "(or hold its reset button)",
                    code="gateway_running",
                ) from None
        removed = _wipe(path)
    except StreembitError as exc:  # refused (running, not the service user, unsafe folder)
        audit_local(
            path,
            record("reset", allowed=False, reason=f"{exc.code}: {exc}", subject=by),
            audit,
        )
        raise
    finally:
        if not running_gateway:
            state.unlock()
    detail = f"removed {', '.join(removed) or 'nothing'}; kept the audit log"
    audit_local(path, record("reset", allowed=True, reason="ok", detail=detail, subject=by), audit)
    log.warning("factory reset of %s by %s: %s", path, by or "local user", detail)
    return removed


class ResetButton:
    """A GPIO button whose long press runs ON_HELD once per press (on a gpiozero thread).

    PIN_FACTORY is gpiozero's (None: its default; tests pass a MockFactory)."""

    def __init__(
        self,
        pin: int | str,
        on_held: Callable[[], None],
        *,
        hold_time: float = DEFAULT_HOLD_S,
        pull_up: bool = True,
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button  # imported here: only the gateway with a button needs it

        if hold_time <= 0:
            raise ValueError("hold_time must be positive")
        self.on_held = on_held
        self.fired = threading.Event()
        self._button = Button(
            pin, pull_up=pull_up, hold_time=hold_time, bounce_time=None, pin_factory=pin_factory
        )
        self._button.when_held = self._held

    def _held(self) -> None:
        try:
            self.on_held()
        except Exception:
            log.exception("reset button action failed")
        finally:
            self.fired.set()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._button.close()


def gateway_reset(
    state_dir: Path, acl: AclStore, audit: AuditLog | None, on_done: Callable[[], None]
) -> Callable[[], None]:
    """The button action of a running gateway: wipe its own state folder, forget the owner and
    the ACL in memory (nobody has access from here on), then ON_DONE (e.g. stop the service)."""

    def action() -> None:
        try:
            factory_reset(state_dir, by="button", running_gateway=True, audit=audit)
        finally:
            acl.forget()
            on_done()

    return action
