"""Delegation chains presented with requests: verified against the CURRENT ACL, uses counted.

The request processor asks `verify` for every decision (a one-shot request, the opening of a
stream and every re-check of a live stream), so a revocation (the delegator's key, a link's
jti, the grant at the root) ends every chain through it at once, live streams included.
`use` counts one use of every link with a ``uses`` limit when a request is allowed, before
the device is driven (a refused request counts nothing). Refusals carry the chain's own
`delegation_*` code (docs/acl.md "Delegation", docs/http-binding.md section 3).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Final

from gateway.acl.decide import Decision
from gateway.acl.delegation import Chain, DelegationError
from gateway.acl.dlg_uses import UseCounter
from gateway.acl.dlg_verify import verify_chain
from gateway.acl.model import Acl
from gateway.requests.model import Outcome, Request

#: The audit rule of a chain refused before its links could be named.
CHAIN_RULE: Final = "dlg"


class Delegations:
    """Verify the chains of requests for one gateway and count their uses."""

    def __init__(self, gateway_id: str, state_dir: Path) -> None:
        self.gateway_id = gateway_id
        self.state_dir = Path(state_dir)
        self._uses: UseCounter | None = None  # opened on the first limited use

    def verify(self, req: Request, acl: Acl | None, now: datetime) -> tuple[Chain, Acl] | Decision:
        """The verified chain of REQ and the ACL it was verified against, or the refusal."""
        try:
            chain = verify_chain(
                req.chain, acl=acl, gateway_id=self.gateway_id, holder=req.subject, now=now
            )
        except DelegationError as exc:
            return Decision(False, CHAIN_RULE, str(exc), code=exc.code)
        if acl is None:  # verify_chain refuses without an ACL; kept for the type checker
            return Decision(False, CHAIN_RULE, "no ACL installed", code="delegation_revoked")
        return chain, acl

    async def use(self, req: Request, acl: Acl | None, now: datetime) -> Outcome | None:
        """Count one use of REQ's chain: None, or the refusal (`delegation_used_up`)."""
        verified = self.verify(req, acl, now)
        if isinstance(verified, Decision):
            return Outcome(verified.code, reason=verified.reason, rule=verified.rule)
        chain = verified[0]
        if all(link.uses is None for link in chain.links):
            return None
        try:  # SQLite, with fsync: in a worker thread, never in the event loop
            await asyncio.to_thread(self._consume, chain)
        except DelegationError as exc:
            return Outcome(exc.code, reason=str(exc), rule=chain.rule)
        return None

    def _consume(self, chain: Chain) -> None:
        if self._uses is None:
            self._uses = UseCounter(self.state_dir)
        self._uses.consume(chain)
