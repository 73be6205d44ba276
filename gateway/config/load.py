"""Load and check the gateway's TOML configuration.

Every mistake is reported as a ConfigError naming the file, the key (a dotted path such as
``things[1].safety.max_setpoint_c``) and what was expected. Nothing is started from a bad file.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from device_drivers.errors import DriverConfigError
from device_drivers.registry import driver_class
from device_drivers.settings import Reader
from gateway.config.model import (
    GatewayConfig,
    HttpConfig,
    LockSafety,
    P2pConfig,
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

MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few KiB; refuse anything absurd
SAFETY_TYPES: dict[str, type[Safety]] = {
    "lock": LockSafety,
    "thermostat": ThermostatSafety,
    "switch": SwitchSafety,
    "sensor": SensorSafety,
}
DEFAULT_NAME = "streembit-gateway"
DEFAULT_STATE_DIR = "/var/lib/streembit-gateway"
# The same bounds as every other input (gateway.jsonsafe): TOML integers are 64-bit by the
# spec, floats must be finite, and no setting nests anywhere near 16 levels.
CONFIG_LIMITS = JsonLimits(max_bytes=MAX_CONFIG_BYTES, max_depth=16)
_TABLE_LINE = re.compile(r"^\s*\[\[?\s*([^\]\[]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")
_DIGITS = re.compile(r"[0-9_]{2,}")


def _safety(r: Reader, thing_type: str, data: object, path: str) -> Safety:
    safety = r.read(SAFETY_TYPES[thing_type], data, path)
    if isinstance(safety, SensorSafety):
        return dataclasses.replace(safety, kinds=tuple(dict.fromkeys(safety.kinds)))
    if isinstance(safety, ThermostatSafety):
        s = safety
        if not s.min_setpoint_c <= s.default_setpoint_c <= s.max_setpoint_c:
            raise r.fail(f"{path}.default_setpoint_c", "a value between min and max setpoint")
        if s.min_setpoint_c >= s.max_setpoint_c:
            raise r.fail(f"{path}.max_setpoint_c", "a value above min_setpoint_c")
        if s.sensor_min_c >= s.sensor_max_c:
            raise r.fail(f"{path}.sensor_max_c", "a value above sensor_min_c")
    return safety


def _thing(r: Reader, data: object, i: int) -> ThingConfig:
    path = f"things[{i}]"
    if not isinstance(data, dict):
        raise r.fail(path, "a table ([[things]])")
    values = r.values(ThingConfig, data, path, skip=("safety",))
    values.setdefault("title", values["name"])
    _check_driver_settings(r, values, f"{path}.driver_settings")
    safety = _safety(r, values["type"], data.get("safety", {}), f"{path}.safety")
    return ThingConfig(**values, safety=safety)


def _check_driver_settings(r: Reader, thing: Mapping[str, Any], path: str) -> None:
    """The driver settings against the backend's settings dataclass, so that a wrong or unknown
    one names the file and the key. A backend that cannot be loaded, or has no model for the
    Thing's type, is left to the driver (`registry.create_driver`), which checks them again."""
    try:
        model = driver_class(thing.get("driver", "sim"), thing["name"]).settings_model
    except DriverConfigError:
        return
    cls = model.get(thing["type"]) or model.get("*")
    if cls is not None:
        r.read(cls, thing.get("driver_settings", {}), path)


def parse_config(
    data: Mapping[str, Any], source: str, *, base_dir: Path | None = None
) -> GatewayConfig:
    """Turn parsed TOML into a GatewayConfig, or raise ConfigError."""
    r = Reader(lambda key, expected: ConfigError(source, key, expected))
    r.refuse_unknown(data, {"gateway", "things"}, "")
    gw = r.values(GatewayConfig, data.get("gateway", {}), "gateway")
    state = Path(gw.pop("state_dir", DEFAULT_STATE_DIR))
    if not state.is_absolute() and base_dir is not None:
        state = base_dir / state
    mqtt, reset = gw.get("mqtt"), gw.get("reset_button")
    if mqtt is not None and mqtt.broker is None:
        raise r.fail("gateway.mqtt.broker", '"mqtts://HOST:PORT" (required in [gateway.mqtt])')
    if reset is not None and reset.pin is None:
        raise r.fail("gateway.reset_button.pin", 'a GPIO number or name such as 27 or "GPIO27"')
    http, p2p, advertised = _advertise(
        r, gw.pop("advertise", None), gw.pop("http", HttpConfig()), gw.pop("p2p", P2pConfig())
    )
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
        **{"name": DEFAULT_NAME, **gw},
        state_dir=state,
        http=http,
        p2p=p2p,
        things=things,
        source=source,
        advertise=advertised,
    )


def _advertise(
    r: Reader, raw: tuple[str, ...] | None, http: HttpConfig, p2p: P2pConfig
) -> tuple[HttpConfig, P2pConfig, tuple[str, ...]]:
    """`[gateway] advertise`: the forms of `demo --advertise`. A host goes into the TDs' base URL
    and the contact record with the listening ports, an http(s):// URL is the TDs' base URL (so
    not with [gateway.http] base_url), ws(s):// URLs join [gateway.p2p] public_ws."""
    if raw is None:
        return http, p2p, ()
    key = "gateway.advertise"
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
