"""The punch coordination messages (docs/reach.md, "The punch operation"): connect, sync and
cancel as exchanged over the relayed session, checked totally (`validate_message`,
`parse_message`: ReachError(punch_failed) naming what was wrong) and encoded back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway import jsonsafe
from gateway.codes import Code
from gateway.errors import ReachError
from gateway.reach.observe import Address, format_addr, parse_addr
from gateway.reach.spray import SprayRole
from gateway.text import clean

__all__ = [
    "MAX_ADDRS",
    "CancelMsg",
    "ConnectMsg",
    "PunchMessage",
    "SyncMsg",
    "encode_message",
    "parse_message",
    "validate_message",
]

MAX_ADDRS: Final = 8  # addresses in one connect message
MAX_ADDR_CHARS: Final = 64  # "[v6]:port" is at most 47
MAX_REASON_CHARS: Final = 200
MAX_MESSAGE_BYTES: Final = 2048
_LIMITS: Final = jsonsafe.JsonLimits(max_bytes=MAX_MESSAGE_BYTES, max_depth=2)


def _fail(reason: str) -> ReachError:
    return ReachError(f"punch: {reason}", code=Code.PUNCH_FAILED)


@dataclass(frozen=True)
class ConnectMsg:
    """{"type": "connect", "addrs": ["ip:port", ...]}: where the sender can be dialed; with
    "spray": "E" or "S" (the initiator's role in a spray, gateway/reach/spray.py), both sides
    spray instead of dialing once, the responder in the other role."""

    addrs: tuple[Address, ...]
    spray: SprayRole | None = None


@dataclass(frozen=True)
class SyncMsg:
    """{"type": "sync"}: the initiator dials RTT/2 after sending it; the responder on receipt."""


@dataclass(frozen=True)
class CancelMsg:
    """{"type": "cancel", "reason": "..."}: the sender gives up (the relayed path stays)."""

    reason: str


PunchMessage = ConnectMsg | SyncMsg | CancelMsg
_KEYS: Final = {"connect": {"type", "addrs"}, "sync": {"type"}, "cancel": {"type", "reason"}}
_OPTIONAL: Final = {"connect": frozenset({"spray"})}


def _addr_text(text: object) -> Address:
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ADDR_CHARS:
        raise _fail(f"an address is not a string of 1-{MAX_ADDR_CHARS} characters")
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise _fail("an IPv6 address must be written [addr]:port")
    if not colon or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise _fail("an address is not ip:port")
    try:
        return parse_addr(host, int(port))
    except ValueError as exc:
        raise _fail(f"bad address: {exc}") from None


def validate_message(msg: object) -> PunchMessage:
    """One punch message from the other side, checked; ReachError(punch_failed) otherwise.

    Total and bounded: any object (dicts from the session's decoder, or anything else) gives a
    message or a ReachError naming what was wrong."""
    if not isinstance(msg, Mapping):
        raise _fail("a punch message is not a JSON object")
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in _KEYS:
        raise _fail(f"unknown punch message type (one of {', '.join(_KEYS)})")
    optional = _OPTIONAL.get(kind, frozenset())
    if len(msg) > len(_KEYS[kind]) + len(optional) or not (
        _KEYS[kind] <= set(msg) <= _KEYS[kind] | optional
    ):
        raise _fail(f"a {kind} message has exactly the members {', '.join(sorted(_KEYS[kind]))}")
    if kind == "sync":
        return SyncMsg()
    if kind == "cancel":
        reason = msg["reason"]
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise _fail(f"a cancel reason is not a string of at most {MAX_REASON_CHARS}")
        return CancelMsg(clean(reason))
    addrs = msg["addrs"]
    if not isinstance(addrs, list) or not 0 < len(addrs) <= MAX_ADDRS:
        raise _fail(f"addrs is not a list of 1-{MAX_ADDRS} addresses")
    spray = msg.get("spray")
    if "spray" in msg and spray not in ("E", "S"):
        raise _fail('spray is "E" or "S"')
    return ConnectMsg(tuple(_addr_text(a) for a in addrs), spray)


def parse_message(data: bytes | str) -> PunchMessage:
    """A punch message from its JSON text (bounded by gateway.jsonsafe); ReachError otherwise."""
    try:
        doc = jsonsafe.loads_object(data, _LIMITS, what="punch message")
    except jsonsafe.JsonInputError as exc:
        raise _fail(str(exc)) from None
    return validate_message(doc)


def encode_message(msg: PunchMessage) -> dict[str, Any]:
    if isinstance(msg, ConnectMsg):
        out: dict[str, Any] = {"type": "connect", "addrs": [format_addr(a) for a in msg.addrs]}
        if msg.spray is not None:
            out["spray"] = msg.spray
        return out
    if isinstance(msg, SyncMsg):
        return {"type": "sync"}
    return {"type": "cancel", "reason": msg.reason[:MAX_REASON_CHARS]}
