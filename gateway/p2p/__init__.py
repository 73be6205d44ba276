"""Streembit P2P: the validating Kademlia DHT and its signed contact records.

`DhtNode` (dht.py) is the node; `make_contact_record` / `verify_record` (records.py) make and
check records. The record format is documented in docs/dht-records.md.
"""

from gateway.p2p.dht import DhtNode
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
from gateway.p2p.server import ValidatingServer
from gateway.p2p.settings import DhtSettings

__all__ = [
    "DEFAULT_TTL",
    "MAX_RECORD_BYTES",
    "RECORD_TYP",
    "DhtNode",
    "DhtSettings",
    "Record",
    "RecordCode",
    "ValidatingServer",
    "dht_key_digest",
    "make_contact_record",
    "verify_record",
]
