"""The broker's address and account, and the companion's topic names: what the gateway needs to
describe its MQTT side without loading paho (`mqtt` connects; this module only names things).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from device_drivers.errors import DriverConfigError


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None  # the broker's certificate (or its CA), PEM; pinned when given
    client_id: str = ""
    keepalive_s: int = 30


def parse_broker(text: str) -> tuple[str, int, bool]:
    """'mqtts://host:port', 'mqtt://host:port' or 'host:port' -> (host, port, tls)."""
    tls = False
    rest = text.strip()
    for scheme, is_tls in (("mqtts://", True), ("mqtt://", False)):
        if rest.startswith(scheme):
            rest, tls = rest[len(scheme) :], is_tls
            break
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DriverConfigError(f"broker {text!r} is not [mqtt[s]://]HOST:PORT")
    return host.strip("[]"), int(port), tls


def topic_root(gateway_id: str) -> str:
    """The topic under which a gateway's companion boards talk to it."""
    return f"streembit/{gateway_id}/companion"
