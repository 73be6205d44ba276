"""Pairing data for the ESP32 MicroPython companions (docs/provisioning.md, section 6).

`companion_pairing(state, device, broker_host, broker_port)` returns what a board needs to link
to this gateway: the gateway id, the broker address, a per-device MQTT username and password,
and a random per-device HMAC-SHA256 key (32 bytes) for the frame authentication. It is stored
in ``pairings.json`` (mode 0600, written atomically) and idempotent per device name: asking
again returns the same credentials (the broker address is updated). A factory reset deletes
the file; `forget_pairing` drops one device.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any, Final

from gateway import jsonsafe
from gateway.errors import ProvisioningError
from gateway.identity import load_public
from gateway.provisioning.locking import provisioning_lock
from gateway.state import StateDir
from gateway.storage import atomic_write_text

PAIRINGS_FILE: Final = "pairings.json"
FILE_MODE: Final = 0o600  # device passwords and keys
HMAC_KEY_BYTES: Final = 32
PASSWORD_BYTES: Final = 24  # 192 bits, 32 base64url characters
DEVICE_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
USERNAME_PREFIX: Final = "companion-"
MAX_FILE_BYTES: Final = 1024 * 1024
MAX_DEVICES: Final = 256


def _err(code: str, message: str) -> ProvisioningError:
    return ProvisioningError(message, code=code)


def _state_path(state: StateDir | Path) -> Path:
    return state.path if isinstance(state, StateDir) else StateDir(Path(state)).path


def _gateway_id(path: Path) -> str:
    pub = path / "gateway.key.pub"
    if pub.exists():
        return load_public(pub).id
    return StateDir(path).load_identity().id


def _load(path: Path) -> dict[str, dict[str, Any]]:
    file = path / PAIRINGS_FILE
    try:
        with file.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    try:
        doc: Any = jsonsafe.loads(raw, jsonsafe.FILE_LIMITS)
        devices = doc["devices"]
        if doc.get("v") != 1 or not isinstance(devices, dict) or len(raw) > MAX_FILE_BYTES:
            raise ValueError("not a version 1 pairings file")
    except (ValueError, KeyError, TypeError):
        raise _err("pairings_damaged", f"{file} is damaged; fix or delete it") from None
    return devices


def _save(path: Path, devices: dict[str, dict[str, Any]]) -> None:
    doc = {"v": 1, "devices": devices}
    atomic_write_text(
        path / PAIRINGS_FILE, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=FILE_MODE
    )


def _check_broker(host: str, port: int) -> None:
    if not isinstance(host, str) or not host or len(host) > 253 or not host.isprintable():
        raise _err("bad_broker", "broker host must be a host name or address")
    if " " in host or "/" in host:
        raise _err("bad_broker", "broker host must be a host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _err("bad_broker", "broker port must be 1..65535")


def _view(gateway_id: str, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "gateway": gateway_id,
        "device": name,
        "broker": {"host": entry["broker_host"], "port": entry["broker_port"]},
        "username": entry["username"],
        "password": entry["password"],
        "hmac_key": entry["hmac_key"],
        "created": entry["created"],
    }


def companion_pairing(
    state: StateDir | Path, device_name: str, broker_host: str, broker_port: int
) -> dict[str, Any]:
    """The pairing record of DEVICE_NAME (made on first call). Contains secrets: never log it.

    Keys: v, gateway, device, broker {host, port}, username, password (base64url), hmac_key
    (64 hex digits = 32 bytes), created (unix s)."""
    if not isinstance(device_name, str) or not DEVICE_NAME.fullmatch(device_name):
        raise _err(
            "bad_device_name",
            "device name: 1-32 of a-z, 0-9 and '-', not starting or ending in '-'",
        )
    _check_broker(broker_host, broker_port)
    path = _state_path(state)
    gateway_id = _gateway_id(path)
    with provisioning_lock(path):
        devices = _load(path)
        entry = devices.get(device_name)
        if entry is None:
            if len(devices) >= MAX_DEVICES:
                raise _err("too_many_devices", f"at most {MAX_DEVICES} companions per gateway")
            entry = {
                "username": USERNAME_PREFIX + device_name,
                "password": secrets.token_urlsafe(PASSWORD_BYTES),
                "hmac_key": secrets.token_hex(HMAC_KEY_BYTES),
                "created": int(time.time()),
                "broker_host": broker_host,
                "broker_port": broker_port,
            }
            devices[device_name] = entry
            _save(path, devices)
        elif (entry.get("broker_host"), entry.get("broker_port")) != (broker_host, broker_port):
            entry["broker_host"], entry["broker_port"] = broker_host, broker_port
            _save(path, devices)
        return _view(gateway_id, device_name, entry)


def list_pairings(state: StateDir | Path) -> list[str]:
    """The paired device names."""
    return sorted(_load(_state_path(state)))


def forget_pairing(state: StateDir | Path, device_name: str) -> bool:
    """Drop DEVICE_NAME's credentials; True if it was paired."""
    path = _state_path(state)
    with provisioning_lock(path):
        devices = _load(path)
        if devices.pop(device_name, None) is None:
            return False
        _save(path, devices)
        return True
