"""The bridge to the ESP32 MicroPython companions (docs/companion.md).

- `broker`     the mosquitto configuration: passwd (PBKDF2-SHA512), topic ACL, TLS certificate
- `setup`      the broker connections and companion hubs the running gateway injects in drivers
- `discovery`  Home Assistant MQTT discovery messages for the gateway's Things
- `flash`      esptool / mpremote steps of `companion flash` and `companion pair`, board config

The frames, sessions and drivers are in `device_drivers.companion` and `micropython_client`.
"""
