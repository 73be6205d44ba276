"""A DHT node as its contacts see it: a 20-byte id, and an address when it is a contact.

The same object names a lookup target (an id alone: a record key, a refresh target) and a
contact (an id at an address). Distances are XOR of the ids read as big-endian integers.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["ID_BITS", "ID_LEN", "Address", "Node", "random_id"]

Address = tuple[str, int]

ID_LEN: Final = 20
"""Bytes in a node id or a DHT key (sha1's size, as in the Kademlia paper)."""
ID_BITS: Final = 8 * ID_LEN


def random_id() -> bytes:
    """A fresh node id, uniform over the id space."""
    return os.urandom(ID_LEN)


class Node:
    """An id, with the address it answers at when it is a contact (None for a target).

    Compared by identity, as the routing table and lookups hold at most one object per id.
    """

    __slots__ = ("id", "ip", "long_id", "port")

    def __init__(self, node_id: bytes, ip: str | None = None, port: int | None = None) -> None:
        self.id = node_id
        self.ip = ip
        self.port = port
        self.long_id = int.from_bytes(node_id, "big")

    @property
    def address(self) -> Address:
        """Where the contact answers; ValueError for a target without an address."""
        if self.ip is None or self.port is None:
            raise ValueError(f"node {self.id.hex()} has no address")
        return (self.ip, self.port)

    def same_home_as(self, other: Node) -> bool:
        return self.ip == other.ip and self.port == other.port

    def distance_to(self, other: Node) -> int:
        """XOR distance between the two ids."""
        return self.long_id ^ other.long_id

    def __repr__(self) -> str:
        return f"Node({self.id.hex()}, {self.ip}:{self.port})"

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"
