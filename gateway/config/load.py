"""Load and check the gateway's TOML configuration.

Every mistake is reported as a ConfigError naming the file, the key (a dotted path such as
``things[1].safety.max_setpoint_c``) and what was expected. Nothing is started from a bad file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.config.model import (
    THING_TYPES,
    GatewayConfig,
    HttpConfig,
    LockSafety,
    MdnsConfig,
    MqttConfig,
    P2pConfig,
    ResetButtonConfig,
    Safety,
    SensorSafety,
    SwitchSafety,
    ThermostatSafety,
    ThingConfig,
    is_loopback,
    parse_advertise,
)
from gateway.errors import ConfigError
from gateway.jsonsafe import JsonInputError, JsonLimits, check_tree

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few KiB; refuse anything absurd
SAFETY_TYPES: dict[str, type[Safety]] = {
    "lock": LockSafety,
    "thermostat": ThermostatSafety,
    "switch": SwitchSafety,
    "sensor": SensorSafety,
}
SENSOR_KINDS = ("temperature", "humidity", "contact")
METRICS_MODES = ("loopback", "token", "off")
MAX_MDNS_NAME = 40  # bytes; a DNS-SD instance label holds 63 and we append " (gateway id)"
# The same bounds as every other input (gateway.jsonsafe): TOML integers are 64-bit by the
# spec, floats must be finite, and no setting nests anywhere near 16 levels.
CONFIG_LIMITS = JsonLimits(max_bytes=MAX_CONFIG_BYTES, max_depth=16)
_TABLE_LINE = re.compile(r"^\s*\[\[?\s*([^\]\[]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")
_DIGITS = re.compile(r"[0-9_]{2,}")


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(self.source, key, expected)

    def table(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        val = data.get(key, {})
        if not isinstance(val, dict):
            raise self.fail(path, "a table")
        return val

    def str_(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        if key not in data:
            if default is None:
                raise self.fail(path, "a string (required)")
            return default
        val = data[key]
        if not isinstance(val, str) or not val.strip():
            raise self.fail(path, "a non-empty string")
        return val

    def int_(
        self, data: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int
    ) -> int:
        val = data.get(key, default)
        if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
            raise self.fail(path, f"an integer from {lo} to {hi}")
        return val

    def unknown(self, data: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for k in data:
            if k not in allowed:
                where = f"{path}.{k}" if path else k
                raise self.fail(where, f"no such setting (known: {', '.join(sorted(allowed))})")


def _safety(r: _Reader, thing_type: str, data: Mapping[str, Any], path: str) -> Safety:
    cls = SAFETY_TYPES[thing_type]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    r.unknown(data, set(fields), path)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        val = data[name]
        default = f.default
        key = f"{path}.{name}"
        if isinstance(default, bool):
            if not isinstance(val, bool):
                raise r.fail(key, "true or false")
        elif isinstance(default, float):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise r.fail(key, "a number")
            val = float(val)
            if val < 0 and not name.startswith(("sensor_m", "frost")):
                raise r.fail(key, "a number >= 0")
        elif isinstance(default, tuple):
            if not isinstance(val, list) or not val or not all(v in SENSOR_KINDS for v in val):
                raise r.fail(key, f"a non-empty list of {', '.join(SENSOR_KINDS)}")
            val = tuple(dict.fromkeys(val))
        values[name] = val
    safety = cls(**values)
    if isinstance(safety, ThermostatSafety):
        s = safety
        if not s.min_setpoint_c <= s.default_setpoint_c <= s.max_setpoint_c:
            raise r.fail(f"{path}.default_setpoint_c", "a value between min and max setpoint")
        if s.min_setpoint_c >= s.max_setpoint_c:
            raise r.fail(f"{path}.max_setpoint_c", "a value above min_setpoint_c")
        if s.sensor_min_c >= s.sensor_max_c:
            raise r.fail(f"{path}.sensor_max_c", "a value above sensor_min_c")
        if s.control_interval_s <= 0 or s.sensor_stale_s <= 0:
            raise r.fail(f"{path}.control_interval_s", "a positive number")
    return safety


def _thing(r: _Reader, data: Any, i: int) -> ThingConfig:
    path = f"things[{i}]"
    if not isinstance(data, dict):
        raise r.fail(path, "a table ([[things]])")
    r.unknown(
        data, {"name", "type", "title", "description", "driver", "driver_settings", "safety"}, path
    )
    name = r.str_(data, "name", f"{path}.name")
    if not NAME_RE.match(name):
        raise r.fail(f"{path}.name", "lower-case letters, digits and '-', at most 64 characters")
    typ = r.str_(data, "type", f"{path}.type")
    if typ not in THING_TYPES:
        raise r.fail(f"{path}.type", f"one of {', '.join(THING_TYPES)}")
    driver = r.str_(data, "driver", f"{path}.driver", "sim")
    settings = r.table(data, "driver_settings", f"{path}.driver_settings")
    safety = _safety(r, typ, r.table(data, "safety", f"{path}.safety"), f"{path}.safety")
    return ThingConfig(
        name=name,
        type=typ,
        title=r.str_(data, "title", f"{path}.title", name),
        description=str(data.get("description", "")),
        driver=driver,
        driver_settings=MappingProxyType(dict(settings)),
        safety=safety,
    )


def parse_config(
    data: Mapping[str, Any], source: str, *, base_dir: Path | None = None
) -> GatewayConfig:
    """Turn parsed TOML into a GatewayConfig, or raise ConfigError."""
    r = _Reader(source)
    r.unknown(data, {"gateway", "things"}, "")
    gw = r.table(data, "gateway", "gateway")
    r.unknown(
        gw,
        {"name", "state_dir", "advertise", "http", "p2p", "mdns", "mqtt", "reset_button"},
        "gateway",
    )
    name = r.str_(gw, "name", "gateway.name", "streembit-gateway")
    state = Path(r.str_(gw, "state_dir", "gateway.state_dir", "/var/lib/streembit-gateway"))
    if not state.is_absolute() and base_dir is not None:
        state = base_dir / state
    http = r.table(gw, "http", "gateway.http")
    r.unknown(http, {"host", "port", "base_url", "max_body", "metrics"}, "gateway.http")
    metrics = r.str_(http, "metrics", "gateway.http.metrics", "loopback")
    if metrics not in METRICS_MODES:
        raise r.fail("gateway.http.metrics", f"one of {', '.join(METRICS_MODES)}")
    http_cfg = HttpConfig(
        host=r.str_(http, "host", "gateway.http.host", "127.0.0.1"),
        port=r.int_(http, "port", "gateway.http.port", 8080, 0, 65535),
        base_url=(
            r.str_(http, "base_url", "gateway.http.base_url") if "base_url" in http else None
        ),
        max_body=r.int_(
            http, "max_body", "gateway.http.max_body", 64 * 1024, 256, 16 * 1024 * 1024
        ),
        metrics=metrics,
    )
    p2p_cfg = _p2p(r, gw)
    http_cfg, p2p_cfg, advertised = _advertise(r, gw, http_cfg, p2p_cfg)
    things_raw = data.get("things", [])
    if not isinstance(things_raw, list):
        raise r.fail("things", "an array of tables ([[things]])")
    things = tuple(_thing(r, t, i) for i, t in enumerate(things_raw))
    seen: set[str] = set()
    for i, t in enumerate(things):
        if t.name in seen:
            raise r.fail(f"things[{i}].name", f"a unique name ({t.name!r} is used twice)")
        seen.add(t.name)
    return GatewayConfig(
        name=name,
        state_dir=state,
        http=http_cfg,
        p2p=p2p_cfg,
        things=things,
        source=source,
        mdns=_mdns(r, gw),
        mqtt=_mqtt(r, gw),
        reset_button=_reset_button(r, gw),
        advertise=advertised,
    )


def _advertise(
    r: _Reader, gw: Mapping[str, Any], http: HttpConfig, p2p: P2pConfig
) -> tuple[HttpConfig, P2pConfig, tuple[str, ...]]:
    """`[gateway] advertise`: the forms of `demo --advertise`. A host goes into the TDs' base URL
    and the contact record with the listening ports, an http(s):// URL is the TDs' base URL (so
    not with [gateway.http] base_url), ws(s):// URLs join [gateway.p2p] public_ws."""
    if "advertise" not in gw:
        return http, p2p, ()
    key = "gateway.advertise"
    raw = gw["advertise"]
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        raise r.fail(key, 'a list of host names, addresses or URLs ("192.168.1.20")')
    adv = parse_advertise(raw, lambda text, expected: r.fail(key, f"{expected}, not {text!r}"))
    if adv.base_url is not None and http.base_url is not None:
        raise r.fail(key, "no http(s):// URL: [gateway.http] base_url is set (keep one of them)")
    far = [h for h in adv.hosts if not is_loopback(h)]
    listens = [("gateway.http.host", http.host)]
    if p2p.enabled:
        listens += [("gateway.p2p.ws_host", p2p.ws_host), ("gateway.p2p.dht_host", p2p.dht_host)]
    for where, host in listens:
        if far and is_loopback(host):
            raise r.fail(
                key,
                f"no address of another network while {where} is {host} (this machine "
                f"only): set that to {far[0]} or 0.0.0.0",
            )
    http = dataclasses.replace(http, base_url=adv.base_url or http.base_url)
    public_ws = tuple(dict.fromkeys((*p2p.public_ws, *adv.public_ws)))
    return http, dataclasses.replace(p2p, public_ws=public_ws), adv.hosts


