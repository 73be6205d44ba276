"""Make untrusted strings safe to log or show: `device_drivers.text.clean`, the one cleaner."""

from __future__ import annotations

from device_drivers.text import DEFAULT_CAP as PEER_STRING_CAP
from device_drivers.text import clean

__all__ = ["PEER_STRING_CAP", "clean"]
