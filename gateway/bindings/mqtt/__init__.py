"""The gateway on an MQTT broker: the W3C WoT MQTT binding (publish side) and Home Assistant
discovery. See `gateway.bindings.mqtt.binding`."""

from gateway.bindings.mqtt.binding import MqttBinding

__all__ = ["MqttBinding"]
