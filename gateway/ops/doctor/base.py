"""What a doctor check returns, and the helpers every check uses."""

from __future__ import annotations

import os
import pwd
from dataclasses import asdict, dataclass
from typing import Final, Literal

Status = Literal["ok", "warn", "fail"]

CONNECT_TIMEOUT_S: Final = 2.0  # TCP and MQTT handshakes with local services, SQLite's lock wait


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _warn(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "warn", detail, fix)


def _fail(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "fail", detail, fix)


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
