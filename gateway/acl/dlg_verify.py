"""Verify a delegation chain against the CURRENT ACL, and decide a request made with it.

Order (the first failing check is the code): 1. the chain alone: structure
(`delegation_malformed`); per link, first to last, the header jwk is the issuer's key (first
link: its own `iss`; later: the previous link's ``sub``) and the signature verifies
(`delegation_bad_signature`), aud is this gateway and prev the parent's reference
(`delegation_malformed`); the request's subject is the last ``sub``
(`delegation_wrong_holder`). 2. the root grant in the current ACL: the first issuer holds one,
not revoked (`delegation_revoked`), with ``delegate`` > 0 (`delegation_not_allowed`), whose
``since`` the first link does not predate (`delegation_revoked`), valid now
(`delegation_expired`). 3. per link: no key or jti seen twice (`delegation_loop`); issuer,
delegatee or jti revoked (`delegation_revoked`); depth below the parent's
(`delegation_too_deep`); things, affordances, ops, [nbf, exp], schedule, uses inside the
parent's (`delegation_widens`); nbf <= now < exp (`delegation_expired`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gateway.acl.decide import (
    AFFORDANCE_DENIED,
    OFF_SCHEDULE,
    OP_DENIED,
    RULE_ID_PREFIX,
    THING_DENIED,
    Decision,
)
from gateway.acl.delegation import (
    CLOCK_SKEW_S,
    DLG_ALG,
    Chain,
    Link,
    _err,
    parse_chain,
    parse_link,
    root_ref,
)
from gateway.acl.model import BASE_OPS, IMPLIED_OPS, WILDCARD, Acl, Grant, Schedule
from gateway.codes import Code
from gateway.errors import IdentityError
from gateway.identity import public_from_jwk

SIGNATURE_CACHE = 1024  # verified (link, issuer) pairs kept: a chain is not re-verified per use


@dataclass(frozen=True)
class _Bound:
    """What a parent (the grant or a link) allows its child."""

    things: tuple[str, ...]
    affordances: tuple[str, ...]
    ops: frozenset[str]
    nbf: int | None
    exp: int | None
    schedule: Schedule | None
    uses: int | None
    depth: int  # how many more links may follow the parent


def _grant_bound(grant: Grant) -> _Bound:
    admin = grant.role == "admin"
    return _Bound(
        things=(WILDCARD,) if admin else grant.things,
        affordances=(WILDCARD,) if admin else grant.affordances,
        ops=BASE_OPS if admin else grant.ops,
        nbf=grant.nbf,
        exp=grant.exp,
        schedule=grant.schedule,
        uses=None,
        depth=grant.delegate,
    )


def _link_bound(link: Link) -> _Bound:
    return _Bound(
        link.things,
        link.affordances,
        link.ops,
        link.nbf,
        link.exp,
        link.schedule,
        link.uses,
        link.depth,
    )


def _names_inside(child: tuple[str, ...], parent: tuple[str, ...]) -> bool:
    if WILDCARD in parent:
        return True
    return all(n != WILDCARD and n in parent for n in child)


def schedule_inside(child: Schedule | None, parent: Schedule | None) -> bool:
    """Conservative: every child window lies inside one window of the parent, same day."""
    if parent is None:
        return True
    if child is None:
        return False
    for day, windows in enumerate(child.windows):
        for start, end in windows:
            if not any(ps <= start and end <= pe for ps, pe in parent.windows[day]):
                return False
    return True


def _narrows(link: Link, parent: _Bound) -> bool:
    lo = link.nbf if link.nbf is not None else link.iat
    return (
        _names_inside(link.things, parent.things)
        and _names_inside(link.affordances, parent.affordances)
        and link.ops <= parent.ops
        and (parent.nbf is None or lo >= parent.nbf)
        and (parent.exp is None or link.exp <= parent.exp)
        and schedule_inside(link.schedule, parent.schedule)
        and (parent.uses is None or (link.uses is not None and link.uses <= parent.uses))
    )


@functools.lru_cache(maxsize=SIGNATURE_CACHE)
def _signed_by(text: str, issuer_id: str) -> bool:
    """TEXT (a parsed link) carries ISSUER_ID's key in its header and verifies with it. Pure in
    its arguments (the key comes from TEXT itself), so a verified link is not verified again."""
    link = parse_link(text)
    try:
        key = public_from_jwk(link.jwk)
    except IdentityError:
        return False
    if key.id != issuer_id or link.iss != issuer_id:
        return False
    try:
        obj = jws.extract_compact(text.encode("ascii"))
        return bool(jws.validate_compact(obj, ECKey.import_key(key.key), algorithms=[DLG_ALG]))
    except (JoseError, ValueError):
        return False


def _check_signature(link: Link, issuer_id: str) -> None:
    if not _signed_by(link.text, issuer_id):
        raise _err(Code.DELEGATION_BAD_SIGNATURE, "a link is not signed by its issuer")


def verify_chain(
    texts: Sequence[str], *, acl: Acl | None, gateway_id: str, holder: str, now: datetime
) -> Chain:
    """Verify TEXTS presented by HOLDER; the Chain, or DelegationError with its code.

    Every signature, reference and the holder are checked before the ACL is read, so a
    refusal tells someone who holds no key of the chain nothing about the ACL."""
    links = parse_chain(texts)
    first = links[0]
    prev_ref, issuer = root_ref(gateway_id, first.iss), first.iss
    for link in links:  # 1. the chain itself: who signed what, for whom, in which order
        _check_signature(link, issuer)
        if link.aud != gateway_id:
            raise _err(Code.DELEGATION_MALFORMED, "a link is for another gateway")
        if link.prev != prev_ref:
            raise _err(Code.DELEGATION_MALFORMED, "a link does not follow its parent")
        prev_ref, issuer = link.digest, link.sub
    if links[-1].sub != holder:
        raise _err(Code.DELEGATION_WRONG_HOLDER, "the chain is not the requester's")
    grant = _root_grant(acl, first, now)  # 2. the grant at its root, in the current ACL
    if acl is None:  # _root_grant refused it; for the type checker
        raise _err(Code.DELEGATION_REVOKED, "no ACL installed")
    ts = int(now.timestamp())
    parent = _grant_bound(grant)
    seen_keys, seen_jti = {first.iss}, set()
    for link in links:  # 3. each link against the ACL and inside its parent
        if link.sub in seen_keys or link.jti in seen_jti:
            raise _err(Code.DELEGATION_LOOP, "a chain delegates back to a key it passed")
        seen_keys.add(link.sub)
        seen_jti.add(link.jti)
        if {link.iss, link.sub} & acl.revoked or link.jti in acl.revoked_delegations:
            raise _err(Code.DELEGATION_REVOKED, "a link of the chain is revoked")
        if parent.depth == 0 or link.depth >= parent.depth:
            raise _err(Code.DELEGATION_TOO_DEEP, "the chain is past its depth limit")
        if not _narrows(link, parent):
            raise _err(Code.DELEGATION_WIDENS, "a link widens its parent's rights")
        if link.iat > ts + CLOCK_SKEW_S or (link.nbf is not None and ts < link.nbf):
            raise _err(Code.DELEGATION_EXPIRED, "a link is not yet valid")
        if ts >= link.exp:
            raise _err(Code.DELEGATION_EXPIRED, "a link has expired")
        parent = _link_bound(link)
    names = [link.iss[:RULE_ID_PREFIX] for link in links] + [holder[:RULE_ID_PREFIX]]
    return Chain(links=links, holder=holder, rule="dlg:" + ">".join(names))


def _root_grant(acl: Acl | None, first: Link, now: datetime) -> Grant:
    """The first issuer's grant, if it may delegate now and predates the first link."""
    if acl is None:
        raise _err(Code.DELEGATION_REVOKED, "no ACL installed")
    grant = acl.grant_for(first.iss)
    if first.iss in acl.revoked or grant is None:
        raise _err(Code.DELEGATION_REVOKED, "the first issuer holds no grant")
    if grant.delegate == 0:
        raise _err(Code.DELEGATION_NOT_ALLOWED, "the issuer's grant allows no delegation")
    if grant.since is not None and first.iat < grant.since:
        raise _err(Code.DELEGATION_REVOKED, "the chain predates the issuer's current grant")
    ts = now.timestamp()
    if (grant.nbf is not None and ts < grant.nbf) or (grant.exp is not None and ts >= grant.exp):
        raise _err(Code.DELEGATION_EXPIRED, "the issuer's grant is not valid now")
    return grant


def decide_chain(
    chain: Chain, acl: Acl, thing: str, affordance: str, op: str, now: datetime
) -> Decision:
    """Decide one request of a verified chain's holder: the last link's rights (narrowest)."""
    last = chain.last
    for link in chain.links:  # every schedule on the way (each inside its parent's)
        if link.schedule is not None:
            local = now.astimezone(acl.zone)
            if not link.schedule.allows(local.weekday(), local.hour * 60 + local.minute):
                return Decision(False, chain.rule, OFF_SCHEDULE)
    grant = acl.grant_for(chain.links[0].iss)
    if grant is not None and grant.schedule is not None:
        local = now.astimezone(acl.zone)
        if not grant.schedule.allows(local.weekday(), local.hour * 60 + local.minute):
            return Decision(False, chain.rule, OFF_SCHEDULE)
    if WILDCARD not in last.things and thing not in last.things:
        return Decision(False, chain.rule, THING_DENIED)
    if WILDCARD not in last.affordances and affordance not in last.affordances:
        return Decision(False, chain.rule, AFFORDANCE_DENIED)
    if IMPLIED_OPS.get(op, op) not in last.ops:
        return Decision(False, chain.rule, OP_DENIED)
    return Decision(True, chain.rule, "delegated")
