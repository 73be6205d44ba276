"""Typed, frozen configuration loaded from TOML. See `gateway.config.load`.

The loader (TOML, the driver registry) is imported when first used, so a command that only
needs the model (`parse_hostport`, the dataclasses) does not pay for it."""

from typing import TYPE_CHECKING, Any

from gateway.config.model import (
    THING_TYPES,
    GatewayConfig,
    HttpConfig,
    LockSafety,
    MdnsConfig,
    MqttConfig,
    P2pConfig,
    ResetButtonConfig,
    SensorSafety,
    SwitchSafety,
    ThermostatSafety,
    ThingConfig,
    parse_hostport,
)

if TYPE_CHECKING:
    from gateway.config.load import default_config, load_config, parse_config

_LOADER = ("default_config", "load_config", "parse_config")


def __getattr__(name: str) -> Any:
    if name in _LOADER:
        from gateway.config import load

        return getattr(load, name)
    raise AttributeError(f"module 'gateway.config' has no attribute {name!r}")


__all__ = [
    "THING_TYPES",
    "GatewayConfig",
    "HttpConfig",
    "LockSafety",
    "MdnsConfig",
    "MqttConfig",
    "P2pConfig",
    "ResetButtonConfig",
    "SensorSafety",
    "SwitchSafety",
    "ThermostatSafety",
    "ThingConfig",
    "default_config",
    "load_config",
    "parse_config",
    "parse_hostport",
]
