"""MQTT forms in the TDs (W3C WoT MQTT binding), Home Assistant discovery messages, and the
[gateway.mqtt] config section."""

from __future__ import annotations

import json

import pytest

from device_drivers.sim import SimDriver
from gateway.companion.discovery import discovery_messages
from gateway.config import ThingConfig, default_config, parse_config
from gateway.config.model import SensorSafety, SwitchSafety
from gateway.errors import ConfigError, WotError
from gateway.things import Thing, build_thing
from gateway.wot.td import MqttForms, build_td
from gateway.wot.validate import validate_td

GW = "Zx8-gw_id-0123456789abcdefghijklmnopqrstuvw"
MQTT = MqttForms("mqtts://10.0.0.2:8883", f"streembit/{GW}/things")


def things() -> list[Thing]:
    cfgs = [
        *default_config("/tmp/unused").things,
        ThingConfig("relay", "switch", "Relay", safety=SwitchSafety()),
        ThingConfig("climate", "sensor", "Climate",
                    safety=SensorSafety(kinds=("temperature", "humidity", "contact"))),
    ]  # fmt: skip
    return [build_thing(c, SimDriver(c.name, c.type, c.driver_settings)) for c in cfgs]


@pytest.mark.parametrize("thing", things(), ids=lambda t: t.name)
def test_td_with_mqtt_forms_validates_and_keeps_http_first(thing: Thing) -> None:
    plain = build_td(thing, gateway_id=GW, base_url="http://127.0.0.1:8080")
    td = build_td(thing, gateway_id=GW, base_url="http://127.0.0.1:8080", mqtt=MQTT)
    validate_td(td, require_op=True)
    for name, prop in td["properties"].items():
        http = plain["properties"][name]["forms"]
        assert prop["forms"][: len(http)] == http  # HTTP forms unchanged, first
        mqtt = prop["forms"][len(http) :]
        topic = f"streembit/{GW}/things/{thing.name}/properties/{name}"
        assert (
            mqtt[0]["op"] == "readproperty" and mqtt[0]["href"] == f"mqtts://10.0.0.2:8883/{topic}"
        )
        assert mqtt[0]["mqv:filter"] == topic == mqtt[0]["mqv:topic"] and mqtt[0]["mqv:retain"]
        assert all("security" not in f for f in prop["forms"])
    for name, event in td.get("events", {}).items():
        assert event["forms"][-1]["mqv:filter"].endswith(f"/{thing.name}/events/{name}")
    assert (
        td["security"] == ["bearer_sc"]
        and td["securityDefinitions"]["mqtt_sc"]["scheme"] == "basic"
    )
    assert {"mqv": "http://www.example.org/mqtt-binding#"} in [
        {k: v} for c in td["@context"] if isinstance(c, dict) for k, v in c.items() if k == "mqv"
    ]


def test_bad_broker_url_is_refused() -> None:
    t = things()[0]
    for url in ("http://x:1", "mqtt://", "mqtt://h:1/path"):
        with pytest.raises(WotError):
            build_td(t, gateway_id=GW, base_url="http://h:1", mqtt=MqttForms(url, "a/b"))
    with pytest.raises(WotError):
        build_td(t, gateway_id=GW, base_url="http://h:1", mqtt=MqttForms("mqtt://h:1", "a/#"))


def test_home_assistant_discovery_messages() -> None:
    msgs = dict(
        discovery_messages(things(), gateway_id=GW, gateway_name="home", prefix="homeassistant")
    )
    by_uid = {json.loads(p)["unique_id"]: (t, json.loads(p)) for t, p in msgs.items()}
    node = "streembit_Zx8-gw_id-01"
    topic, temp = by_uid[f"{node}_climate_temperature"]
    assert topic == f"homeassistant/sensor/{node}_climate/temperature/config"
    assert temp["device_class"] == "temperature" and temp["unit_of_measurement"] == "°C"
    assert temp["state_topic"] == f"streembit/{GW}/things/climate/properties/temperature"
    assert temp["availability_topic"] == f"streembit/{GW}/status"
    _, contact = by_uid[f"{node}_climate_contact"]
    assert contact["device_class"] == "door" and contact["payload_on"] == "false"
    _, lock = by_uid[f"{node}_front-door_state"]
    assert lock["device_class"] == "enum" and "locked" in lock["options"]
    _, on = by_uid[f"{node}_relay_on"]
    assert topic.startswith("homeassistant/") and on["payload_on"] == "true"
    assert "command_topic" not in on  # read-only: commands go through the owner's ACL
    assert all(t.endswith("/config") for t in msgs)


def test_mqtt_config_section() -> None:
    cfg = parse_config({"gateway": {"mqtt": {"broker": "mqtts://127.0.0.1:8883",
                                             "discovery": False}}}, "t.toml")  # fmt: skip
    assert cfg.mqtt.broker == "mqtts://127.0.0.1:8883" and not cfg.mqtt.discovery
    assert parse_config({}, "t.toml").mqtt.broker is None
    for bad, key in (({"discovery": True}, "broker"), ({"broker": "nope"}, "broker"),
                     ({"broker": "h:1", "things": "yes"}, "things"),
                     ({"broker": "h:1", "colour": 1}, "colour")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            parse_config({"gateway": {"mqtt": bad}}, "t.toml")
