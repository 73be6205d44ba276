"""LAN discovery by DNS-SD over mDNS, as the W3C WoT Discovery spec describes it (zeroconf).

The gateway announces one `_wot._tcp` service per Thing and one for its TD Directory. Each
service's SRV record gives the gateway's HTTP host and port, and its TXT record the spec's keys:

    td=/things/front-door   the path of the TD (the Directory's: /.well-known/wot)
    type=Thing              "Thing", or "Directory" for the TD Directory
    scheme=http             "http" or "https" (from the gateway's base URL)
    gw=<gateway id>         not in the spec (consumers skip unknown keys): groups the services
                            of one gateway for `streembit-peer discover`

Instance names are "<thing> @ <name> [<id prefix>]" and "<name> directory [<id prefix>]";
if another device on the LAN holds a name already, zeroconf picks the next free one.

The Directory is not offered under the spec's optional `_directory._sub._wot._tcp` subtype:
python-zeroconf answers queries only for the one type a service is registered under, and a
Directory registered under the subtype would be missing from every `_wot._tcp` browse (what
consumers do). `type=Directory` in its TXT record marks it, as the spec requires.

Where it announces: `[gateway.mdns]` (gateway.config.MdnsConfig). Default: on when the HTTP
host is a LAN address (that address's interface), on every interface's IPv4 address when the
host is 0.0.0.0, and off for a loopback host (the demo) unless asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.config import MdnsConfig
from gateway.config.model import WILDCARD_HOSTS, is_loopback
from gateway.tasks import TaskOwner

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_wot._tcp.local."
DIRECTORY_TD_PATH: Final = "/.well-known/wot"
REGISTER_TIMEOUT_S: Final = 15.0  # probing takes about 1.5 s; a busy LAN may need retries
UNREGISTER_TIMEOUT_S: Final = 3.0  # goodbye packets at shutdown; never hold the stop up longer
CLOSE_TIMEOUT_S: Final = 3.0
DEFAULT_BROWSE_S: Final = 3.0
RESOLVE_TIMEOUT_MS: Final = 2000
MAX_LABEL: Final = 63  # bytes of a DNS label (the instance name)


def lan_ipv4_addresses() -> list[str]:
    """Every non-loopback IPv4 address of this machine's interfaces."""
    import ifaddr

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.IPv4Address(ip.ip).is_loopback:
                found.append(ip.ip)
    return sorted(set(found))


def interfaces_for(cfg: MdnsConfig, http_host: str) -> list[str]:
    """The IPv4 addresses to announce on; [] means mDNS is off."""
    if cfg.enabled is False:
        return []
    if cfg.interfaces:
        return list(cfg.interfaces)
    if cfg.enabled is None and is_loopback(http_host):
        return []  # a loopback demo stays quiet unless asked
    if http_host in WILDCARD_HOSTS:
        return lan_ipv4_addresses()
    try:
        ipaddress.IPv4Address(http_host)
    except ValueError:
        log.warning(
            "mDNS: the HTTP host %r is not an IPv4 address; set [gateway.mdns] "
            "interfaces to announce",
            http_host,
        )
        return []
    return [http_host]


@dataclass(frozen=True)
class Announcement:
    instance: str  # service instance name (without the service type)
    kind: str  # "Thing" or "Directory"
    td_path: str
    port: int
    scheme: str
    gateway_id: str

    @property
    def txt(self) -> dict[str, str]:
        return {"td": self.td_path, "type": self.kind, "scheme": self.scheme, "gw": self.gateway_id}


def _label(text: str, suffix: str) -> str:
    room = MAX_LABEL - len(suffix.encode())
    data = text.encode()[:room].decode("utf-8", "ignore")
    return (data + suffix).replace(".", " ")  # a dot would split the DNS name


def plan(*, gateway_id: str, name: str, base_url: str, things: Sequence[str]) -> list[Announcement]:
    """What to announce for a gateway serving BASE_URL (its TD base, e.g. http://host:8080)."""
    url = urlsplit(base_url)
    scheme = url.scheme or "http"
    port = url.port or (443 if scheme == "https" else 80)
    prefix = url.path.rstrip("/")
    tag = f" [{gateway_id[:8]}]"
    out = [
        Announcement(
            _label(f"{name} directory", tag),
            "Directory",
            prefix + DIRECTORY_TD_PATH,
            port,
            scheme,
            gateway_id,
        )
    ]
    for thing in things:
        out.append(
            Announcement(
                _label(f"{thing} @ {name}", tag),
                "Thing",
                f"{prefix}/things/{thing}",
                port,
                scheme,
                gateway_id,
            )
        )
    return out


def host_label(gateway_id: str) -> str:
    """The SRV target host name: unique per gateway, letters, digits and '-' only."""
    clean = "".join(c if c.isalnum() else "-" for c in gateway_id[:12].lower()).strip("-")
    return f"streembit-{clean or 'gateway'}.local."


