"""Streembit P2P: the validating Kademlia DHT and its signed contact records.

`DhtNode` (dht.py) is the node; `make_contact_record` / `verify_record` (records.py) make and
check records. The record format is documented in docs/dht-records.md.

The node's modules (dht, server, protocol, ...) load on first use of their names: a peer
command that only checks a cached record never imports the DHT (start-up time).
"""

from typing import TYPE_CHECKING, Any

from gateway.p2p.records import (
    DEFAULT_TTL,
    MAX_RECORD_BYTES,
    RECORD_TYP,
    Record,
    RecordCode,
    dht_key_digest,
    make_contact_record,
    verify_record,
)
from gateway.p2p.settings import DhtSettings

if TYPE_CHECKING:
    from gateway.p2p.dht import DhtNode, Reachability
    from gateway.p2p.server import ValidatingServer

_LAZY = {"DhtNode": "dht", "Reachability": "dht", "ValidatingServer": "server"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.p2p' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"gateway.p2p.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_TTL",
    "MAX_RECORD_BYTES",
    "RECORD_TYP",
    "DhtNode",
    "DhtSettings",
    "Reachability",
    "Record",
    "RecordCode",
    "ValidatingServer",
    "dht_key_digest",
    "make_contact_record",
    "verify_record",
]
