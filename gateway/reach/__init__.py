"""Reaching a gateway from anywhere (docs/reach.md): reachability checks by dial-back, router
port mapping (UPnP-IGD, NAT-PMP), relays through ordinary public peers, and direct upgrade by
synchronised TCP hole punching. Every path carries the same end-to-end sealed messages."""