class MdnsAdvertiser:
    """Announce ANNOUNCEMENTS on the IPv4 INTERFACES until `stop()` (goodbye packets)."""

    def __init__(
        self, interfaces: Sequence[str], announcements: Sequence[Announcement], server: str
    ) -> None:
        if not interfaces:
            raise ValueError("no interface to announce on")
        self.interfaces = list(interfaces)
        self.announcements = list(announcements)
        self.server = server
        self.registered: list[str] = []  # full service names, once announced
        self._zc: Any = None
        self._infos: list[Any] = []
        self._tasks = TaskOwner("mDNS")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start announcing; probing and announcing go on in a task (see `wait_registered`)."""
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        addresses = [socket.inet_aton(a) for a in self.interfaces]
        self._zc = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only)
        for a in self.announcements:
            self._infos.append(
                AsyncServiceInfo(
                    SERVICE_TYPE,
                    f"{a.instance}.{SERVICE_TYPE}",
                    port=a.port,
                    addresses=addresses,
                    properties=a.txt,
                    server=self.server,
                )
            )
        self._task = self._tasks.spawn(self._register(), name="mdns-register")

    async def _register(self) -> None:
        try:
            pending = [
                await self._zc.async_register_service(info, allow_name_change=True)
                for info in self._infos
            ]
            await asyncio.wait_for(asyncio.gather(*pending), REGISTER_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a LAN problem must never stop the gateway
            log.error("mDNS announcement failed: %s", exc)
            return
        self.registered = [info.name for info in self._infos]
        log.info("mDNS: announced %d services on %s", len(self.registered), self.interfaces)

    async def wait_registered(self, timeout_s: float = REGISTER_TIMEOUT_S) -> list[str]:
        if self._task is not None:  # asyncio.wait: neither the task's end nor a timeout raises
            await asyncio.wait({self._task}, timeout=timeout_s)
        return list(self.registered)

    async def stop(self) -> None:
        """Withdraw every service (goodbye packets) and close. Never raises."""
        await self._tasks.close()  # a cancellation of stop() itself still propagates
        if self._zc is None:
            return
        try:
            if self.registered:
                await asyncio.wait_for(
                    self._zc.async_unregister_all_services(), UNREGISTER_TIMEOUT_S
                )
        except Exception as exc:
            log.warning("mDNS goodbye failed: %s", exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._zc.async_close(), CLOSE_TIMEOUT_S)
        self._zc = None


async def announce(
    cfg: MdnsConfig,
    *,
    http_host: str,
    gateway_id: str,
    name: str,
    base_url: str,
    things: Sequence[str],
) -> MdnsAdvertiser | None:
    """Start announcing a gateway as CFG says (None: mDNS is off there, or failed to start: the
    LAN is optional, so a failure is logged and never stops the gateway)."""
    interfaces = interfaces_for(cfg, http_host)
    if not interfaces:
        return None
    announcements = plan(
        gateway_id=gateway_id, name=cfg.name or name, base_url=base_url, things=things
    )
    adv = MdnsAdvertiser(interfaces, announcements, host_label(gateway_id))
    try:
        await adv.start()
    except Exception as exc:
        log.error("mDNS not started: %s", exc)
        await adv.stop()
        return None
    return adv


@dataclass(frozen=True)
class Found:
    """A `_wot._tcp` service seen on the LAN, resolved."""

    name: str
    kind: str  # "Thing" or "Directory" (the spec's default is Thing)
    addresses: tuple[str, ...]
    port: int
    scheme: str
    td_path: str
    gateway: str | None
    txt: Mapping[str, str] = field(default_factory=dict)

    @property
    def td_url(self) -> str:
        host = self.addresses[0] if self.addresses else "?"
        return f"{self.scheme}://{host}:{self.port}{self.td_path}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "addresses": list(self.addresses),
            "port": self.port,
            "scheme": self.scheme,
            "td": self.td_path,
            "td_url": self.td_url,
            "gateway": self.gateway,
            "txt": dict(self.txt),
        }


def _text(props: Mapping[bytes, bytes | None], key: str, default: str = "") -> str:
    value = props.get(key.encode())
    return value.decode("utf-8", "replace") if value is not None else default


async def browse(
    interfaces: Sequence[str] | None = None, timeout_s: float = DEFAULT_BROWSE_S
) -> list[Found]:
    """Every `_wot._tcp` service answering within TIMEOUT_S, resolved (sorted by name).
    INTERFACES: IPv4 addresses to ask on (None: every interface)."""
    from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    names: set[str] = set()

    def seen(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)
        else:
            names.discard(name)

    azc = AsyncZeroconf(
        interfaces=list(interfaces) if interfaces else InterfaceChoice.All,
        ip_version=IPVersion.V4Only,
    )
    try:
        browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[seen])
        await asyncio.sleep(timeout_s)
        await browser.async_cancel()

        async def resolve(name: str) -> Found | None:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, RESOLVE_TIMEOUT_MS):
                return None
            props = info.properties
            return Found(
                name=name.removesuffix("." + SERVICE_TYPE),
                kind=_text(props, "type", "Thing"),
                addresses=tuple(info.parsed_addresses()),
                port=info.port or 0,
                scheme=_text(props, "scheme", "http"),
                td_path=_text(props, "td", "/"),
                gateway=_text(props, "gw") or None,
                txt={
                    k.decode("utf-8", "replace"): (v or b"").decode("utf-8", "replace")
                    for k, v in props.items()
                },
            )

        results = await asyncio.gather(*(resolve(n) for n in sorted(names)))
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(azc.async_close(), CLOSE_TIMEOUT_S)
    return [r for r in results if r is not None]
