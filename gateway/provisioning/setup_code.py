"""The gateway's one-time setup code, its failure counter and the growing claim lockout.

Stored in ``setup-code.json`` in the state folder (mode 0600, written atomically, under the
provisioning lock), so neither a restart nor a second process resets the counter or the lockout::

    {"v": 1, "code": "<hex>" | null, "created": <unix s>, "used": false,
     "failures": 0, "locked_until": <unix s>}

The code is 80 random bits (`SETUP_CODE_BYTES`). It works once: a successful claim marks it
used. The first `FREE_FAILURES` wrong codes are only counted; each further one locks claiming
for `BASE_LOCKOUT_S * 2**(failures - FREE_FAILURES - 1)` seconds (30 s, 60 s, 120 s, ...), at
most `MAX_LOCKOUT_S`. While locked, claims are refused without looking at the code (and are
not counted). A factory reset deletes the file.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from gateway import jsonsafe
from gateway.errors import ProvisioningError
from gateway.provisioning.locking import provisioning_lock
from gateway.provisioning.payload import SETUP_CODE_BYTES
from gateway.storage import atomic_write_text

SETUP_FILE: Final = "setup-code.json"
FILE_MODE: Final = 0o600  # holds the code: private to the gateway user
FREE_FAILURES: Final = 3  # typos happen; from the 4th wrong code on, claiming locks
BASE_LOCKOUT_S: Final = 30.0  # first lockout; doubles with every further failure
MAX_LOCKOUT_S: Final = 24 * 3600.0  # never longer than a day (a reset clears it at once)
MAX_FILE_BYTES: Final = 4096

Clock = Callable[[], float]


def lockout_for(failures: int) -> float:
    """Seconds claiming stays locked after the FAILURES-th wrong code."""
    if failures <= FREE_FAILURES:
        return 0.0
    return min(BASE_LOCKOUT_S * 2.0 ** (failures - FREE_FAILURES - 1), MAX_LOCKOUT_S)


def format_code(code: bytes) -> str:
    """The code for people: RFC 4648 base32 in groups of four, e.g. ``ABCD-EFGH-IJKL-MNOP``."""
    text = base64.b32encode(code).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


@dataclass
class SetupState:
    code: str | None = None  # hex
    created: float = 0.0
    used: bool = False
    failures: int = 0
    locked_until: float = 0.0

    @property
    def code_bytes(self) -> bytes | None:
        return bytes.fromhex(self.code) if self.code else None

    def __repr__(self) -> str:  # never show the code
        return (
            f"SetupState(code=<{'set' if self.code else 'none'}>, used={self.used}, "
            f"failures={self.failures}, locked_until={self.locked_until})"
        )


@dataclass(frozen=True)
class ClaimStatus:
    """What may be shown about the setup code (never the code itself)."""

    has_code: bool
    used: bool
    failures: int
    locked_for_s: float


class SetupCodeStore:
    """The setup-code file of one state folder."""

    def __init__(self, state_dir: Path, *, clock: Clock = time.time) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / SETUP_FILE
        self.clock = clock

    # ----------------------------------------------------------------- file
    def _load(self) -> SetupState:
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return SetupState()
        except OSError as exc:
            raise ProvisioningError(
                f"{self.path}: cannot read: {exc.strerror}", code="state_io"
            ) from None
        try:
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError("too large")
            doc: Any = jsonsafe.loads(raw, jsonsafe.FILE_LIMITS)
            if not isinstance(doc, dict) or doc.get("v") != 1:
                raise ValueError("not a version 1 setup-code file")
            code = doc.get("code")
            if code is not None and (
                not isinstance(code, str) or len(bytes.fromhex(code)) != SETUP_CODE_BYTES
            ):
                raise ValueError("bad code")
            failures = doc.get("failures", 0)
            if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
                raise ValueError("bad failures")
            return SetupState(
                code=code,
                created=float(doc.get("created", 0.0)),
                used=bool(doc.get("used", False)),
                failures=failures,
                locked_until=float(doc.get("locked_until", 0.0)),
            )
        except (ValueError, TypeError):
            raise ProvisioningError(
                f"{self.path} is damaged; make a new setup code "
                "(streembit-gateway qr --new-code) or reset the gateway",
                code="setup_state_damaged",
            ) from None

    def _save(self, st: SetupState) -> None:
        doc = {"v": 1, **asdict(st)}
        try:
            atomic_write_text(self.path, json.dumps(doc, sort_keys=True) + "\n", mode=FILE_MODE)
        except OSError as exc:
            raise ProvisioningError(
                f"{self.path}: cannot write: {exc.strerror}", code="state_io"
            ) from None

    def _locked_for(self, st: SetupState) -> float:
        left = st.locked_until - self.clock()
        return max(0.0, min(left, MAX_LOCKOUT_S))  # a clock set back cannot lengthen it

    # ----------------------------------------------------------------- API
    def status(self) -> ClaimStatus:
        st = self._load()
        return ClaimStatus(st.code is not None, st.used, st.failures, self._locked_for(st))

    def current(self) -> bytes | None:
        """The unused setup code, or None."""
        st = self._load()
        return None if st.used else st.code_bytes

    def ensure(self, *, new: bool = False) -> bytes:
        """The unused setup code, made now if there is none (or if NEW). Keeps the counters."""
        with provisioning_lock(self.state_dir):
            try:
                st = self._load()
            except ProvisioningError:
                if not new:
                    raise
                st = SetupState(failures=FREE_FAILURES)  # damaged: keep nothing, trust nothing
            code = st.code_bytes
            if new or code is None or st.used:
                code = secrets.token_bytes(SETUP_CODE_BYTES)
                st.code, st.created, st.used = code.hex(), self.clock(), False
                self._save(st)
            return code

    def consume(self, verify: Callable[[bytes], bool], on_success: Callable[[], None]) -> None:
        """Check a claim: VERIFY(code) says whether it proves the code; then ON_SUCCESS runs
        and the code is spent. Raises ProvisioningError: `no_setup_code`, `setup_code_used`,
        `claim_locked` (message says for how long), or `bad_setup_code` (failure counted)."""
        with provisioning_lock(self.state_dir):
            st = self._load()
            code = st.code_bytes
            if code is None:
                raise ProvisioningError(
                    "this gateway has no setup code; show its QR first (streembit-gateway qr)",
                    code="no_setup_code",
                )
            if st.used:
                raise ProvisioningError("the setup code was already used", code="setup_code_used")
            locked = self._locked_for(st)
            if locked > 0:
                raise ProvisioningError(
                    f"claiming is locked for {locked:.0f} s after {st.failures} wrong setup codes",
                    code="claim_locked",
                )
            if not verify(code):
                st.failures += 1
                st.locked_until = self.clock() + lockout_for(st.failures)
                self._save(st)
                wait = lockout_for(st.failures)
                then = f"; claiming locked for {wait:.0f} s" if wait else ""
                raise ProvisioningError(
                    f"wrong setup code (failure {st.failures}){then}", code="bad_setup_code"
                )
            on_success()
            st.used = True
            self._save(st)

    def wipe(self) -> bool:
        """Delete the file (factory reset). True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
