"""Structured logs: to the systemd journal (native protocol) when systemd runs us, JSON lines or
plain text otherwise. `gateway.cli.common.setup_logging` is the one place that installs them.

Format, chosen by ``$STREEMBIT_LOG_FORMAT`` (``auto`` when unset):
  journal  one datagram per record to journald's socket, with fields MESSAGE, PRIORITY,
           SYSLOG_IDENTIFIER, LOGGER, CODE_FILE/LINE/FUNC, THREAD, and STREEMBIT_<KEY> for each
           ``extra={...}`` key (`journalctl -u streembit-gateway -o json` shows them)
  json     one JSON object per line on stderr: ts, level, logger, msg, and the extras
  text     "time LEVEL logger: message" on stderr (the default outside systemd)
  auto     journal when stderr is connected to the journal ($JOURNAL_STREAM names stderr's
           device and inode, as systemd sets it) and its socket exists; else text
If a journal datagram cannot be sent (journald restarting), the record goes to stderr instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TextIO

JOURNAL_SOCKET: Final = Path("/run/systemd/journal/socket")
SYSLOG_IDENTIFIER: Final = "streembit-gateway"
FORMATS: Final = ("auto", "journal", "json", "text")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_FIELD: Final = 16 * 1024  # bytes of one field; longer values (huge tracebacks) are cut
_PRIORITY: Final = {  # logging level -> syslog priority
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
#: LogRecord attributes that are not `extra=` keys.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _field(name: str, value: object) -> bytes:
    """One field of the journal's native protocol; values with a newline use the binary form."""
    data = str(value).encode("utf-8", "replace")[:MAX_FIELD]
    key = name.encode("ascii")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


def _field_name(key: str) -> str:
    clean = "".join(c if c.isalnum() else "_" for c in key.upper())
    return f"STREEMBIT_{clean}"[:64]


class JournalHandler(logging.Handler):
    """Log records as journal entries over journald's datagram socket (no libsystemd)."""

    def __init__(self, socket_path: Path = JOURNAL_SOCKET, fallback: TextIO | None = None):
        super().__init__()
        self.socket_path = str(socket_path)
        self.fallback = fallback
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def entry(self, record: logging.LogRecord) -> bytes:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        parts = [
            _field("MESSAGE", message),
            _field("PRIORITY", priority(record.levelno)),
            _field("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER),
            _field("LOGGER", record.name),
            _field("CODE_FILE", record.pathname),
            _field("CODE_LINE", record.lineno),
            _field("CODE_FUNC", record.funcName),
            _field("THREAD", record.threadName),
        ]
        parts += [_field(_field_name(k), v) for k, v in extras(record).items()]
        return b"".join(parts)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sock.sendto(self.entry(record), self.socket_path)
        except OSError:
            if self.fallback is not None:
                print(
                    f"<{priority(record.levelno)}>{record.name}: {record.getMessage()}",
                    file=self.fallback,
                    flush=True,
                )
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (unix seconds), level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extras(record).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


def on_journal(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when STREAM (stderr) is the journal stream systemd connected ($JOURNAL_STREAM)."""
    env = os.environ if environ is None else environ
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def choose_format(
    wanted: str | None = None,
    environ: Mapping[str, str] | None = None,
    journal_socket: Path = JOURNAL_SOCKET,
) -> str:
    env = os.environ if environ is None else environ
    fmt = (wanted or env.get("STREEMBIT_LOG_FORMAT") or "auto").lower()
    if fmt not in FORMATS:
        fmt = "auto"
    if fmt == "auto":
        fmt = "journal" if on_journal(env) and journal_socket.exists() else "text"
    return fmt


def build_handler(fmt: str, journal_socket: Path = JOURNAL_SOCKET) -> logging.Handler:
    if fmt == "journal":
        return JournalHandler(journal_socket, fallback=sys.stderr)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    return handler
