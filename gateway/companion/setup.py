"""What the running gateway builds for its companion Things and its MQTT binding.

One `MqttConnection` per broker (the gateway's own account from `mqtt-broker.json`), shared by
the companion hub of that broker and by the MQTT binding; one `CompanionHub` per broker (and one
for boards on serial ports only), holding the paired boards' keys from `pairings.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_drivers.companion.broker import BrokerSettings, parse_broker
from device_drivers.errors import DriverConfigError
from gateway import jsonsafe
from gateway.companion.broker import load_credentials
from gateway.config import GatewayConfig, ThingConfig
from gateway.provisioning import pairing
from gateway.state import StateDir

if TYPE_CHECKING:  # loaded when a companion Thing or the MQTT binding needs them (paho: RSS)
    from device_drivers.companion.hub import CompanionHub
    from device_drivers.companion.mqtt import MqttConnection

COUNTERS_DIR = "companion-counters"


def device_key(state: StateDir, device: str) -> bytes | None:
    """The HMAC key of a paired board, or None (read only: nothing is created or changed)."""
    get = getattr(pairing, "get_pairing", None)
    if get is not None:
        rec = get(state, device)
        return bytes.fromhex(rec["hmac_key"]) if rec else None
    path = state.path / pairing.PAIRINGS_FILE
    try:
        doc = jsonsafe.loads(path.read_bytes(), jsonsafe.FILE_LIMITS)
        entry = doc["devices"].get(device)
        return bytes.fromhex(entry["hmac_key"]) if entry else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DriverConfigError(f"{path} is damaged; fix or delete it") from None


def broker_url(text: str) -> str:
    """A broker setting as the URL TDs use: mqtts://host:port or mqtt://host:port."""
    host, port, tls = parse_broker(text)
    if ":" in host:
        host = f"[{host}]"
    return f"{'mqtts' if tls or port == 8883 else 'mqtt'}://{host}:{port}"


class CompanionSetup:
    def __init__(self, config: GatewayConfig, state: StateDir, gateway_id: str) -> None:
        self.config = config
        self.state = state
        self.gateway_id = gateway_id
        self.connections: dict[tuple[str, int, bool], MqttConnection] = {}
        self.hubs: dict[str, CompanionHub] = {}

    def connection(self, broker: str) -> MqttConnection:
        host, port, tls = parse_broker(broker)
        tls = tls or port == 8883
        conn = self.connections.get((host, port, tls))
        if conn is not None:
            return conn
        creds = load_credentials(self.state)
        if creds is None:
            raise DriverConfigError(
                f"no broker account for the gateway in {self.state.path}: run "
                "`streembit-gateway companion broker` first"
            )
        settings = BrokerSettings(
            host=host,
            port=port,
            username=creds.username,
            password=creds.password,
            tls=tls,
            ca_file=creds.ca_file if tls else None,
            client_id=f"streembit-gateway-{self.gateway_id[:12]}-{len(self.connections)}",
        )
        from device_drivers.companion.mqtt import MqttConnection

        conn = MqttConnection(settings, name=f"{host}:{port}")
        self.connections[(host, port, tls)] = conn
        return conn

    def inject(self, tc: ThingConfig) -> dict[str, Any]:
        """The objects the driver of TC needs (only companion Things need any)."""
        if tc.driver != "companion":
            return {}
        settings = tc.driver_settings
        device = settings.get("device")
        serial = settings.get("serial")
        broker = settings.get("broker") or self.config.mqtt.broker
        if serial is not None:
            key = f"serial:{serial}"
        elif isinstance(broker, str):
            key = "broker:" + broker_url(broker)
        else:
            raise DriverConfigError(
                f"thing {tc.name!r}: a companion Thing needs driver setting 'broker' or "
                "'serial' (or a [gateway.mqtt] broker)"
            )
        hub = self.hubs.get(key)
        if hub is None:
            from device_drivers.companion.hub import CompanionHub

            conn = self.connection(broker) if serial is None and isinstance(broker, str) else None
            hub = CompanionHub(
                gateway_id=self.gateway_id,
                keys={},
                counter_dir=Path(self.state.path) / COUNTERS_DIR,
                connection=conn,
            )
            self.hubs[key] = hub
        if isinstance(device, str) and device not in hub.keys:
            k = device_key(self.state, device)
            if k is not None:
                hub.keys[device] = k
        if isinstance(serial, str) and isinstance(device, str) and device in hub.keys:
            if device not in hub.serial:
                hub.add_serial(device, serial)
        return {"hub": hub}
