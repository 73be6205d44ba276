"""The ACL data model: frozen `Acl`, `Grant` and `Schedule`, and their strict JSON form.

JSON payload of the owner-signed ACL (the JWS payload)::

    {"gateway": GW_ID, "version": 3, "iat": 1700000000, "tz": "Europe/Berlin",
     "grants": [{"sub": ID, "jwk": {...}, "things": ["front-door"], "affordances": ["*"],
                 "ops": ["readproperty", "invokeaction"], "nbf": 1700000000,
                 "exp": 1800000000, "schedule": "mon-fri 08:00-18:00; sat 09:00-12:00",
                 "role": "user"}],
     "revoked": [ID, ...]}

"tz" (optional, IANA zone name) is the zone in which every schedule is read; without it
schedules are read in the gateway's local time zone. "nbf", "exp", "schedule", "role" are
optional; unknown members are refused so that a field this gateway does not understand is
never silently ignored.

Schedule grammar (strict): entries separated by ";", each ``DAYS RANGE[,RANGE...]`` where
DAYS is a comma list of ``mon``..``sun`` or ``day-day`` ranges (wrapping allowed, e.g.
``fri-mon``), or ``daily``; RANGE is ``HH:MM-HH:MM`` with start < end (end may be 24:00,
end exclusive). Overnight windows are written as two entries:
``fri 22:00-24:00; sat 00:00-06:00``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import AclError, IdentityError
from gateway.identity import PublicIdentity, public_from_jwk

ACL_TYP = "streembit-acl+jws"  # JWS header typ: an ACL is never mistaken for a token or message
MAX_ACL_BYTES = 256 * 1024  # an ACL with hundreds of grants stays far below this
MAX_NAME_LEN = 128  # thing and affordance names are short identifiers
MAX_LIST_LEN = 256  # things / affordances / ops per grant; more is a mistake or an attack
MAX_SCHEDULE_LEN = 512  # a weekly schedule spec is a line of text
WILDCARD = "*"  # "all things" or "all affordances"

BASE_OPS = frozenset(
    {"readproperty", "writeproperty", "observeproperty", "invokeaction", "subscribeevent"}
)
# Operations implied by a granted base operation (stopping what you may start).
IMPLIED_OPS: Mapping[str, str] = {
    "unobserveproperty": "observeproperty",
    "unsubscribeevent": "subscribeevent",
}
ROLES = frozenset({"user", "admin"})
MAX_TZ_LEN = 64  # IANA zone names are short ("America/Argentina/ComodRivadavia" is 32)
_TZ_NAME = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,3}$")

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_RANGE_SEP = re.compile(r"\s*,\s*|\s+")  # time ranges are separated by commas or spaces
_GRANT_KEYS = frozenset(
    {
        *("sub", "jwk", "things", "affordances", "ops", "nbf", "exp", "schedule", "role"),
        *("delegate", "since"),
    }
)
_ACL_KEYS = frozenset(
    {"gateway", "version", "iat", "tz", "grants", "revoked", "revoked_delegations"}
)
MAX_DELEGATE = 4  # longest delegation chain a grant may allow (docs/acl.md "Delegation")
_ACL_REQUIRED = ("gateway", "version", "iat", "grants")


def _bad(message: str) -> AclError:
    return AclError(message, code="acl_malformed")


# --------------------------------------------------------------------------- schedule
def _parse_time(text: str, spec: str) -> int:
    m = _TIME.match(text)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise _bad(f"schedule {spec!r}: {text!r} is not a time HH:MM (00:00..24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _parse_days(text: str, spec: str) -> list[int]:
    if text == "daily":
        return list(range(7))
    days: list[int] = []
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if first not in _DAYS or (sep and last not in _DAYS):
            raise _bad(
                f"schedule {spec!r}: {part!r} is not a day (mon..sun), a range (mon-fri) or 'daily'"
            )
        a = _DAYS.index(first)
        b = _DAYS.index(last) if sep else a
        span = (b - a) % 7
        days.extend((a + i) % 7 for i in range(span + 1))
    return days


@dataclass(frozen=True)
class Schedule:
    """A weekly schedule: per weekday (Monday = 0) the allowed [start, end) minute windows."""

    spec: str
    windows: tuple[tuple[tuple[int, int], ...], ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, spec: str) -> Schedule:
        """Parse a spec like "mon-fri 08:00-18:00; sat 09:00-12:00"; AclError if invalid."""
        if not isinstance(spec, str) or not spec.strip():
            raise _bad("schedule must be a non-empty string")
        if len(spec) > MAX_SCHEDULE_LEN:
            raise _bad(f"schedule longer than {MAX_SCHEDULE_LEN} characters")
        per_day: list[list[tuple[int, int]]] = [[] for _ in _DAYS]
        entries = [e.strip() for e in spec.lower().split(";")]
        if len(entries) > 1 and not entries[-1]:
            entries.pop()  # tolerate one trailing ";"
        for entry in entries:
            words = entry.split(None, 1)
            if len(words) != 2:
                raise _bad(f"schedule {spec!r}: entry {entry!r} is not 'DAYS HH:MM-HH:MM'")
            days = _parse_days(words[0], spec)
            for rng in _RANGE_SEP.split(words[1]):
                start_s, sep, end_s = rng.partition("-")
                if not sep:
                    raise _bad(f"schedule {spec!r}: {rng!r} is not a range HH:MM-HH:MM")
                start, end = _parse_time(start_s, spec), _parse_time(end_s, spec)
                if start >= end:
                    raise _bad(
                        f"schedule {spec!r}: {rng!r} ends before it starts; write overnight "
                        "windows as two entries, e.g. 'fri 22:00-24:00; sat 00:00-06:00'"
                    )
                for d in days:
                    per_day[d].append((start, end))
        if not any(per_day):
            raise _bad(f"schedule {spec!r}: no time window")
        return cls(spec=spec, windows=tuple(tuple(sorted(w)) for w in per_day))

    def allows(self, weekday: int, minute: int) -> bool:
        """True if minute-of-day MINUTE on WEEKDAY (Monday = 0) lies inside a window."""
        return any(start <= minute < end for start, end in self.windows[weekday])


# ------------------------------------------------------------------------------ grant
@dataclass(frozen=True)
class Grant:
    """Rights of one subject. `subject` must be the RFC 7638 thumbprint of `key`."""

    subject: str
    key: PublicIdentity = field(repr=False, compare=False)
    things: tuple[str, ...]
    affordances: tuple[str, ...] = (WILDCARD,)
    ops: frozenset[str] = frozenset({"readproperty"})
    nbf: int | None = None
    exp: int | None = None
    schedule: Schedule | None = None
    role: str = "user"
    delegate: int = 0  # how many delegation links may follow this grant (0: none)
    #: links this subject signed before this time are refused (set when delegation starts: a
    #: re-grant after a revocation does not revive its old links; docs/acl.md section 6.4)
    since: int | None = None

    def __post_init__(self) -> None:
        if self.key.id != self.subject:
            raise _bad(f"grant subject {self.subject[:16]!r} is not the thumbprint of its JWK")
        for label, names in (("things", self.things), ("affordances", self.affordances)):
            if not isinstance(names, tuple) or not names or len(names) > MAX_LIST_LEN:
                raise _bad(f"grant {label} must be a list of 1..{MAX_LIST_LEN} names")
            for n in names:
                if not isinstance(n, str) or not n or len(n) > MAX_NAME_LEN:
                    raise _bad(f"grant {label}: names are 1..{MAX_NAME_LEN} characters")
        if not isinstance(self.ops, frozenset) or not self.ops or not self.ops <= BASE_OPS:
            raise _bad(f"grant ops must be a non-empty subset of {sorted(BASE_OPS)}")
        for label, value in (("nbf", self.nbf), ("exp", self.exp)):
            if value is not None and (type(value) is not int or value < 0):
                raise _bad(f"grant {label} must be unix seconds (an integer)")
        if self.nbf is not None and self.exp is not None and self.exp <= self.nbf:
            raise _bad("grant exp must be after nbf")
        if not isinstance(self.role, str) or self.role not in ROLES:
            raise _bad(f"grant role must be one of {sorted(ROLES)}")
        if type(self.delegate) is not int or not 0 <= self.delegate <= MAX_DELEGATE:
            raise _bad(f"grant delegate must be an integer 0..{MAX_DELEGATE}")
        if self.since is not None and (
            type(self.since) is not int or self.since < 0 or not self.delegate
        ):
            raise _bad("grant since must be unix seconds, on a grant that may delegate")

    @classmethod
    def for_key(
        cls,
        key: PublicIdentity,
        *,
        things: Iterable[str],
        affordances: Iterable[str] = (WILDCARD,),
        ops: Iterable[str] = ("readproperty",),
        nbf: int | None = None,
        exp: int | None = None,
        schedule: str | None = None,
        role: str = "user",
        delegate: int = 0,
    ) -> Grant:
        """Convenience constructor for the peer side (`acl grant`)."""
        return cls(
            subject=key.id,
            key=key,
            things=tuple(things),
            affordances=tuple(affordances),
            ops=frozenset(ops),
            nbf=nbf,
            exp=exp,
            schedule=Schedule.parse(schedule) if schedule is not None else None,
            role=role,
            delegate=delegate,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sub": self.subject,
            "jwk": dict(self.key.jwk),
            "things": list(self.things),
            "affordances": list(self.affordances),
            "ops": sorted(self.ops),
            "role": self.role,
        }
        if self.nbf is not None:
            out["nbf"] = self.nbf
        if self.exp is not None:
            out["exp"] = self.exp
        if self.schedule is not None:
            out["schedule"] = self.schedule.spec
        if self.delegate:
            out["delegate"] = self.delegate
        if self.since is not None:
            out["since"] = self.since
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Grant:
        if not isinstance(obj, dict):
            raise _bad("a grant must be a JSON object")
        extra = set(obj) - _GRANT_KEYS
        if extra:
            raise _bad(f"grant has unknown members {sorted(extra)}")
        for name in ("sub", "jwk", "things", "ops"):
            if name not in obj:
                raise _bad(f"grant lacks {name!r}")
        sub = obj["sub"]
        if not isinstance(sub, str):
            raise _bad("grant sub must be a string")
        try:
            key = public_from_jwk(obj["jwk"])
        except IdentityError as exc:
            raise _bad(f"grant {sub[:16]!r}: {exc}") from None
        schedule = obj.get("schedule")
        role = obj.get("role", "user")
        if not isinstance(role, str):
            raise _bad(f"grant role must be one of {sorted(ROLES)}")
        return cls(
            subject=sub,
            key=key,
            things=_str_tuple(obj["things"], "things"),
            affordances=_str_tuple(obj.get("affordances", [WILDCARD]), "affordances"),
            ops=frozenset(_str_tuple(obj["ops"], "ops")),
            nbf=obj.get("nbf"),
            exp=obj.get("exp"),
            schedule=Schedule.parse(schedule) if schedule is not None else None,
            role=role,
            delegate=obj.get("delegate", 0),
            since=obj.get("since"),
        )


def _str_tuple(value: Any, label: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"grant {label} must be a list of strings")
    return tuple(value)


# -------------------------------------------------------------------------------- acl
@dataclass(frozen=True)
class Acl:
    """One version of the owner-signed access list, indexed by subject for `decide`."""

    gateway: str
    version: int
    iat: int
    grants: tuple[Grant, ...] = ()
    revoked: frozenset[str] = frozenset()
    tz: str | None = None
    revoked_delegations: frozenset[str] = frozenset()  # delegation link jti values
    by_subject: Mapping[str, tuple[int, Grant]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    zone: ZoneInfo | None = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.gateway, str) or not self.gateway:
            raise _bad("ACL gateway must be a non-empty string")
        for label, value in (("version", self.version), ("iat", self.iat)):
            if type(value) is not int or value < 0:
                raise _bad(f"ACL {label} must be a non-negative integer")
        index: dict[str, tuple[int, Grant]] = {}
        for i, g in enumerate(self.grants):
            if g.subject in index:
                raise _bad(f"two grants for subject {g.subject[:16]!r}")
            index[g.subject] = (i, g)
        zone: ZoneInfo | None = None
        if self.tz is not None:
            bad_tz = _bad(f"ACL tz {self.tz!r:.80} is not an IANA time zone name")
            name = self.tz
            if not isinstance(name, str) or len(name) > MAX_TZ_LEN or not _TZ_NAME.match(name):
                raise bad_tz
            try:
                zone = ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a folder
                raise bad_tz from None
        object.__setattr__(self, "by_subject", index)
        object.__setattr__(self, "zone", zone)

    def grant_for(self, subject_id: str) -> Grant | None:
        hit = self.by_subject.get(subject_id)
        return hit[1] if hit else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gateway": self.gateway,
            "version": self.version,
            "iat": self.iat,
            "grants": [g.to_json() for g in self.grants],
            "revoked": sorted(self.revoked),
        }
        if self.tz is not None:
            out["tz"] = self.tz
        if self.revoked_delegations:
            out["revoked_delegations"] = sorted(self.revoked_delegations)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Acl:
        """Build from the decoded payload; AclError(acl_malformed) on any deviation."""
        if not isinstance(obj, dict):
            raise _bad("ACL payload must be a JSON object")
        extra = set(obj) - _ACL_KEYS
        if extra:
            raise _bad(f"ACL has unknown members {sorted(extra)}")
        for name in _ACL_REQUIRED:
            if name not in obj:
                raise _bad(f"ACL lacks {name!r}")
        grants = obj["grants"]
        if not isinstance(grants, list):
            raise _bad("ACL grants must be a list")
        revoked = obj.get("revoked", [])
        if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
            raise _bad("ACL revoked must be a list of ids")
        tz = obj.get("tz")
        if tz is not None and not isinstance(tz, str):
            raise _bad("ACL tz must be a string")
        dlg = obj.get("revoked_delegations", [])
        if not isinstance(dlg, list) or not all(isinstance(r, str) for r in dlg):
            raise _bad("ACL revoked_delegations must be a list of link ids (jti)")
        return cls(
            gateway=obj["gateway"],
            version=obj["version"],
            iat=obj["iat"],
            grants=tuple(Grant.from_json(g) for g in grants),
            revoked=frozenset(revoked),
            tz=tz,
            revoked_delegations=frozenset(dlg),
        )
