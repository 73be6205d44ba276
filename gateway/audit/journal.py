"""The audit log's append journal: the file where a record first becomes durable.

One process owns the journal at a time (an exclusive `flock` held while it is open). The owner
appends one line per record (`record.encode_line`: a sequence number, the cleaned row, a CRC)
with ONE `os.write` on an O_APPEND descriptor, and makes lines durable with `fdatasync`, one per
batch. Lines are imported into SQLite later, in batches; a line's sequence number says whether
SQLite already holds it, so importing again after a crash is harmless.

Failure handling:
- a write that fails writes nothing (O_APPEND); a short write (a full disk, a file size limit)
  is cut back to the last whole line, so a later line never follows a torn one. If even that
  fails, the journal refuses every further write until it is opened again.
- at open, a last line cut short by a crash is cut off (`recover`), and lines that do not
  decode (a CRC mismatch) are skipped and counted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from gateway.audit.record import Row, decode_line
from gateway.errors import AuditError

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal"  # beside the database: audit.sqlite3.journal
FILE_MODE = 0o600  # who did what and when is private to the gateway user

Entry = tuple[int, Row]  # (sequence number, row)


def journal_path(db_path: Path) -> Path:
    """Where the journal of the database at DB_PATH lives."""
    return db_path.with_name(db_path.name + JOURNAL_SUFFIX)


def parse(data: bytes) -> tuple[list[Entry], int, int]:
    """(entries in file order with increasing seq, end offset of the last whole line, skipped).

    Bytes after the last newline are a torn line and are not decoded. Lines that do not decode,
    or whose sequence number does not increase, are skipped and counted."""
    entries: list[Entry] = []
    skipped = 0
    pos = 0
    last = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        got = decode_line(data[pos:nl])
        if got is None or got[0] <= last:
            skipped += 1
        else:
            entries.append(got)
            last = got[0]
        pos = nl + 1
    return entries, pos, skipped


def read_entries(path: Path) -> list[Entry]:
    """Every whole, valid line of the journal at PATH (read-only; [] when there is none).

    For readers in any process: the owner may be appending meanwhile, so a torn last line is
    expected and ignored."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the audit journal: {exc}") from None
    return parse(data)[0]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The owner's handle on the journal. Create with `Journal.acquire(path)`."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size  # bytes of whole lines in the file
        self.broken = False  # a torn line could not be cut back: refuse writes until reopened

    @classmethod
    def acquire(cls, path: Path) -> Journal | None:
        """Open and lock the journal at PATH (creating it durably); None if another open
        handle (this process or another) holds it. OSError if it cannot be opened."""
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            if created:
                _fsync_dir(path.parent)  # the new name itself must survive a power cut
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, size)

    def recover(self) -> tuple[list[Entry], int]:
        """(the journal's valid entries, lines skipped), after cutting off a torn last line."""
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = os.pread(self.fd, 1 << 20, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
        entries, end, skipped = parse(data)
        if end < len(data):
            log.warning("%s: cutting off a torn last line (%d bytes)", self.path, len(data) - end)
            os.ftruncate(self.fd, end)
            os.fdatasync(self.fd)
        self.size = end
        return entries, skipped

    def write(self, line: bytes) -> None:
        """Append LINE with one write; AuditError if not all of it was written."""
        if self.broken:
            raise AuditError("the audit journal has a torn line that could not be cut off")
        try:
            n = os.write(self.fd, line)
        except OSError as exc:
            raise AuditError(f"audit write failed: {exc.strerror or exc}") from None
        if n == len(line):
            self.size += n
            return
        try:  # a torn line must never be followed by another one
            os.ftruncate(self.fd, self.size)
        except OSError as exc:
            self.broken = True
            log.error("%s: cannot cut off a torn line: %s", self.path, exc)
        raise AuditError(f"audit write failed: {os.strerror(errno.ENOSPC)} (short write)")

    def sync(self) -> None:
        """Make every line written so far durable (OSError if the device says it is not)."""
        os.fdatasync(self.fd)

    def reset(self) -> None:
        """Empty the journal (once SQLite durably holds every line in it)."""
        os.ftruncate(self.fd, 0)
        self.size = 0

    def close(self) -> None:
        """Close the descriptor (which releases the lock)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
