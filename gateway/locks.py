"""An exclusive ``flock`` on a file in the state folder, waited for up to a deadline.

Used by the locks that several processes share (the ACL install lock, the provisioning lock):
holders keep them for milliseconds, so a lock still held at the deadline is stuck and the
caller is refused with its own "busy" error. Waiting blocks the calling thread (jittered
polling): call it from a worker thread in the gateway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from device_drivers.backoff import Backoff

__all__ = ["held_flock"]


class CodedError(Protocol):
    """An error class of the gateway: `AclError(message, code=...)`, `ProvisioningError`, ..."""

    def __call__(self, message: str, *, code: str) -> Exception: ...


@contextlib.contextmanager
def held_flock(
    path: Path, timeout_s: float, error: CodedError, codes: tuple[str, str], busy: str
) -> Iterator[None]:
    """Hold an exclusive flock on PATH (created 0600) while the block runs.

    CODES are (cannot open PATH, still held after TIMEOUT_S seconds) of the refusals, raised as
    ERROR(message, code=...); BUSY is the second's message. Closing the descriptor releases
    the lock."""
    io_code, busy_code = codes
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise error(f"{path}: cannot open the lock file: {exc.strerror}", code=io_code) from None
    try:
        deadline = time.monotonic() + timeout_s
        backoff = Backoff(initial_s=0.002, cap_s=0.05)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise error(busy, code=busy_code) from None
                time.sleep(min(backoff.next(), left))
        yield
    finally:
        os.close(fd)
