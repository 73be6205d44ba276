"""Transport-neutral request and outcome objects. Bindings translate to and from these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.codes import Code, http_status
from gateway.errors import StreembitError

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


@dataclass(frozen=True)
class Request:
    subject: str  # the authenticated requester's id (RFC 7638 thumbprint)
    op: str  # a WoT operation type, see OPS
    thing: str  # Thing name
    name: str = ""  # affordance name ("" for Thing-level operations)
    input: Any = None
    binding: str = "http"
    request_id: str = ""  # the token's or message's jti, for the audit trail
    #: the delegation chain presented with the request (link texts, first first; docs/acl.md
    #: "Delegation"): when set, the chain alone decides, never the subject's own grant
    chain: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    code: str  # "ok" or an error code (gateway/codes.py)
    output: Any = None
    reason: str = ""
    rule: str = ""

    @classmethod
    def of_error(cls, exc: StreembitError, *, code: str | None = None, rule: str = "") -> Outcome:
        """The refusal carrying EXC's code (or CODE) and its message as the reason."""
        return cls(exc.code if code is None else code, reason=str(exc), rule=rule)

    @property
    def ok(self) -> bool:
        return self.code == Code.OK

    @property
    def http_status(self) -> int:
        """The code's status in the registry (500 for an unregistered code)."""
        return http_status(self.code)

    def error_body(self) -> dict[str, str]:
        return {"error": self.code, "reason": self.reason}