def _reset_button(r: _Reader, gw: Mapping[str, Any]) -> ResetButtonConfig:
    if "reset_button" not in gw:
        return ResetButtonConfig()
    t = r.table(gw, "reset_button", "gateway.reset_button")
    r.unknown(t, {"pin", "hold_s", "pull_up"}, "gateway.reset_button")
    pin = t.get("pin")
    if isinstance(pin, bool) or not isinstance(pin, (int, str)) or pin == "":
        raise r.fail("gateway.reset_button.pin", 'a GPIO number or name such as 27 or "GPIO27"')
    hold = t.get("hold_s", 10.0)
    if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not 2 <= hold <= 120:
        raise r.fail("gateway.reset_button.hold_s", "a number of seconds from 2 to 120")
    pull_up = t.get("pull_up", True)
    if not isinstance(pull_up, bool):
        raise r.fail("gateway.reset_button.pull_up", "true or false")
    return ResetButtonConfig(pin=pin, hold_s=float(hold), pull_up=pull_up)


def _mqtt(r: _Reader, gw: Mapping[str, Any]) -> MqttConfig:
    if "mqtt" not in gw:
        return MqttConfig()
    t = r.table(gw, "mqtt", "gateway.mqtt")
    keys = {"broker", "public_url", "things", "discovery", "discovery_prefix"}
    r.unknown(t, keys, "gateway.mqtt")
    urls: dict[str, str | None] = {}
    for key in ("broker", "public_url"):
        val = r.str_(t, key, f"gateway.mqtt.{key}") if key in t else None
        if val is not None:
            rest = val.split("://", 1)[1] if val.startswith(("mqtt://", "mqtts://")) else val
            host, sep, port = rest.rstrip("/").rpartition(":")
            if (
                "://" in rest
                or not sep
                or not host
                or not port.isdigit()
                or not 0 < int(port) < 65536
            ):
                raise r.fail(
                    f"gateway.mqtt.{key}", '"mqtts://HOST:PORT", "mqtt://HOST:PORT" or "HOST:PORT"'
                )
        urls[key] = val
    if urls["broker"] is None:
        raise r.fail("gateway.mqtt.broker", '"mqtts://HOST:PORT" (required in [gateway.mqtt])')
    flags: dict[str, bool] = {}
    for key in ("things", "discovery"):
        val = t.get(key, True)
        if not isinstance(val, bool):
            raise r.fail(f"gateway.mqtt.{key}", "true or false")
        flags[key] = val
    prefix = r.str_(t, "discovery_prefix", "gateway.mqtt.discovery_prefix", "homeassistant")
    if any(c in prefix for c in "#+ ") or prefix.startswith("/") or prefix.endswith("/"):
        raise r.fail("gateway.mqtt.discovery_prefix", "an MQTT topic without wildcards")
    return MqttConfig(
        broker=urls["broker"],
        public_url=urls["public_url"],
        things=flags["things"],
        discovery=flags["discovery"],
        discovery_prefix=prefix,
    )


