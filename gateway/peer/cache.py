"""A cache of gateways' signed contact records, so a one-shot peer command skips the DHT.

    cache = ContactCache()                   # $XDG_CACHE_HOME/streembit/contacts (~/.cache/...)
    conn = await connect_by_id(client, gateway_id, bootstrap=[("192.0.2.1", 4242)], cache=cache)

One file per gateway, `<id>.json` = `{"v": 1, "record": "<the compact JWS as found in the DHT>"}`,
mode 0600 in a 0700 folder, written atomically (gateway/storage.py). The file is trusted no more
than a DHT answer: every load verifies the record again (`verify_record`: signed by the key whose
id it is filed under, not expired), so an edited, foreign or expired file is ignored, with one
warning for a file that fails verification, and the caller looks the gateway up in the DHT as if
there were no cache. A file others can write is ignored as well. A saved record never replaces a
cached one with a higher sequence number.

`connect_by_id` tries the cached record's addresses first (each within
`CACHED_CONNECT_TIMEOUT_S`); when none answers, or nothing is cached, it looks the gateway up in
the DHT (`gateway.peer.find`), connects to the record found and caches it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from gateway import jsonsafe
from gateway.errors import P2PError
from gateway.identity.keys import is_id
from gateway.p2p.records import MAX_RECORD_BYTES, verify_record
from gateway.peer.client import PeerClient, PeerConnection
from gateway.peer.errors import PeerConnectionError
from gateway.peer.find import Address, Contact, connect, contact_of, ephemeral_dht, find_contact
from gateway.storage import atomic_write_text

__all__ = [
    "CACHED_CONNECT_TIMEOUT_S",
    "ContactCache",
    "connect_by_id",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

# A cached address that does not answer this fast is given up for a fresh DHT lookup (which
# then connects with the full CONNECT_TIMEOUT_S): a gateway that moved should cost little.
CACHED_CONNECT_TIMEOUT_S: Final = 3.0
FORMAT: Final = 1
# A cache file holds one record and a few bytes of JSON around it.
MAX_FILE_BYTES: Final = MAX_RECORD_BYTES + 256
_FILE_LIMITS: Final = jsonsafe.JsonLimits(max_bytes=MAX_FILE_BYTES, max_depth=2)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/streembit/contacts; ~/.cache/... when unset or not absolute (XDG)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "streembit" / "contacts"


class ContactCache:
    """Verified contact records by gateway id, in FOLDER (default: `default_cache_dir()`)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    @classmethod
    def for_user(cls) -> ContactCache | None:
        """The user's cache; None (no cache) when neither $XDG_CACHE_HOME nor a home is known."""
        try:
            return cls()
        except (RuntimeError, KeyError):  # Path.home(): no $HOME and no passwd entry
            log.info("no home folder: contact records are not cached")
            return None

    def path(self, gateway_id: str) -> Path:
        if not is_id(gateway_id):  # an id is 43 base64url characters: never a path
            raise P2PError(f"not a gateway id: {gateway_id[:60]!r}", code="bad_id")
        return self.folder / f"{gateway_id}.json"

    def load(self, gateway_id: str) -> Contact | None:
        """The cached contact of GATEWAY_ID, verified now; None (and why, logged) if none is
        usable: missing, expired, or refused (a one-line warning)."""
        contact, problem = self._read(gateway_id)
        if problem == "record_expired":
            log.info("the cached contact record of %s expired; using the DHT", gateway_id)
        elif problem is not None:
            path = self.path(gateway_id)
            log.warning("contact cache %s refused (%s); using the DHT", path, problem)
        return contact

    def _read(self, gateway_id: str) -> tuple[Contact | None, str | None]:
        """(the verified cached contact, None) or (None, why not; None when not cached)."""
        path = self.path(gateway_id)
        try:
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                data = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"unreadable: {exc.strerror or exc}"
        if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None, "writable by others"
        try:
            doc = jsonsafe.loads_object(data, _FILE_LIMITS, what=str(path))
            record = doc.get("record")
            if doc.get("v") != FORMAT or not isinstance(record, str):
                return None, "not a contact cache file"
            return contact_of(verify_record(record, key=gateway_id), gateway_id), None
        except P2PError as exc:
            return None, exc.code
        except jsonsafe.JsonInputError as exc:
            return None, exc.problem

    def save(self, contact: Contact) -> None:
        """Cache CONTACT (a verified record) unless a newer record of it is cached.

        A cache that cannot be written only costs the next command a DHT lookup: logged."""
        rec = contact.record
        current, _problem = self._read(rec.id)  # a refused file is simply replaced
        if current is not None and current.record.newer_than(rec):
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            body = json.dumps({"v": FORMAT, "record": rec.text}) + "\n"
            atomic_write_text(self.path(rec.id), body, mode=0o600)
        except OSError as exc:
            log.warning("cannot write the contact cache in %s (%s)", self.folder, exc.strerror)


async def connect_by_id(
    client: PeerClient,
    gateway_id: str,
    *,
    bootstrap: Sequence[Address],
    host: str | None = None,
    cache: ContactCache | None = None,
) -> PeerConnection:
    """Connect to the gateway GATEWAY_ID: through its cached record if one is cached and
    answers, else through the record the DHT holds (joined through BOOTSTRAP from HOST, as
    `ephemeral_dht`), which is then cached. CACHE None: always the DHT, nothing cached."""
    if cache is not None:
        cached = cache.load(gateway_id)
        if cached is not None:
            try:
                return await connect(client, cached, timeout_s=CACHED_CONNECT_TIMEOUT_S)
            except PeerConnectionError as exc:
                log.info("cached addresses of %s failed (%s); asking the DHT", gateway_id, exc)
    async with ephemeral_dht(bootstrap, host) as dht:
        contact = await find_contact(dht, gateway_id)
    if cache is not None:
        cache.save(contact)
    return await connect(client, contact)
