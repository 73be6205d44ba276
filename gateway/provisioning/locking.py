"""One lock for the provisioning files of a state folder, shared by every process.

The running gateway (a claim or a transfer arriving over the network) and the local commands
(`qr`, `provision`, `reset`, companion pairing) read-modify-write the same small files; this
`flock` on ``.provisioning.lock`` serialises them. Holders keep it for milliseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from gateway.errors import ProvisioningError
from gateway.locks import held_flock

LOCK_FILE: Final = ".provisioning.lock"
LOCK_TIMEOUT_S: Final = 2.0  # holders keep the lock for milliseconds; longer means stuck


@contextlib.contextmanager
def provisioning_lock(state_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the state folder's provisioning lock; ProvisioningError("busy") after TIMEOUT_S."""
    path = Path(state_dir) / LOCK_FILE
    busy = "another provisioning operation is in progress; try again"
    with held_flock(path, timeout_s, ProvisioningError, ("state_io", "busy"), busy):
        yield
