"""Use counts of delegation links with a ``uses`` limit, in SQLite in the state folder.

A use is counted at decision time, when the decision allows the request (before the device
is driven): one transaction checks and increments every limited link of the chain, so a
chain is never used past the smallest remaining count, and a refused use counts nothing.
Counts are keyed by the link's issuer and jti (not by its text: an ECDSA signature has two
valid forms, so the same link can be presented as two texts).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from gateway.acl.delegation import Chain, Link, _err
from gateway.codes import Code

DB_NAME = "delegation-uses.sqlite3"


def use_key(link: Link) -> str:
    """The key of a link's use count: its issuer and jti (the same link in any encoding)."""
    return f"{link.iss}/{link.jti}"


class UseCounter:
    """Persistent per-link use counts; `consume` raises DelegationError(delegation_used_up)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = Path(state_dir) / DB_NAME
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS uses (link TEXT PRIMARY KEY, n INTEGER)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=5, isolation_level=None)

    def used(self, link: Link) -> int:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT n FROM uses WHERE link = ?", (use_key(link),)).fetchone()
        return int(row[0]) if row else 0

    def consume(self, chain: Chain) -> None:
        """Count one use on every limited link, or none if one of them is used up."""
        limited = [(use_key(link), link.uses) for link in chain.links if link.uses is not None]
        if not limited:
            return
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                for key, limit in limited:
                    row = db.execute("SELECT n FROM uses WHERE link = ?", (key,)).fetchone()
                    n = int(row[0]) if row else 0
                    if n >= limit:
                        db.execute("ROLLBACK")
                        raise _err(Code.DELEGATION_USED_UP, "a link's use count is exhausted")
                    db.execute(
                        "INSERT INTO uses (link, n) VALUES (?, 1) "
                        "ON CONFLICT(link) DO UPDATE SET n = n + 1",
                        (key,),
                    )
                db.execute("COMMIT")
            finally:
                db.close()
