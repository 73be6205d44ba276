"""UPnP-IGD port mapping through async-upnp-client: SSDP discovery on the LAN, the device and
service descriptions, then the WANIPConnection (or WANPPPConnection) SOAP actions
AddPortMapping, DeletePortMapping and GetExternalIPAddress.

Imported only when a mapping is attempted (gateway/reach/portmap/mapper.py). Every HTTP request
goes to the address that answered the SSDP search (a description pointing elsewhere is refused),
with a timeout and a cap on the body; the router's strings reach logs only through `clean`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Mapping as Map
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from async_upnp_client.client import UpnpAction, UpnpDevice, UpnpRequester, UpnpService
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.const import HttpRequest, HttpResponse
from async_upnp_client.exceptions import UpnpActionError, UpnpError
from async_upnp_client.search import SsdpSearchListener
from async_upnp_client.utils import CaseInsensitiveDict

from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.portmap.model import Granted, Proto, refused, unavailable
from gateway.reach.portmap.route import local_address
from gateway.text import clean

log = logging.getLogger(__name__)

SSDP_ADDR: Final = ("239.255.255.250", 1900)
SSDP_MX: Final = 1  # seconds a device may wait before answering (UDA 1.1: 1..5)
SSDP_WAIT_S: Final = 1.5  # the search's answer window: MX plus the LAN's round trip
SSDP_RESEND_S: Final = 0.4  # the M-SEARCH is sent twice (UDP may drop one)
HTTP_TIMEOUT_S: Final = 2.0  # one description or SOAP request to a router on the LAN
MAX_BODY: Final = 256 * 1024  # a description or SOAP reply; real IGDs send a few KiB
SEARCH_TARGET: Final = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
SERVICES: Final = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
ACTIONS: Final = ("AddPortMapping", "DeletePortMapping", "GetExternalIPAddress")
CONFLICT: Final = 718  # ConflictInMappingEntry: the external port is taken
ONLY_PERMANENT: Final = 725  # OnlyPermanentLeasesSupported (IGD v1 routers)
PORT_TRIES: Final = 3  # external ports tried when the one asked for is taken
DESCRIPTION: Final = "streembit-gateway"


class _CappedRequester(UpnpRequester):
    """HTTP for the UPnP library: only to HOST, bounded in time and size."""

    def __init__(self, session: aiohttp.ClientSession, host: str) -> None:
        self._session = session
        self._host = host

    async def async_http_request(self, http_request: HttpRequest) -> HttpResponse:
        url = urlsplit(http_request.url)
        if url.scheme != "http" or url.hostname != self._host:
            raise UpnpError("a URL outside the router that answered the search")
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with self._session.request(
                http_request.method,
                http_request.url,
                headers=dict(http_request.headers or {}),
                data=http_request.body,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(16384):
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise UpnpError("an oversized reply")
                text = body.decode(resp.charset or "utf-8", errors="replace")
                return HttpResponse(resp.status, dict(resp.headers), text)
        except (aiohttp.ClientError, TimeoutError, OSError, LookupError) as exc:
            raise UpnpError(type(exc).__name__) from None


def _valid_location(headers: CaseInsensitiveDict) -> tuple[str, str] | None:
    """(location URL, host) when the answer's LOCATION is plain HTTP on the answering host."""
    location = str(headers.get("location", ""))[:1024]
    remote = headers.get("_remote_addr")
    try:
        url = urlsplit(location)
        host = str(ipaddress.IPv4Address(url.hostname or ""))
        _ = url.port
    except ValueError:
        return None
    if url.scheme != "http" or not isinstance(remote, tuple) or not remote or remote[0] != host:
        return None
    return location, host


async def discover(gateway: str | None, local_ip: str) -> tuple[str, str]:
    """(description URL, host) of an IGD on the LAN: the default gateway's if it answers
    within SSDP_WAIT_S (then at once), else the first other IGD that answered."""
    found: list[tuple[str, str]] = []
    done = asyncio.Event()

    def on_answer(headers: CaseInsensitiveDict) -> None:
        if len(found) >= 8 or str(headers.get("st", "")) != SEARCH_TARGET:
            return
        hit = _valid_location(headers)
        if hit is not None:
            found.append(hit)
            if hit[1] == gateway:
                done.set()

    listener = SsdpSearchListener(
        callback=on_answer, source=(local_ip, 0), target=SSDP_ADDR, timeout=SSDP_MX,
        search_target=SEARCH_TARGET,
    )  # fmt: skip
    try:
        await listener.async_start()
    except (OSError, UpnpError) as exc:
        raise unavailable(f"upnp: cannot search the LAN: {type(exc).__name__}") from None
    try:
        for _ in range(2):
            listener.async_search()
            if gateway is not None:
                listener.async_search(override_target=(gateway, SSDP_ADDR[1]))
            try:
                await asyncio.wait_for(done.wait(), SSDP_RESEND_S)
                break
            except TimeoutError:
                continue
        if not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), SSDP_WAIT_S - 2 * SSDP_RESEND_S)
            except TimeoutError:
                pass
    finally:
        listener.async_stop()
    for hit in found:
        if hit[1] == gateway:
            return hit
    if not found:
        raise unavailable(f"upnp: no Internet Gateway Device answered within {SSDP_WAIT_S} s")
    return found[0]


