"""Circuit relays (docs/reach.md, "Relays"): any public node relays for gateways behind NAT.

`RelayService` is the relay (reservations, circuits, limits, an address observer);
`RelayReservations` keeps a gateway's reservations at several relays; `sign_reservation` and
`verify_reservation` are the signed reservation request. The relay pipes end-to-end sealed
messages unchanged: it can neither read nor alter them.
"""

from gateway.reach.relay.client import FindRelays, OnCircuit, RelayReservations
from gateway.reach.relay.limits import RelayLimits
from gateway.reach.relay.reservation import Reservation, sign_reservation, verify_reservation
from gateway.reach.relay.service import RelayService

__all__ = [
    "FindRelays",
    "OnCircuit",
    "RelayLimits",
    "RelayReservations",
    "RelayService",
    "Reservation",
    "sign_reservation",
    "verify_reservation",
]
