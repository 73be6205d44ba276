"""systemd's service notification protocol (sd_notify(3)) with the standard library only.

With `Type=notify` systemd passes the path of a datagram socket in ``$NOTIFY_SOCKET`` (a path, or
an abstract socket name starting with "@"). The service sends newline-separated ``KEY=value``
lines: ``READY=1`` once it serves, ``STATUS=...`` for `systemctl status`, ``WATCHDOG=1`` at least
every ``$WATCHDOG_USEC`` microseconds when the unit has ``WatchdogSec=`` (we send at half of
it), and ``STOPPING=1`` when it begins to shut down. Without ``$NOTIFY_SOCKET`` every call is a
no-op, so the same code runs outside systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Final

log = logging.getLogger(__name__)

MAX_DATAGRAM: Final = 4096  # our messages are a few dozen bytes; STATUS text is capped to fit
MIN_WATCHDOG_S: Final = 0.05  # never spin faster than this, whatever WATCHDOG_USEC says


class Notifier:
    """Sends notifications to one socket; every send is best effort (a lost one is logged)."""

    def __init__(self, address: str) -> None:
        if not address or address[0] not in "/@":
            raise ValueError(f"NOTIFY_SOCKET {address!r} is neither a path nor @abstract")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sent = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        try:
            return cls(address)
        except ValueError as exc:
            log.warning("ignoring NOTIFY_SOCKET: %s", exc)
            return None

    def send(self, *fields: str) -> bool:
        """Send FIELDS ("READY=1", "STATUS=...") as one datagram; False if it failed."""
        data = "\n".join(fields).encode("utf-8", "replace")[:MAX_DATAGRAM]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self.address)
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", fields[0] if fields else "", exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={_oneline(status)}")
        return self.send(*fields)

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_oneline(text)}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={_oneline(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    async def run_watchdog(
        self, interval_s: float, healthy: Callable[[], bool] = lambda: True
    ) -> None:
        """Send WATCHDOG=1 every INTERVAL_S while HEALTHY() (runs until cancelled). Because it
        runs on the event loop, a blocked loop stops the pings and systemd restarts us."""
        interval_s = max(interval_s, MIN_WATCHDOG_S)
        while True:
            if healthy():
                self.watchdog()
            else:
                log.error("not healthy: watchdog ping withheld")
            await asyncio.sleep(interval_s)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, or None when no watchdog is asked for us.
    ($WATCHDOG_PID, when set, must be our pid: the variable may be inherited by a child.)"""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 2


def _oneline(text: str) -> str:
    return " ".join(text.split())[:400]
