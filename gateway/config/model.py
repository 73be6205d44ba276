"""Frozen dataclasses for the gateway's configuration. Defaults are the safe, sensible ones."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from device_drivers.settings import doc, setting

THING_TYPES = ("lock", "thermostat", "switch", "sensor")
SENSOR_KINDS = ("temperature", "humidity", "contact")
METRICS_MODES = ("loopback", "token", "off")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 (names compared, not a bind)
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_MDNS_NAME = 40  # bytes; a DNS-SD instance label holds 63 and we append " (gateway id)"
MAX_PORT = 65535


def parse_hostport(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError with a readable message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _bootstrap(raw: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, list) or not all(isinstance(b, str) for b in raw):
        raise ValueError
    return tuple(parse_hostport(b) for b in raw)


def _thing_name(name: str) -> str | None:
    return (
        None if NAME_RE.match(name) else "lower-case letters, digits and '-', at most 64 characters"
    )


def _ws_urls(urls: tuple[str, ...]) -> str | None:
    ok = all(u.startswith(("ws://", "wss://")) for u in urls)
    return None if ok else "a list of ws:// or wss:// URLs"


def _ipv4s(addrs: tuple[str, ...]) -> str | None:
    try:
        for addr in addrs:
            ipaddress.IPv4Address(addr)
    except ValueError:
        return 'a list of IPv4 addresses ("192.168.1.20")'
    return None


def _mdns_name(name: str | None) -> str | None:
    return (
        None
        if name is None or len(name.encode()) <= MAX_MDNS_NAME
        else (f"at most {MAX_MDNS_NAME} bytes")
    )


def _broker_url(val: str | None) -> str | None:
    if val is None:
        return None
    rest = val.split("://", 1)[1] if val.startswith(("mqtt://", "mqtts://")) else val
    host, sep, port = rest.rstrip("/").rpartition(":")
    if "://" in rest or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return '"mqtts://HOST:PORT", "mqtt://HOST:PORT" or "HOST:PORT"'
    return None


def _topic_prefix(prefix: str) -> str | None:
    bad = any(c in prefix for c in "#+ ") or prefix.startswith("/") or prefix.endswith("/")
    return "an MQTT topic without wildcards" if bad else None


@dataclass(frozen=True)
class LockSafety:
    """`[things.safety]` of a lock."""

    auto_relock_s: float = setting(
        30.0, "relock this long after an unlock; 0 disables auto-relock", min=0, unit="s"
    )
    jam_timeout_s: float = setting(
        3.0,
        "the bolt sensor and door contact must agree with a command within this",
        min=0,
        unit="s",
    )
    relock_requires_door_closed: bool = setting(True, "auto-relock waits until the door is closed")


@dataclass(frozen=True)
class ThermostatSafety:
    """`[things.safety]` of a thermostat (checked: min <= default <= max setpoint, sensor_min_c <
    sensor_max_c)."""

    min_setpoint_c: float = setting(5.0, "lowest target a peer may set", min=0, unit="°C")
    max_setpoint_c: float = setting(30.0, "highest target a peer may set", min=0, unit="°C")
    default_setpoint_c: float = setting(20.0, "target at the first start", min=0, unit="°C")
    hysteresis_c: float = setting(
        0.5, "heater on below target - h, off above target + h", min=0, unit="°C"
    )
    frost_protection_c: float = setting(5.0, "heat even in mode `off` below this", unit="°C")
    sensor_stale_s: float = setting(
        30.0, "no fresh reading for this long: heater off, fault", above=0, unit="s"
    )
    sensor_min_c: float = setting(
        -40.0, "plausible sensor range; outside it: heater off, fault", unit="°C"
    )
    sensor_max_c: float = setting(85.0, "upper end of the plausible range", unit="°C")
    max_on_s: float = setting(3600.0, "longest continuous heater run", min=0, unit="s")
    min_off_s: float = setting(300.0, "rest after `max_on_s` was hit", min=0, unit="s")
    control_interval_s: float = setting(1.0, "control loop period", above=0, unit="s")


@dataclass(frozen=True)
class SwitchSafety:
    """`[things.safety]` of a switch."""

    safe_state: bool = setting(False, "output at start, on a fault and at shutdown")
    max_on_s: float = setting(0.0, "switch off after this long on; 0 = no limit", min=0, unit="s")


@dataclass(frozen=True)
class SensorSafety:
    """`[things.safety]` of a sensor."""

    kinds: tuple[str, ...] = setting(
        ("temperature",),
        "the values it reports",
        min=1,
        choices=SENSOR_KINDS,
        expect=f"a non-empty list of {', '.join(SENSOR_KINDS)}",
    )
    stale_s: float = setting(
        60.0, "a reading older than this is a fault, not a value", min=0, unit="s"
    )
    poll_s: float = setting(5.0, "how often it is read", min=0, unit="s")


Safety = LockSafety | ThermostatSafety | SwitchSafety | SensorSafety


@dataclass(frozen=True)
class ThingConfig:
    """`[[things]]`: one table per Thing, names unique."""

    name: str = field(
        metadata=doc(
            "`[a-z0-9]`, `-` inside, 1..64 characters; used in URLs, the ACL and the Thing id",
            check=_thing_name,
        )
    )
    type: str = field(metadata=doc("the Thing type", choices=THING_TYPES))
    title: str = field(metadata=doc("human title in the TD", optional=True, shown="the name"))
    driver: str = setting("sim", "the driver backend (see Driver settings below)")
    driver_settings: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata=doc("the backend's settings (see Driver settings below)", shown="`{}`"),
    )
    safety: Safety = field(
        default_factory=LockSafety,
        metadata=doc("the type's safety settings (see below)", shown="the type's defaults"),
    )
    description: str = setting("", "TD description", blank=True)


@dataclass(frozen=True)
class HttpConfig:
    """`[gateway.http]`: the WoT HTTP binding."""

    host: str = setting("127.0.0.1", "listening address (`0.0.0.0` for the LAN)")
    port: int = setting(
        8080, "listening port; 0 picks a free port; `--http-port` overrides it", min=0, max=MAX_PORT
    )
    base_url: str | None = setting(
        None,
        "public URL for TD forms, if not `http://host:port` (an absolute http(s) URL without "
        "query or fragment, checked when the TDs are built)",
    )
    max_body: int = setting(
        64 * 1024,
        "largest request body; larger is `413`",
        min=256,
        max=16 * 1024 * 1024,
        unit="bytes",
    )
    metrics: str = setting(
        "loopback",
        "`GET /metrics`: `loopback` (no token from 127.0.0.1 / ::1, a granted key's token "
        "from elsewhere), `token` (always a token of the owner or a granted key), `off` (404)",
        choices=METRICS_MODES,
    )


@dataclass(frozen=True)
class P2pConfig:
    """`[gateway.p2p]`: the Streembit P2P network, a validating Kademlia node and the
    sealed-message WebSocket. Off unless `enabled = true` (`demo` turns it on)."""

    enabled: bool = setting(False, "join the P2P network")
    ws_host: str = setting("127.0.0.1", "WebSocket listening address")
    ws_port: int = setting(8081, "WebSocket port; 0 picks a free port", min=0, max=MAX_PORT)
    dht_host: str = setting("127.0.0.1", "DHT (UDP) listening address")
    dht_port: int = setting(4242, "DHT UDP port; 0 picks a free port", min=0, max=MAX_PORT)
    bootstrap: tuple[tuple[str, int], ...] = setting(
        (),
        "known DHT nodes; none: this is the first node",
        expect='a list of "HOST:PORT" strings',
        parse=_bootstrap,
    )
    public_ws: tuple[str, ...] = setting(
        (),
        "`ws://` / `wss://` URLs to publish in the contact record, if not "
        "`ws://ws_host:ws_port/p2p`",
        expect="a list of ws:// or wss:// URLs",
        check=_ws_urls,
    )
    record_ttl_s: int = setting(
        3600,
        "contact record lifetime; republished well before it expires",
        min=120,
        max=7 * 86400,
        unit="s",
    )
    rate_per_s: float = setting(
        20.0, "sealed requests per second per peer (token bucket)", above=0, max=10000.0
    )
    burst: int = setting(
        40,
        "the token bucket's size: a flood from one peer never starves the others",
        min=1,
        max=100000,
    )
    reach: bool = setting(
        True,
        "find out how peers can reach this gateway (dial-backs by DHT peers), then map a "
        "router port or keep relay reservations when it is not reachable (docs/reach.md)",
    )
    portmap: bool = setting(
        True, "ask the router for a port mapping (PCP, NAT-PMP, UPnP-IGD) when not reachable"
    )
    relay: bool = setting(
        True, "relay for gateways behind NAT when this one is publicly reachable (`--no-relay`)"
    )
    relays: int = setting(
        2, "relays to keep reservations at when not reachable otherwise", min=1, max=8
    )


@dataclass(frozen=True)
class MdnsConfig:
    """`[gateway.mdns]`: LAN discovery, DNS-SD `_wot._tcp` over mDNS (WoT Discovery), one service
    per Thing and one for the TD Directory."""

    enabled: bool | None = setting(
        None,
        "announce by mDNS; `--mdns-interface` / `--no-mdns` override it",
        shown="on unless `http.host` is a loopback address",
    )
    interfaces: tuple[str, ...] = setting(
        (),
        "IPv4 addresses to announce on",
        shown="the HTTP host's address; every interface's for `0.0.0.0`",
        expect='a list of IPv4 addresses ("192.168.1.20")',
        check=_ipv4s,
    )
    name: str | None = setting(
        None,
        f"service instance name prefix, at most {MAX_MDNS_NAME} bytes",
        shown="the gateway's `name`",
        check=_mdns_name,
    )


@dataclass(frozen=True)
class MqttConfig:
    """`[gateway.mqtt]`: the gateway on an MQTT broker (mosquitto on the Pi): the companion
    boards' link, the W3C MQTT binding (retained property values, events) and Home Assistant
    discovery. The gateway's own broker account is in the state folder (`streembit-gateway
    companion broker`). No table: no MQTT."""

    broker: str | None = setting(
        None,
        '`"mqtts://HOST:PORT"` (or `mqtt://`, or `HOST:PORT`); required in the table',
        check=_broker_url,
    )
    public_url: str | None = setting(
        None, "the broker as consumers reach it (TD hrefs), if not `broker`", check=_broker_url
    )
    things: bool = setting(True, "publish every Thing's properties and events (W3C MQTT binding)")
    discovery: bool = setting(True, "Home Assistant MQTT discovery messages")
    discovery_prefix: str = setting(
        "homeassistant", "topic prefix of the discovery messages", check=_topic_prefix
    )


