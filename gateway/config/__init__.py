"""Typed, frozen configuration loaded from TOML. See `gateway.config.load`."""

from gateway.config.load import default_config, load_config, parse_config
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
