"""One exception root (`StreembitError`) with a subclass per gateway layer."""

from __future__ import annotations

from device_drivers.errors import DriverConfigError, DriverError, StreembitError

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
    "RequestError",
    "StreembitError",
    "ThingError",
    "WotError",
]


class ConfigError(StreembitError):
    """A configuration file is malformed. Names the file, the key and what was expected."""

    code = "config"

    def __init__(self, file: str, key: str, expected: str) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        super().__init__(f"{file}: {key}: {expected}")


class IdentityError(StreembitError):
    """A key file is missing, unreadable, of the wrong type or with unsafe permissions."""

    code = "identity"


class MessageError(StreembitError):
    """A sealed message or token could not be opened or verified.

    Codes (stable): bad_format, bad_alg, bad_signature, wrong_audience, expired,
    not_yet_valid, replayed, too_large, missing_claim, bad_key, unknown_issuer.
    """

    code = "bad_message"


class AuthError(MessageError):
    """A bearer token was refused (HTTP 401)."""

    code = "unauthenticated"


class AclError(StreembitError):
    """An ACL document was refused (unsigned, foreign-signed, rolled back, malformed)."""

    code = "acl_invalid"


class AuditError(StreembitError):
    """The audit log could not be written or read."""

    code = "audit"


class ThingError(StreembitError):
    """A Thing refused an operation (unknown affordance, value out of bounds, fault)."""

    code = "thing"


class RequestError(StreembitError):
    """A request is malformed (bad JSON, wrong type, oversized) before it reaches a Thing."""

    code = "bad_request"


class WotError(StreembitError):
    """A Thing Description is invalid."""

    code = "td_invalid"


class BindingError(StreembitError):
    """A transport binding (HTTP, MQTT, P2P) failed."""

    code = "binding"


class P2PError(StreembitError):
    """The DHT or the peer transport failed, or a DHT record was refused."""

    code = "p2p"


class ProvisioningError(StreembitError):
    """Provisioning refused (already owned, bad owner key, bad payload)."""

    code = "provisioning"
