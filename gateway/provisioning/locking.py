"""One lock for the provisioning files of a state folder, shared by every process.

The running gateway (a claim or a transfer arriving over the network) and the local commands
(`qr`, `provision`, `reset`, companion pairing) read-modify-write the same small files; this
`flock` on ``.provisioning.lock`` serialises them. Holders keep it for milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from gateway.errors import ProvisioningError

LOCK_FILE: Final = ".provisioning.lock"
LOCK_TIMEOUT_S: Final = 2.0  # holders keep the lock for milliseconds; longer means stuck
_POLL_S: Final = 0.01


@contextlib.contextmanager
def provisioning_lock(state_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the state folder's provisioning lock; ProvisioningError("busy") after TIMEOUT_S."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ProvisioningError(
            f"{path}: cannot open the provisioning lock: {exc.strerror}", code="state_io"
        ) from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ProvisioningError(
                        "another provisioning operation is in progress; try again", code="busy"
                    ) from None
                time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