@dataclass(frozen=True)
class ResetButtonConfig:
    """`[gateway.reset_button]`: a GPIO button for a factory reset by physical presence (long
    press). No table: no button (reset only with `streembit-gateway reset`)."""

    pin: int | str | None = setting(
        None,
        "the button's GPIO; required in the table",
        expect='a GPIO number or name such as 27 or "GPIO27"',
    )
    hold_s: float = setting(
        10.0, "press this long to reset; short presses do nothing", min=2, max=120, unit="s"
    )
    pull_up: bool = setting(True, "button wired to ground, internal pull-up")


@dataclass(frozen=True)
class GatewayConfig:
    """`[gateway]`: the gateway itself; its sub-tables follow."""

    name: str = field(
        metadata=doc(
            "the gateway's name (the TD Directory's title is `<name> directory`)",
            optional=True,
            shown='`"streembit-gateway"`',
        )
    )
    state_dir: Path = field(
        metadata=doc(
            "the state folder (key, owner, ACL, audit log, saved settings); relative to the "
            "config file's folder; `run --state` overrides it",
            optional=True,
            shown='`"/var/lib/streembit-gateway"`',
        )
    )
    http: HttpConfig = field(default_factory=HttpConfig)
    p2p: P2pConfig = field(default_factory=P2pConfig)
    things: tuple[ThingConfig, ...] = setting((), "", toml=False)
    source: str = setting("<defaults>", "", toml=False)  # the file, for messages
    mdns: MdnsConfig = field(default_factory=MdnsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    reset_button: ResetButtonConfig = field(default_factory=ResetButtonConfig)
    advertise: tuple[str, ...] = setting(
        (),
        "how other machines reach the gateway, the forms of `demo --advertise`: a host name "
        "or address (the listening ports are added: the TDs' base URL, a `ws://` URL of the "
        "contact record, the ready line's `dht`), an `http(s)://` URL (the TDs' base URL; not "
        "with `[gateway.http] base_url`), a `ws(s)://` URL (added to `[gateway.p2p] "
        'public_ws`). E.g. `["192.168.1.20"]`. A LAN address while a listen host is loopback '
        "is refused",
        shown="the listen hosts",
        min=1,
        expect='a list of host names, addresses or URLs ("192.168.1.20")',
    )


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
