"""Owner-signed access control: the ACL model, its signed document, the store and `decide`."""

from gateway.acl.decide import Decision, decide
from gateway.acl.document import (
    new_acl,
    read_acl_unverified,
    sign_acl,
    verify_acl,
    with_grant,
    without_subject,
)
from gateway.acl.model import (
    ACL_TYP,
    BASE_OPS,
    MAX_ACL_BYTES,
    ROLES,
    WILDCARD,
    Acl,
    Grant,
    Schedule,
)
from gateway.acl.store import ACL_FILE, OWNER_FILE, AclStore

__all__ = [
    "ACL_FILE",
    "ACL_TYP",
    "BASE_OPS",
    "MAX_ACL_BYTES",
    "OWNER_FILE",
    "ROLES",
    "WILDCARD",
    "Acl",
    "AclStore",
    "Decision",
    "Grant",
    "Schedule",
    "decide",
    "new_acl",
    "read_acl_unverified",
    "sign_acl",
    "verify_acl",
    "with_grant",
    "without_subject",
]