class UpnpRefused(ReachError):
    """The router answered a SOAP fault; `upnp_code` is its UPnP error code (718, 725, ...)."""

    def __init__(self, message: str, upnp_code: int | None) -> None:
        super().__init__(message, code=Code.PORTMAP_REFUSED)
        self.upnp_code = upnp_code


def _error(exc: Exception, what: str) -> ReachError:
    if isinstance(exc, UpnpActionError):
        code = exc.error_code if isinstance(exc.error_code, int) else None
        desc = clean(exc.error_desc or "", 60)
        return UpnpRefused(f"upnp: {what}: the router answered {code} {desc}".rstrip(), code)
    return unavailable(f"upnp: {what}: {clean(type(exc).__name__, 60)}")


class UpnpBackend:
    """The WAN connection service of one IGD."""

    method = "upnp"

    def __init__(
        self, session: aiohttp.ClientSession, service: UpnpService, internal_ip: str
    ) -> None:
        self._session = session
        self._service = service
        self.internal_ip = internal_ip
        self.service_type = service.service_type

    @classmethod
    async def open(cls, gateway: str | None) -> UpnpBackend:
        probe = gateway or SSDP_ADDR[0]
        try:
            local_ip = await local_address(probe, SSDP_ADDR[1])
        except OSError:
            raise unavailable("upnp: no route to the LAN") from None
        location, host = await discover(gateway, local_ip)
        session = aiohttp.ClientSession()
        try:
            factory = UpnpFactory(_CappedRequester(session, host), non_strict=True)
            try:
                device = await factory.async_create_device(location)
            except Exception as exc:  # the library parses the router's XML: any failure is its
                raise _error(exc, "reading the device description") from None
            service = _wan_service(device)
            internal = await local_address(host, urlsplit(location).port or 80)
        except BaseException:
            await session.close()
            raise
        return cls(session, service, internal)

    async def _call(self, name: str, what: str, **args: Any) -> Map[str, Any]:
        action: UpnpAction = self._service.action(name)
        try:
            return await action.async_call(**args)
        except Exception as exc:  # SOAP faults, bad XML, values the library's schema refuses
            raise _error(exc, what) from None

    async def external_address(self) -> str:
        out = await self._call("GetExternalIPAddress", "GetExternalIPAddress")
        return str(out.get("NewExternalIPAddress") or "")[:64]

    async def map(
        self, proto: Proto, internal_port: int, external_port: int, lease_s: int
    ) -> Granted:
        """AddPortMapping, asking for EXTERNAL_PORT (else a few random ones); a router without
        leases (725) gets a permanent mapping (lifetime 0), removed at stop."""
        port = external_port
        for attempt in range(PORT_TRIES):
            try:
                return await self._add(proto, internal_port, port, lease_s)
            except UpnpRefused as exc:
                if exc.upnp_code != CONFLICT or attempt == PORT_TRIES - 1:
                    raise
            port = 1024 + secrets.randbelow(65535 - 1024)
        raise refused("upnp: no free external port")  # not reached: the loop raises

    async def _add(self, proto: Proto, internal_port: int, port: int, lease_s: int) -> Granted:
        args = {
            "NewRemoteHost": "",
            "NewExternalPort": port,
            "NewProtocol": proto.upper(),
            "NewInternalPort": internal_port,
            "NewInternalClient": self.internal_ip,
            "NewEnabled": True,
            "NewPortMappingDescription": DESCRIPTION,
        }
        try:
            await self._call(
                "AddPortMapping", f"mapping {proto} {port}", NewLeaseDuration=lease_s, **args
            )
        except UpnpRefused as exc:
            if exc.upnp_code != ONLY_PERMANENT:
                raise
            await self._call(
                "AddPortMapping", f"mapping {proto} {port}", NewLeaseDuration=0, **args
            )
            return Granted(port, 0)
        return Granted(port, lease_s)

    async def unmap(self, proto: Proto, internal_port: int, external_port: int) -> None:
        await self._call(
            "DeletePortMapping", f"removing {proto} {external_port}", NewRemoteHost="",
            NewExternalPort=external_port, NewProtocol=proto.upper(),
        )  # fmt: skip

    async def close(self) -> None:
        await self._session.close()


def _wan_service(device: UpnpDevice) -> UpnpService:
    for service_type in SERVICES:
        service = device.find_service(service_type)
        if service is not None and all(service.has_action(a) for a in ACTIONS):
            return service
    raise unavailable("upnp: the gateway device has no WAN connection service with port mapping")
