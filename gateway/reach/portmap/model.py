"""What the port mapper hands out (`Mapping`, `PortmapEvent`) and what each method implements
(`Backend`), plus the checks shared by the PCP, NAT-PMP and UPnP-IGD clients."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from gateway.codes import Code
from gateway.errors import ReachError

Proto = Literal["tcp", "udp"]
PROTOS: Final[tuple[Proto, ...]] = ("tcp", "udp")
EventKind = Literal["changed", "lost", "restored"]

# Addresses a router may report as "external" that the internet cannot reach: the router sits
# behind another NAT (RFC 1918 LANs, RFC 6598 carrier-grade NAT) or has no WAN address yet.
# (203.0.113.0/24 and the other documentation ranges are NOT listed: the NAT lab uses one.)
NOT_PUBLIC: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/3",
    )
)


@dataclass(frozen=True)
class Mapping:
    """One port the router forwards: `external_ip:external_port` -> this host's internal_port.
    `lifetime_s` is the lease granted (0: permanent, the router had no leases); `expires_at`
    is wall-clock (time.time()) for ops pages, infinite for a permanent mapping."""

    proto: Proto
    internal_port: int
    external_ip: str
    external_port: int
    lifetime_s: int
    expires_at: float
    method: str  # "pcp", "natpmp" or "upnp"

    @property
    def external(self) -> str:
        return f"{self.external_ip}:{self.external_port}"

    def as_dict(self) -> dict[str, object]:
        return {
            "proto": self.proto,
            "internal_port": self.internal_port,
            "external_ip": self.external_ip,
            "external_port": self.external_port,
            "lifetime_s": self.lifetime_s,
            "expires_at": None if math.isinf(self.expires_at) else round(self.expires_at, 3),
            "method": self.method,
        }


@dataclass(frozen=True)
class PortmapEvent:
    """Given to each `PortMapper.on_change` callback. `changed`: the external address or a port
    differs from before; `lost`: a lease ran out without a renewal (the old addresses no longer
    work); `restored`: mapped again after a loss. `mappings` are the current ones (after a loss:
    the last ones known)."""

    kind: EventKind
    mappings: tuple[Mapping, ...]
    reason: str


@dataclass(frozen=True)
class Granted:
    """A backend's answer to one mapping request. `external_ip`: the address the router named
    in that answer (PCP); None where it is asked for separately (`Backend.external_address`)."""

    external_port: int
    lifetime_s: int
    external_ip: str | None = None


class Backend(Protocol):
    """One mapping method talking to one router (PCP, NAT-PMP or UPnP-IGD). Every method raises
    ReachError (PORTMAP_UNAVAILABLE or PORTMAP_REFUSED; `NoAnswer` when nothing answered at all)
    and nothing else on purpose; the caller bounds each call with a timeout."""

    method: str

    async def external_address(self) -> str: ...

    async def map(
        self, proto: Proto, internal_port: int, external_port: int, lease_s: int
    ) -> Granted:
        """Map (or renew) internal_port, asking for external_port (the router may pick another)."""
        ...

    async def unmap(self, proto: Proto, internal_port: int, external_port: int) -> None: ...

    async def close(self) -> None: ...


class NoAnswer(ReachError):
    """PORTMAP_UNAVAILABLE because nothing answered at all (silence, or no listener on the port),
    as opposed to a router that answered that it does not do this."""

    code: str = Code.PORTMAP_UNAVAILABLE


def unavailable(message: str) -> ReachError:
    return ReachError(message, code=Code.PORTMAP_UNAVAILABLE)


def refused(message: str) -> ReachError:
    return ReachError(message, code=Code.PORTMAP_REFUSED)


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"a port is an int in 1..65535, not {port!r}")
    return port


def check_public(ip: str, method: str) -> str:
    """IP if the internet can reach it, else PORTMAP_UNAVAILABLE (a NAT in front of the router,
    or no WAN address yet): publishing it would only send peers nowhere."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise unavailable(f"{method}: the router reported no usable external address") from None
    if any(addr in net for net in NOT_PUBLIC):
        raise unavailable(
            f"{method}: the router's external address {addr} is not public "
            "(another NAT in front, or no WAN address yet)"
        )
    return str(addr)
