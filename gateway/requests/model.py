"""Transport-neutral request and outcome objects. Bindings translate to and from these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# WoT operation types the gateway serves, per affordance kind.
PROPERTY_OPS = frozenset({"readproperty", "writeproperty", "observeproperty", "unobserveproperty"})
ACTION_OPS = frozenset({"invokeaction"})
EVENT_OPS = frozenset({"subscribeevent", "unsubscribeevent"})
THING_OPS = frozenset({"readallproperties"})
OPS = PROPERTY_OPS | ACTION_OPS | EVENT_OPS | THING_OPS

# The ACL grants these; the "un-" operations ride on their "subscribe" counterparts.
ACL_OP = {
    "unobserveproperty": "observeproperty",
    "unsubscribeevent": "subscribeevent",
    "readallproperties": "readproperty",
}

# Outcome codes -> HTTP status. Bindings that are not HTTP use the code itself.
HTTP_STATUS = {
    "ok": 200,
    "bad_request": 400,
    "invalid_input": 400,
    "out_of_range": 400,
    "read_only": 405,
    "unauthenticated": 401,
    "forbidden": 403,
    "unknown_thing": 404,
    "unknown_affordance": 404,
    "unsupported_op": 405,
    "too_large": 413,
    "jammed": 409,
    "sensor_fault": 503,
    "driver_fault": 503,
    "audit_unavailable": 503,
    "busy": 503,  # e.g. another ACL install holds the install lock: retry
    "storage_unavailable": 503,  # a file of the state folder could not be written
    "rate_limited": 429,
}


@dataclass(frozen=True)
class Request:
    subject: str  # the authenticated requester's id (RFC 7638 thumbprint)
    op: str  # a WoT operation type, see OPS
    thing: str  # Thing name
    name: str = ""  # affordance name ("" for Thing-level operations)
    input: Any = None
    binding: str = "http"
    request_id: str = ""  # the token's or message's jti, for the audit trail


@dataclass(frozen=True)
class Outcome:
    code: str  # "ok" or an error code (see HTTP_STATUS)
    output: Any = None
    reason: str = ""
    rule: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500 if not self.ok else 200)

    def error_body(self) -> dict[str, str]:
        return {"error": self.code, "reason": self.reason}
