"""Frozen dataclasses for the gateway's configuration. Defaults are the safe, sensible ones."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

THING_TYPES = ("lock", "thermostat", "switch", "sensor")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 (names compared, not a bind)


@dataclass(frozen=True)
class LockSafety:
    auto_relock_s: float = 30.0  # relock this long after an unlock; 0 disables auto-relock
    jam_timeout_s: float = 3.0  # bolt or door contact must agree with the command within this
    relock_requires_door_closed: bool = True  # auto-relock waits until the door is closed


@dataclass(frozen=True)
class ThermostatSafety:
    min_setpoint_c: float = 5.0
    max_setpoint_c: float = 30.0
    default_setpoint_c: float = 20.0
    hysteresis_c: float = 0.5  # heater on below target - h, off above target + h
    frost_protection_c: float = 5.0  # heat even in mode "off" below this
    sensor_stale_s: float = 30.0  # no fresh reading for this long: heater off, fault
    sensor_min_c: float = -40.0  # plausible sensor range; outside it: heater off, fault
    sensor_max_c: float = 85.0
    max_on_s: float = 3600.0  # longest continuous heater run
    min_off_s: float = 300.0  # rest after max_on_s was hit
    control_interval_s: float = 1.0  # control loop period


@dataclass(frozen=True)
class SwitchSafety:
    safe_state: bool = False  # output at start, on fault and on shutdown
    max_on_s: float = 0.0  # 0 = no limit; otherwise switch off after this long


@dataclass(frozen=True)
class SensorSafety:
    kinds: tuple[str, ...] = ("temperature",)  # any of temperature, humidity, contact
    stale_s: float = 60.0  # a reading older than this is a fault, not a value
    poll_s: float = 5.0


Safety = LockSafety | ThermostatSafety | SwitchSafety | SensorSafety


@dataclass(frozen=True)
class ThingConfig:
    name: str  # [a-z0-9-], unique; used in URLs and commands
    type: str  # one of THING_TYPES
    title: str
    driver: str = "sim"
    driver_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    safety: Safety = field(default_factory=LockSafety)
    description: str = ""


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str | None = None  # public URL for TD forms, if not http://host:port
    max_body: int = 64 * 1024  # bytes; larger request bodies get 413
    # GET /metrics: "loopback" (no token from 127.0.0.1/::1, a granted token from elsewhere),
    # "token" (always a token of the owner or a granted key), or "off"
    metrics: str = "loopback"


@dataclass(frozen=True)
class P2pConfig:
    """The Streembit P2P network: a validating Kademlia node and the sealed-message WebSocket."""

    enabled: bool = False
    ws_host: str = "127.0.0.1"
    ws_port: int = 8081  # 0 picks a free port
    dht_host: str = "127.0.0.1"
    dht_port: int = 4242  # UDP; 0 picks a free port
    bootstrap: tuple[tuple[str, int], ...] = ()  # known nodes; none = this is the first node
    public_ws: tuple[str, ...] = ()  # ws:// URLs to publish, if not ws://ws_host:port/p2p
    record_ttl_s: int = 3600  # contact record lifetime; republished well before it expires
    rate_per_s: float = 20.0  # sealed requests per second per peer (token bucket)...
    burst: int = 40  # ...with this burst; a flood from one peer never starves the others


@dataclass(frozen=True)
class MdnsConfig:
    """LAN discovery: DNS-SD `_wot._tcp` over mDNS (WoT Discovery), one service per Thing and
    one for the TD Directory."""

    enabled: bool | None = None  # None: on unless the HTTP host is a loopback address
    interfaces: tuple[str, ...] = ()  # IPv4 addresses to announce on; () = the HTTP host's
    name: str | None = None  # service instance name prefix; None = the gateway's name


@dataclass(frozen=True)
class MqttConfig:
    """The gateway on an MQTT broker (mosquitto on the Pi): the companion boards' link, the W3C
    MQTT binding (retained property values, events) and Home Assistant discovery. The gateway's
    own broker account is in the state folder (`streembit-gateway companion broker`)."""

    broker: str | None = None  # "mqtts://host:port" (or mqtt://, or host:port); None = no MQTT
    public_url: str | None = None  # the broker as consumers reach it (TD hrefs), if not `broker`
    things: bool = True  # publish every Thing's properties and events (W3C MQTT binding)
    discovery: bool = True  # Home Assistant MQTT discovery messages
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True)
class ResetButtonConfig:
    """A GPIO button for a factory reset by physical presence (long press)."""

    pin: int | str | None = None  # None: no button (reset only with `streembit-gateway reset`)
    hold_s: float = 10.0  # press this long to reset; short presses do nothing
    pull_up: bool = True  # button wired to ground, internal pull-up


@dataclass(frozen=True)
class GatewayConfig:
    name: str
    state_dir: Path
    http: HttpConfig = field(default_factory=HttpConfig)
    p2p: P2pConfig = field(default_factory=P2pConfig)
    things: tuple[ThingConfig, ...] = ()
    source: str = "<defaults>"  # the file this came from, for messages
    mdns: MdnsConfig = field(default_factory=MdnsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    reset_button: ResetButtonConfig = field(default_factory=ResetButtonConfig)
    # hosts other machines reach this gateway at: TD base URLs, the contact record's WebSocket
    # URLs (after p2p.public_ws) and the DHT address shown; () = the listen hosts. http.base_url,
    # when set, wins for the TDs.
    advertise: tuple[str, ...] = ()


def url_host(host: str) -> str:
    """HOST as it goes into a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (this machine only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Advertised:
    """What `demo --advertise` and `[gateway] advertise` say: plain hosts (the listening ports are
    added), at most one http(s):// base URL for the TDs, ws(s):// URLs for the contact record."""

    hosts: tuple[str, ...] = ()
    base_url: str | None = None
    public_ws: tuple[str, ...] = ()


def _plain_host(text: str, fail: Callable[[str, str], Exception]) -> str:
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not host or any(c in host for c in "/@?# \t") or not host.isprintable():
        raise fail(text, "a host name or address, or a URL")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise fail(
                text,
                "a host without a port (the listening ports are used; for another port give a URL)",
            ) from None
    if host in WILDCARD_HOSTS:
        raise fail(text, "an address other machines can reach")
    return host


def parse_advertise(items: Iterable[str], fail: Callable[[str, str], Exception]) -> Advertised:
    """ITEMS (host names, addresses, URLs) as Advertised; FAIL(item, expected) is raised for a
    bad one (the caller names where it came from: a flag or a config key)."""
    hosts: list[str] = []
    base_url: str | None = None
    public_ws: list[str] = []
    for raw in items:
        text = raw.strip()
        if "://" not in text:
            hosts.append(_plain_host(text, fail))
            continue
        try:
            url = urlsplit(text)
            hostname = url.hostname
            url.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            hostname = None
        if not hostname or url.scheme not in ("http", "https", "ws", "wss"):
            raise fail(text, "http://, https://, ws:// or wss:// HOST[:PORT]")
        if url.scheme.startswith("ws"):
            public_ws.append(url.geturl())
        elif base_url is not None:
            raise fail(text, "one http(s):// base URL only")
        else:
            base_url = url.geturl().rstrip("/")
    return Advertised(tuple(hosts), base_url, tuple(dict.fromkeys(public_ws)))
