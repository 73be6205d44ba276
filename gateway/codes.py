"""The one registry of stable error codes: each code with its HTTP status, CLI exit code,
how the P2P binding answers it, where it is documented, and what it means.

The string values are wire- and doc-visible (HTTP bodies, sealed errors, plain refusals, the
audit log, `--json` output): never rename one. A code belongs to one or more scopes:

- `Scope.REQUEST`: an outcome of the request path on every binding (docs/http-binding.md §3);
- `Scope.MESSAGE`: a refusal of a sealed message (docs/protocol.md §3.1);
- `Scope.PROVISIONING`: a refusal of a network claim or transfer (docs/provisioning.md §4, §5);
- `Scope.CLI`: a code whose only job is the exit status of a command;
- `Scope.LAYER`: the default code of an exception class (gateway/errors.py);
- `Scope.DHT`: why a node refuses a DHT record (docs/dht-records.md, "What a node checks");
- `Scope.REACH`: why a relay, a dial-back, a port mapping or a hole punch refused or failed
  (docs/reach.md);
- `Scope.ACL`: why an ACL document or its install was refused (docs/acl.md §2.1);
- `Scope.STATE`: why the state folder cannot be used (docs/operations.md).

Codes not registered here fall back to the defaults
of `http_status` and `exit_code`. Errors render themselves through `render`.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Final, NamedTuple

from device_drivers.errors import StreembitError

EXIT_OK: Final = 0
EXIT_FAIL: Final = 1  # refused or failed at run time
EXIT_USAGE: Final = 2  # bad usage, bad config or bad input file


class Scope(Enum):
    REQUEST = "request"
    MESSAGE = "message"
    PROVISIONING = "provisioning"
    CLI = "cli"
    LAYER = "layer"
    DHT = "dht"
    REACH = "reach"
    ACL = "acl"
    STATE = "state"


class Answer(Enum):
    """How the P2P binding answers a frame or request refused with a code."""

    SEALED = "sealed"  # a sealed `error` to the verified sender
    PLAIN = "plain"  # a plain JSON refusal: the sender is not verified (gateway/peer/wire.py)
    BOTH = "both"  # plain before the message is opened, sealed after


class Meta(NamedTuple):
    status: int
    exit_code: int
    answer: Answer
    scopes: frozenset[Scope]
    meaning: str


_R, _M, _P, _C, _L = Scope.REQUEST, Scope.MESSAGE, Scope.PROVISIONING, Scope.CLI, Scope.LAYER
_D, _RE, _A, _ST = Scope.DHT, Scope.REACH, Scope.ACL, Scope.STATE
_S, _PL = Answer.SEALED, Answer.PLAIN


class Code(StrEnum):
    """A stable error code. `Code.X == "x"`: members are the strings themselves."""

    _meta: Meta

    def __new__(
        cls,
        value: str,
        status: int,
        exit_code: int,
        answer: Answer,
        scopes: tuple[Scope, ...],
        meaning: str,
    ) -> Code:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj._meta = Meta(status, exit_code, answer, frozenset(scopes), meaning)
        return obj

    # -- the request path (docs/http-binding.md §3), in the order of that table
    OK = "ok", 200, EXIT_OK, _S, (_R,), "success"
    BAD_REQUEST = "bad_request", 400, EXIT_FAIL, _S, (_R, _L), "malformed request or ACL refused"
    INVALID_INPUT = "invalid_input", 400, EXIT_FAIL, _S, (_R,), "a value of the wrong type"
    OUT_OF_RANGE = "out_of_range", 400, EXIT_FAIL, _S, (_R,), "a number outside its bounds"
    UNAUTHENTICATED = "unauthenticated", 401, EXIT_FAIL, _S, (_R, _L), "no or refused token"
    FORBIDDEN = "forbidden", 403, EXIT_FAIL, _S, (_R,), "refused by the ACL or owner-only"
    UNKNOWN_THING = "unknown_thing", 404, EXIT_FAIL, _S, (_R,), "no such Thing"
    UNKNOWN_AFFORDANCE = "unknown_affordance", 404, EXIT_FAIL, _S, (_R,), "no such affordance"
    READ_ONLY = "read_only", 405, EXIT_FAIL, _S, (_R,), "a write to a read-only property"
    UNSUPPORTED_OP = "unsupported_op", 405, EXIT_FAIL, _S, (_R,), "an operation not offered"
    JAMMED = "jammed", 409, EXIT_FAIL, _S, (_R,), "the lock is jammed"
    TOO_LARGE = "too_large", 413, EXIT_FAIL, _PL, (_R, _M), "a body or frame over its limit"
    RATE_LIMITED = "rate_limited", 429, EXIT_FAIL, Answer.BOTH, (_R,), "over a rate limit"
    SENSOR_FAULT = "sensor_fault", 503, EXIT_FAIL, _S, (_R,), "value stale or unreadable"
    DRIVER_FAULT = "driver_fault", 503, EXIT_FAIL, _S, (_R, _L), "the device failed"
    AUDIT_UNAVAILABLE = "audit_unavailable", 503, EXIT_FAIL, _S, (_R,), "audit log not writable"
    BUSY = "busy", 503, EXIT_FAIL, _S, (_R, _P), "a lock is held too long; retry"
    STORAGE_UNAVAILABLE = "storage_unavailable", 503, EXIT_FAIL, _S, (_R,), "state not writable"

    # -- sealed-message refusals (docs/protocol.md §3.1); TOO_LARGE above
    BAD_FORMAT = "bad_format", 400, EXIT_FAIL, _PL, (_M,), "not a well-formed sealed message"
    BAD_ALG = "bad_alg", 400, EXIT_FAIL, _PL, (_M,), "an algorithm other than the profile's"
    BAD_KEY = "bad_key", 400, EXIT_USAGE, _PL, (_M, _C), "not a P-256 public key"
    DECRYPT_FAILED = "decrypt_failed", 400, EXIT_FAIL, _PL, (_M,), "not decryptable"
    BAD_SIGNATURE = "bad_signature", 400, EXIT_FAIL, _PL, (_M,), "the signature does not verify"
    ISSUER_MISMATCH = "issuer_mismatch", 400, EXIT_FAIL, _PL, (_M,), "iss is not the signer"
    WRONG_AUDIENCE = "wrong_audience", 400, EXIT_FAIL, _PL, (_M,), "aud is not the receiver"
    EXPIRED = "expired", 400, EXIT_FAIL, _S, (_M,), "the message has expired"
    NOT_YET_VALID = "not_yet_valid", 400, EXIT_FAIL, _S, (_M,), "issued in the future"
    TOO_LONG_LIVED = "too_long_lived", 400, EXIT_FAIL, _PL, (_M,), "exp - iat over 300 s"
    MISSING_CLAIM = "missing_claim", 400, EXIT_FAIL, _PL, (_M,), "a required claim is absent"
    REPLAYED = "replayed", 400, EXIT_FAIL, _S, (_M,), "the jti was already accepted"
    BAD_TYPE = "bad_type", 400, EXIT_FAIL, _PL, (_M,), "typ not request/reply/event/error"
    REPLAY_CACHE_FULL = "replay_cache_full", 503, EXIT_FAIL, _S, (_M,), "replay cache full"
    UNKNOWN_SESSION = "unknown_session", 400, EXIT_FAIL, _PL, (_M,), "no such session key here"
    SESSION_EXPIRED = "session_expired", 400, EXIT_FAIL, _PL, (_M,), "the session key expired"
    NEEDS_SIGNATURE = "needs_signature", 400, EXIT_FAIL, _PL, (_M,), "op needs a sealed message"

    # -- network claim and transfer (docs/provisioning.md §4, §5); BUSY above
    ALREADY_OWNED = "already_owned", 409, EXIT_FAIL, _S, (_P,), "claiming is closed"
    CLAIM_MALFORMED = "claim_malformed", 400, EXIT_FAIL, _S, (_P,), "claim input malformed"
    NO_SETUP_CODE = "no_setup_code", 409, EXIT_FAIL, _S, (_P,), "no setup code was made"
    SETUP_CODE_USED = "setup_code_used", 409, EXIT_FAIL, _S, (_P,), "the setup code was used"
    BAD_SETUP_CODE = "bad_setup_code", 403, EXIT_FAIL, _S, (_P,), "wrong setup code (counted)"
    CLAIM_LOCKED = "claim_locked", 429, EXIT_FAIL, _S, (_P,), "locked after wrong codes"
    NOT_OWNED = "not_owned", 409, EXIT_FAIL, _S, (_P,), "no owner to transfer from"
    TRANSFER_INVALID = "transfer_invalid", 400, EXIT_FAIL, _S, (_P,), "statement malformed"
    TRANSFER_NOT_OWNER = "transfer_not_owner", 403, EXIT_FAIL, _S, (_P,), "not the owner's"
    TRANSFER_BAD_SIGNATURE = "transfer_bad_signature", 403, EXIT_FAIL, _S, (_P,), "bad signature"
    TRANSFER_WRONG_GATEWAY = "transfer_wrong_gateway", 400, EXIT_FAIL, _S, (_P,), "other gateway"
    TRANSFER_SAME_OWNER = "transfer_same_owner", 400, EXIT_FAIL, _S, (_P,), "same owner"
    TRANSFER_NOT_YET_VALID = "transfer_not_yet_valid", 400, EXIT_FAIL, _S, (_P,), "future iat"
    TRANSFER_EXPIRED = "transfer_expired", 400, EXIT_FAIL, _S, (_P,), "statement expired"
    TRANSFER_FORBIDDEN = "transfer_forbidden", 403, EXIT_FAIL, _S, (_P,), "sender not an owner"
    TRANSFER_REPLAYED = "transfer_replayed", 409, EXIT_FAIL, _S, (_P,), "statement already used"
    OWNER_CHANGED = "owner_changed", 409, EXIT_FAIL, _S, (_P,), "the owner changed meanwhile"
    STATE_IO = "state_io", 503, EXIT_FAIL, _S, (_P,), "a state file is not readable/writable"
    SETUP_STATE_DAMAGED = "setup_state_damaged", 503, EXIT_FAIL, _S, (_P,), "setup file damaged"

    # -- DHT records refused by a node (docs/dht-records.md): a STORE answered False, a value
    # dropped from a lookup; a peer command that finds no valid record fails (exit 1)
    RECORD_NOT_TEXT = "record_not_text", 400, EXIT_FAIL, _PL, (_D,), "not a string or bytes"
    RECORD_TOO_LARGE = "record_too_large", 400, EXIT_FAIL, _PL, (_D,), "over 4096 bytes"
    RECORD_MALFORMED = "record_malformed", 400, EXIT_FAIL, _PL, (_D,), "not a well-formed record"
    RECORD_BAD_ALG = "record_bad_alg", 400, EXIT_FAIL, _PL, (_D,), "alg is not ES256"
    RECORD_BAD_KEY = "record_bad_key", 400, EXIT_FAIL, _PL, (_D,), "jwk not a P-256 public key"
    RECORD_BAD_SIGNATURE = "record_bad_signature", 400, EXIT_FAIL, _PL, (_D,), "bad signature"
    RECORD_KEY_MISMATCH = "record_key_mismatch", 400, EXIT_FAIL, _PL, (_D,), "id is not the key's"
    RECORD_WRONG_DHT_KEY = "record_wrong_dht_key", 400, EXIT_FAIL, _PL, (_D,), "filed elsewhere"
    RECORD_MISSING_FIELD = "record_missing_field", 400, EXIT_FAIL, _PL, (_D,), "a field missing"
    RECORD_BAD_FIELD = "record_bad_field", 400, EXIT_FAIL, _PL, (_D,), "a field out of bounds"
    RECORD_EXPIRED = "record_expired", 400, EXIT_FAIL, _PL, (_D,), "the record has expired"
    RECORD_NOT_YET_VALID = "record_not_yet_valid", 400, EXIT_FAIL, _PL, (_D,), "iat in the future"

    # -- reaching a gateway behind NAT (docs/reach.md): relays, dial-backs, mappings, punches
    RELAY_DISABLED = "relay_disabled", 503, EXIT_FAIL, _PL, (_RE,), "this node does not relay"
    RELAY_FULL = "relay_full", 503, EXIT_FAIL, _PL, (_RE,), "the relay is at a limit"
    RELAY_BAD_RESERVATION = "relay_bad_reservation", 400, EXIT_FAIL, _PL, (_RE,), "bad request"
    RELAY_NO_RESERVATION = "relay_no_reservation", 404, EXIT_FAIL, _PL, (_RE,), "not reserved"
    RELAY_RATE_LIMITED = "relay_rate_limited", 429, EXIT_FAIL, _PL, (_RE,), "over a rate limit"
    RELAY_CIRCUIT_LIMIT = "relay_circuit_limit", 503, EXIT_FAIL, _PL, (_RE,), "circuit limit hit"
    RELAY_UNREACHABLE = "relay_unreachable", 502, EXIT_FAIL, _PL, (_RE,), "no relay answered"
    DIALBACK_REFUSED = "dialback_refused", 400, EXIT_FAIL, _PL, (_RE,), "dial-back refused"
    PORTMAP_UNAVAILABLE = "portmap_unavailable", 502, EXIT_FAIL, _PL, (_RE,), "no mapping router"
    PORTMAP_REFUSED = "portmap_refused", 502, EXIT_FAIL, _PL, (_RE,), "the router refused"
    PUNCH_FAILED = "punch_failed", 502, EXIT_FAIL, _PL, (_RE,), "no direct path was made"
    REACH = "reach", 502, EXIT_FAIL, _S, (_L,), "a reachability step failed"
    # the DHT lookup service (docs/reach.md "Lookups"; bad_request, rate_limited and timeout
    # too) and the peer client's contact lookup
    BAD_ID = "bad_id", 400, EXIT_FAIL, _PL, (_RE,), "not a gateway id (43 base64url chars)"
    NOT_FOUND = "not_found", 404, EXIT_FAIL, _PL, (_RE,), "no valid contact record under it"
    UNAVAILABLE = "unavailable", 503, EXIT_FAIL, _PL, (_RE,), "no DHT node yet, or it failed"

    # -- delegation chains (docs/acl.md "Delegation"): why a presented chain was refused; the
    # request path answers them like `forbidden` (docs/http-binding.md section 3)
    DELEGATION_MALFORMED = "delegation_malformed", 400, EXIT_FAIL, _S, (_R, _L), "chain malformed"
    DELEGATION_BAD_SIGNATURE = "delegation_bad_signature", 403, EXIT_FAIL, _S, (_R,), "bad link"
    DELEGATION_WIDENS = "delegation_widens", 403, EXIT_FAIL, _S, (_R,), "a link widens"
    DELEGATION_LOOP = "delegation_loop", 403, EXIT_FAIL, _S, (_R,), "a chain revisits a key"
    DELEGATION_TOO_DEEP = "delegation_too_deep", 403, EXIT_FAIL, _S, (_R,), "past depth limit"
    DELEGATION_NOT_ALLOWED = "delegation_not_allowed", 403, EXIT_FAIL, _S, (_R,), "depth 0"
    DELEGATION_REVOKED = "delegation_revoked", 403, EXIT_FAIL, _S, (_R,), "a link is revoked"
    DELEGATION_EXPIRED = "delegation_expired", 403, EXIT_FAIL, _S, (_R,), "a link out of time"
    DELEGATION_WRONG_HOLDER = "delegation_wrong_holder", 403, EXIT_FAIL, _S, (_R,), "not holder"
    DELEGATION_USED_UP = "delegation_used_up", 403, EXIT_FAIL, _S, (_R,), "use count exhausted"

    # -- command line: bad usage, config or input (exit 2)
    CONFIG = "config", 500, EXIT_USAGE, _S, (_C, _L), "a configuration file is malformed"
    IDENTITY = "identity", 500, EXIT_USAGE, _S, (_C, _L), "a key file is missing or unsafe"
    NO_KEY = "no_key", 500, EXIT_USAGE, _S, (_C,), "no key file"
    ACL_INVALID = "acl_invalid", 400, EXIT_USAGE, _S, (_C, _L), "an ACL document was refused"
    ACL_MALFORMED = "acl_malformed", 400, EXIT_USAGE, _S, (_C, _A), "an ACL document malformed"
    DRIVER_CONFIG = "driver_config", 500, EXIT_USAGE, _S, (_C, _L), "unknown driver or setting"
    CANNOT_LISTEN = "cannot_listen", 500, EXIT_USAGE, _S, (_C,), "a port is taken"
    USAGE = "usage", 400, EXIT_USAGE, _S, (_C,), "a missing or contradictory option"
    BAD_INPUT = "bad_input", 400, EXIT_USAGE, _S, (_C,), "a JSON argument out of bounds"
    # QR payloads and images given to a provisioning command (docs/provisioning.md §2, §3)
    NOT_STREEMBIT_PAYLOAD = "not_streembit_payload", 400, EXIT_USAGE, _S, (_C,), "not SB:..."
    PAYLOAD_TOO_LARGE = "payload_too_large", 400, EXIT_USAGE, _S, (_C,), "payload too long"
    PAYLOAD_ENCODING = "payload_encoding", 400, EXIT_USAGE, _S, (_C,), "payload not base38"
    PAYLOAD_TRUNCATED = "payload_truncated", 400, EXIT_USAGE, _S, (_C,), "payload cut off"
    PAYLOAD_VERSION = "payload_version", 400, EXIT_USAGE, _S, (_C,), "payload version unknown"
    PAYLOAD_MALFORMED = "payload_malformed", 400, EXIT_USAGE, _S, (_C,), "payload fields bad"
    PAYLOAD_CHECKSUM = "payload_checksum", 400, EXIT_USAGE, _S, (_C,), "payload CRC mismatch"
    PAYLOAD_KIND = "payload_kind", 400, EXIT_USAGE, _S, (_C,), "owner/gateway QR mixed up"
    IMAGE_UNREADABLE = "image_unreadable", 400, EXIT_USAGE, _S, (_C,), "not a readable image"
    IMAGE_TOO_LARGE = "image_too_large", 400, EXIT_USAGE, _S, (_C,), "too many bytes or pixels"
    NO_QR = "no_qr", 400, EXIT_USAGE, _S, (_C,), "no QR code found"
    SEVERAL_QR = "several_qr", 400, EXIT_USAGE, _S, (_C,), "two or more Streembit QR codes"
    BAD_ADDRESS = "bad_address", 400, EXIT_USAGE, _S, (_C,), "not a ws:// URL or HOST:PORT"
    RESET_UNCONFIRMED = "reset_unconfirmed", 400, EXIT_USAGE, _S, (_C,), "reset not confirmed"
    NO_FILE = "no_file", 500, EXIT_USAGE, _S, (_C,), "a file named on the command line is missing"
    FILE_ERROR = "file_error", 500, EXIT_FAIL, _S, (_C,), "a file could not be read or written"

    # -- ACL documents and installs (docs/acl.md §2.1; acl_malformed above). The HTTP and P2P
    # installs answer them as bad_request, acl_busy/acl_io as busy/storage_unavailable
    ACL_TOO_LARGE = "acl_too_large", 413, EXIT_FAIL, _S, (_A,), "ACL text over 262 144 chars"
    ACL_UNSIGNED = "acl_unsigned", 400, EXIT_FAIL, _S, (_A,), "not a signed compact JWS"
    ACL_BAD_ALG = "acl_bad_alg", 400, EXIT_FAIL, _S, (_A,), "alg other than ES256"
    ACL_FOREIGN_SIGNER = "acl_foreign_signer", 400, EXIT_FAIL, _S, (_A,), "not the owner's key"
    ACL_BAD_SIGNATURE = "acl_bad_signature", 400, EXIT_FAIL, _S, (_A,), "signature does not verify"
    ACL_WRONG_GATEWAY = "acl_wrong_gateway", 400, EXIT_FAIL, _S, (_A,), "made for another gateway"
    ACL_ROLLBACK = "acl_rollback", 409, EXIT_FAIL, _S, (_A,), "version not above the installed"
    ACL_NO_OWNER = "acl_no_owner", 409, EXIT_FAIL, _S, (_A,), "no owner key is pinned"
    ACL_OWNER_CHANGED = "acl_owner_changed", 409, EXIT_FAIL, _S, (_A,), "owner changed meanwhile"
    ACL_BUSY = "acl_busy", 503, EXIT_FAIL, _S, (_A,), "the install lock is held too long"
    ACL_IO = "acl_io", 503, EXIT_FAIL, _S, (_A,), "ACL files not readable/writable"

    # -- the state folder (docs/operations.md)
    STATE = "state", 500, EXIT_FAIL, _S, (_ST, _L), "the state folder cannot be used"
    STATE_LOCKED = "state_locked", 409, EXIT_FAIL, _S, (_ST,), "another gateway runs on it"
    STATE_TOO_NEW = "state_too_new", 500, EXIT_FAIL, _S, (_ST,), "made by a newer release"
    STATE_VERSION = "state_version", 500, EXIT_FAIL, _S, (_ST,), "its version mark unreadable"
    STATE_MIGRATION = "state_migration", 500, EXIT_FAIL, _S, (_ST,), "a migration step failed"
    STATE_READ_ONLY = "state_read_only", 500, EXIT_FAIL, _S, (_ST,), "on a read-only file system"
    STATE_NOT_WRITABLE = "state_not_writable", 500, EXIT_FAIL, _S, (_ST,), "not writable by us"
    UNSAFE_PERMISSIONS = "unsafe_permissions", 500, EXIT_FAIL, _S, (_ST,), "others can read it"
    BAD_OWNER_KEY = "bad_owner_key", 503, EXIT_FAIL, _S, (_ST,), "the pinned owner key unreadable"

    # -- commands failing at run time (exit 1): devices, files, the network
    BAD_BROKER = "bad_broker", 400, EXIT_FAIL, _S, (_C,), "not an MQTT broker URL"
    BAD_CHANNEL = "bad_channel", 400, EXIT_FAIL, _S, (_C,), "a malformed --channel"
    BAD_INSTALL = "bad_install", 500, EXIT_FAIL, _S, (_C,), "companion files incomplete"
    BAD_PORT = "bad_port", 400, EXIT_FAIL, _S, (_C,), "no serial port named (--port)"
    FLASH_FAILED = "flash_failed", 500, EXIT_FAIL, _S, (_C,), "flashing the board failed"
    NO_BROKER = "no_broker", 400, EXIT_FAIL, _S, (_C,), "no MQTT broker configured"
    NO_FIRMWARE = "no_firmware", 400, EXIT_FAIL, _S, (_C,), "no such firmware file"
    MISSING_EXTRA = "missing_extra", 500, EXIT_FAIL, _S, (_C,), "an optional package is missing"
    NO_CAMERA = "no_camera", 500, EXIT_FAIL, _S, (_C,), "no camera found"
    CAMERA_FAILED = "camera_failed", 500, EXIT_FAIL, _S, (_C,), "the camera failed"
    CAMERA_TIMEOUT = "camera_timeout", 504, EXIT_FAIL, _S, (_C,), "no QR code seen in time"
    IMAGE_WRITE_FAILED = "image_write_failed", 500, EXIT_FAIL, _S, (_C,), "QR image not written"
    GATEWAY_RUNNING = "gateway_running", 409, EXIT_FAIL, _S, (_C,), "stop the gateway first"
    NO_STATE = "no_state", 404, EXIT_FAIL, _S, (_C,), "no state folder there"
    NOT_SERVICE_USER = "not_service_user", 403, EXIT_FAIL, _S, (_C,), "run as the service user"
    BAD_URL = "bad_url", 400, EXIT_FAIL, _S, (_C,), "not a ws:// or wss:// URL"
    BAD_REPLY = "bad_reply", 502, EXIT_FAIL, _S, (_C,), "the gateway's answer is malformed"
    CONNECT_FAILED = "connect_failed", 502, EXIT_FAIL, _S, (_C,), "could not connect"
    UNREACHABLE = "unreachable", 502, EXIT_FAIL, _S, (_C,), "no bootstrap node answered"
    NO_BOOTSTRAP = "no_bootstrap", 400, EXIT_FAIL, _S, (_C,), "no DHT bootstrap node known"
    BIND_FAILED = "bind_failed", 500, EXIT_FAIL, _S, (_C,), "a local port could not be bound"
    RECORD_WRONG_KEY = "record_wrong_key", 502, EXIT_FAIL, _S, (_C,), "record is another key's"
    NOT_STARTED = "not_started", 500, EXIT_FAIL, _S, (_L,), "the DHT node is not started"
    RPC_TOO_LARGE = "rpc_too_large", 413, EXIT_FAIL, _PL, (_L,), "a DHT RPC over its limit"
    BAD_JSON = "bad_json", 400, EXIT_FAIL, _S, (_L,), "JSON input over a bound or malformed"

    # -- default codes of the exception classes (gateway/errors.py, gateway/peer/errors.py)
    ERROR = "error", 500, EXIT_FAIL, _S, (_L,), "an error without a specific code"
    INTERNAL = "internal", 500, EXIT_FAIL, _S, (_L,), "the gateway failed to answer"
    BAD_MESSAGE = "bad_message", 400, EXIT_FAIL, _S, (_L,), "a message could not be opened"
    AUDIT = "audit", 500, EXIT_FAIL, _S, (_L,), "the audit log could not be used"
    THING = "thing", 500, EXIT_FAIL, _S, (_L,), "a Thing refused an operation"
    TD_INVALID = "td_invalid", 500, EXIT_FAIL, _S, (_L,), "a Thing Description is invalid"
    BINDING = "binding", 500, EXIT_FAIL, _S, (_L,), "a transport binding failed"
    P2P = "p2p", 500, EXIT_FAIL, _S, (_L,), "the DHT or the peer transport failed"
    PROVISIONING = "provisioning", 400, EXIT_FAIL, _S, (_L, _P), "provisioning refused"
    PEER = "peer", 502, EXIT_FAIL, _S, (_L,), "no answer from the gateway"
    TIMEOUT = "timeout", 504, EXIT_FAIL, _S, (_L,), "no answer in time"
    CONNECTION_CLOSED = "connection_closed", 502, EXIT_FAIL, _S, (_L,), "the connection closed"

    def __repr__(self) -> str:
        return repr(self._value_)  # shown in messages and logs exactly as the plain string

    # ------------------------------------------------------------------ metadata
    @property
    def status(self) -> int:
        """The HTTP status (and the `status` of a sealed or plain P2P error)."""
        return self._meta.status

    @property
    def exit_code(self) -> int:
        """The exit status of a command that fails with this code."""
        return self._meta.exit_code

    @property
    def answer(self) -> Answer:
        return self._meta.answer

    @property
    def scopes(self) -> frozenset[Scope]:
        return self._meta.scopes

    @property
    def meaning(self) -> str:
        return self._meta.meaning

    @classmethod
    def lookup(cls, code: str) -> Code | None:
        """The member whose value is CODE, or None for an unregistered code."""
        member = cls._value2member_map_.get(code)
        return member if isinstance(member, Code) else None

    @classmethod
    def in_scope(cls, scope: Scope) -> tuple[Code, ...]:
        return tuple(c for c in cls if scope in c.scopes)


def http_status(code: str, default: int = 500) -> int:
    """The HTTP status of CODE; DEFAULT for an unregistered code."""
    member = Code.lookup(code)
    return default if member is None else member.status


def exit_code(code: str) -> int:
    """The exit status of a command failing with CODE (1 for an unregistered code)."""
    member = Code.lookup(code)
    return EXIT_FAIL if member is None else member.exit_code


class Rendered(NamedTuple):
    """An error as every front end shows it."""

    code: str
    status: int
    exit_code: int
    reason: str

    @property
    def line(self) -> str:
        """The one line for a person (stderr)."""
        return f"error: {self.reason} [{self.code}]"

    def body(self) -> dict[str, str]:
        """The JSON body of an HTTP error, and a command's `--json` error output."""
        return {"error": self.code, "reason": self.reason}


def render(exc: StreembitError) -> Rendered:
    """EXC's code with its HTTP status and exit code from the registry, and its message."""
    return Rendered(exc.code, http_status(exc.code), exit_code(exc.code), str(exc))