def _mdns(r: _Reader, gw: Mapping[str, Any]) -> MdnsConfig:
    if "mdns" not in gw:
        return MdnsConfig()
    t = r.table(gw, "mdns", "gateway.mdns")
    r.unknown(t, {"enabled", "interfaces", "name"}, "gateway.mdns")
    enabled = t.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise r.fail("gateway.mdns.enabled", "true or false")
    ifaces = t.get("interfaces", [])
    if not isinstance(ifaces, list) or not all(_is_ipv4(i) for i in ifaces):
        raise r.fail("gateway.mdns.interfaces", 'a list of IPv4 addresses ("192.168.1.20")')
    name = r.str_(t, "name", "gateway.mdns.name") if "name" in t else None
    if name is not None and len(name.encode()) > MAX_MDNS_NAME:
        raise r.fail("gateway.mdns.name", f"at most {MAX_MDNS_NAME} bytes")
    return MdnsConfig(enabled=enabled, interfaces=tuple(ifaces), name=name)


def _is_ipv4(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def parse_hostport(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError with a readable message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _p2p(r: _Reader, gw: Mapping[str, Any]) -> P2pConfig:
    if "p2p" not in gw:
        return P2pConfig()
    t = r.table(gw, "p2p", "gateway.p2p")
    keys = {
        "enabled",
        "ws_host",
        "ws_port",
        "dht_host",
        "dht_port",
        "bootstrap",
        "public_ws",
        "record_ttl_s",
    }
    r.unknown(t, keys, "gateway.p2p")
    enabled = t.get("enabled", True)
    if not isinstance(enabled, bool):
        raise r.fail("gateway.p2p.enabled", "true or false")
    boot_raw = t.get("bootstrap", [])
    if not isinstance(boot_raw, list) or not all(isinstance(b, str) for b in boot_raw):
        raise r.fail("gateway.p2p.bootstrap", 'a list of "HOST:PORT" strings')
    try:
        boot = tuple(parse_hostport(b) for b in boot_raw)
    except ValueError as exc:
        raise r.fail("gateway.p2p.bootstrap", f'a list of "HOST:PORT" strings ({exc})') from None
    pub = t.get("public_ws", [])
    if not isinstance(pub, list) or not all(
        isinstance(u, str) and u.startswith(("ws://", "wss://")) for u in pub
    ):
        raise r.fail("gateway.p2p.public_ws", "a list of ws:// or wss:// URLs")
    return P2pConfig(
        enabled=enabled,
        ws_host=r.str_(t, "ws_host", "gateway.p2p.ws_host", "127.0.0.1"),
        ws_port=r.int_(t, "ws_port", "gateway.p2p.ws_port", 8081, 0, 65535),
        dht_host=r.str_(t, "dht_host", "gateway.p2p.dht_host", "127.0.0.1"),
        dht_port=r.int_(t, "dht_port", "gateway.p2p.dht_port", 4242, 0, 65535),
        bootstrap=boot,
        public_ws=tuple(pub),
        record_ttl_s=r.int_(t, "record_ttl_s", "gateway.p2p.record_ttl_s", 3600, 120, 7 * 86400),
    )


def load_config(path: Path) -> GatewayConfig:
    """Read and check a TOML config file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), "(file)", "an existing config file") from None
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"a readable file ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), "(file)", f"a file under {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), "(file)", "UTF-8 text") from None
    return parse_config(parse_toml(text, str(path)), str(path), base_dir=path.parent)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text -> a tree within CONFIG_LIMITS; ConfigError (SOURCE, key) on anything else."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"valid TOML ({exc})") from None
    except RecursionError:  # arrays or inline tables nested hundreds deep
        key = _locate(text, lambda line: line.count("[") + line.count("{"))
        limit = CONFIG_LIMITS.max_depth
        raise ConfigError(source, key, f"at most {limit} levels of nesting") from None
    except ValueError:  # an integer literal beyond Python's 4300-digit conversion limit
        key = _locate(text, lambda line: max((len(m) for m in _DIGITS.findall(line)), default=0))
        raise ConfigError(source, key, "a number of at most 64 bits") from None
    try:
        check_tree(data, CONFIG_LIMITS, what=source)
    except JsonInputError as exc:
        expected = {
            "too_deep": f"at most {CONFIG_LIMITS.max_depth} levels of nesting",
            "long_number": "an integer that fits in 64 bits",
            "non_finite": "a finite number",
        }.get(exc.problem, "valid text")
        raise ConfigError(source, _dotted(exc.path), expected) from None
    return data


def _dotted(path: tuple[str | int, ...]) -> str:
    """("things", 1, "safety", "x") -> "things[1].safety.x" (the way errors name keys)."""
    out = ""
    for part in path[:24]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _locate(text: str, score: Callable[[str], int]) -> str:
    """Best effort "TABLE.KEY (line N)" of the line scoring highest, for errors that tomllib
    raises without a position. The key is the nearest "key =" at or above that line."""
    lines = text.splitlines()
    if not lines:
        return "(file)"
    worst = max(range(len(lines)), key=lambda i: score(lines[i]))
    key, table = "", ""
    for i in range(worst, -1, -1):
        line = lines[i]
        if not key and (m := _KEY_LINE.match(line)):
            key = m.group(1).strip()
        if m := _TABLE_LINE.match(line):
            table = m.group(1).strip()
            break
    name = ".".join(p for p in (table, key) if p) or "(file)"
    return f"{name[:80]} (line {worst + 1})"


def default_config(state_dir: Path, http_port: int = 8080) -> GatewayConfig:
    """The embedded demo: a simulated lock `front-door` and thermostat `living-room` on loopback."""
    return GatewayConfig(
        name="streembit-demo",
        state_dir=Path(state_dir),
        http=HttpConfig(host="127.0.0.1", port=http_port),
        p2p=P2pConfig(enabled=True),
        things=(
            ThingConfig(
                name="front-door",
                type="lock",
                title="Front door",
                description="Simulated door lock with a bolt sensor and a door contact",
                driver="sim",
                safety=LockSafety(),
            ),
            ThingConfig(
                name="living-room",
                type="thermostat",
                title="Living room",
                description="Simulated thermostat: a room heat model and a heater",
                driver="sim",
                driver_settings=MappingProxyType({"time_scale": 10.0}),
                safety=ThermostatSafety(),
            ),
        ),
        source="<demo>",
    )
