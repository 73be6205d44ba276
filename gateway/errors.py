"""One exception root (`StreembitError`) with a subclass per gateway layer.

Every error carries a stable `code` of the registry (gateway/codes.py), which gives it its HTTP
status and exit code; `render(exc)` there turns an error into what a front end shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from device_drivers.errors import DriverConfigError, DriverError, StreembitError
from gateway.codes import Code

if TYPE_CHECKING:
    from gateway.identity import PublicIdentity

__all__ = [
    "AclError",
    "AuditError",
    "AuthError",
    "BindingError",
    "ConfigError",
    "DriverConfigError",
    "DriverError",
    "IdentityError",
    "MessageError",
    "P2PError",
    "ProvisioningError",
    "ReachError",
    "RequestError",
    "StreembitError",
    "ThingError",
    "WotError",
]


class ConfigError(StreembitError):
    """A configuration file is malformed. Names the file, the key and what was expected."""

    code: str = Code.CONFIG

    def __init__(self, file: str, key: str, expected: str) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        super().__init__(f"{file}: {key}: {expected}")


class IdentityError(StreembitError):
    """A key file is missing, unreadable, of the wrong type or with unsafe permissions."""

    code: str = Code.IDENTITY


class MessageError(StreembitError):
    """A sealed message or token could not be opened or verified.

    Codes (stable): bad_format, bad_alg, bad_signature, wrong_audience, expired,
    not_yet_valid, replayed, too_large, missing_claim, bad_key, unknown_issuer.

    `sender` is set when the refusal came after the sender was authenticated (a sealed
    message's signature verified, a session frame decrypted): it attributes the refusal in the
    audit and is never acted on.
    """

    code: str = Code.BAD_MESSAGE
    sender: PublicIdentity | None = None


class AuthError(MessageError):
    """A bearer token was refused (HTTP 401)."""

    code: str = Code.UNAUTHENTICATED


class AclError(StreembitError):
    """An ACL document was refused (unsigned, foreign-signed, rolled back, malformed)."""

    code: str = Code.ACL_INVALID


class AuditError(StreembitError):
    """The audit log could not be written or read."""

    code: str = Code.AUDIT


class ThingError(StreembitError):
    """A Thing refused an operation (unknown affordance, value out of bounds, fault)."""

    code: str = Code.THING


class RequestError(StreembitError):
    """A request is malformed (bad JSON, wrong type, oversized) before it reaches a Thing."""

    code: str = Code.BAD_REQUEST


class WotError(StreembitError):
    """A Thing Description is invalid."""

    code: str = Code.TD_INVALID


class BindingError(StreembitError):
    """A transport binding (HTTP, MQTT, P2P) failed."""

    code: str = Code.BINDING


class P2PError(StreembitError):
    """The DHT or the peer transport failed, or a DHT record was refused."""

    code: str = Code.P2P


class ReachError(P2PError):
    """A reachability step (relay, dial-back, port mapping, hole punch) refused or failed."""

    code: str = Code.REACH


class ProvisioningError(StreembitError):
    """Provisioning refused (already owned, bad owner key, bad payload)."""

    code: str = Code.PROVISIONING
