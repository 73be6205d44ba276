"""Router port mapping (issue 12): PCP (RFC 6887), NAT-PMP (RFC 6886) and UPnP-IGD, with lease
renewal and removal at stop; see docs/reach.md, "Port mapping". UPnP's library
(async-upnp-client) is imported only when a UPnP mapping is attempted."""

from gateway.reach.portmap.mapper import LEASE_S, STOP_TIMEOUT_S, TIMEOUTS_S, Method, PortMapper
from gateway.reach.portmap.model import Backend, Granted, Mapping, PortmapEvent, Proto
from gateway.reach.portmap.natpmp import MapReply, PublicReply, parse_reply
from gateway.reach.portmap.route import default_gateway, parse_default_gateway

__all__ = [
    "LEASE_S",
    "STOP_TIMEOUT_S",
    "TIMEOUTS_S",
    "Backend",
    "Granted",
    "MapReply",
    "Mapping",
    "Method",
    "PortMapper",
    "PortmapEvent",
    "Proto",
    "PublicReply",
    "default_gateway",
    "parse_default_gateway",
    "parse_reply",
]
