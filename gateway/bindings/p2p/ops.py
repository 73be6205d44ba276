"""The operations of the P2P binding, each translated to the one request path.

- readproperty, writeproperty, invokeaction: `RequestProcessor.handle` (decide, act, audit).
- observeproperty, subscribeevent: `RequestProcessor.open_stream`, then an `EventPush` task;
  the reply (202) is sent before the first event. A second subscription to the same affordance
  on the same connection replaces the first.
- unobserveproperty, unsubscribeevent: end this peer's subscription on this connection (204,
  also when there was none: stopping is idempotent).
- things, td: Thing metadata, for the owner and for peers the ACL knows; `things` lists the
  Things the peer has at least one grant on, `td` refuses the others. Refusals are audited.
- aclpush, claim, transfer: `RequestProcessor.admin` (the owner check, fail closed while the
  audit log fails, one audit record), as `PUT /acl` in the HTTP binding.
- aclpush: owner only: install (a compare-and-swap under the install lock).
- claim: only while the gateway has no owner; the input proves the one-time setup code
  (gateway.provisioning.claim); the sender's key is pinned as owner. Wrong codes are counted
  and lock claiming for a growing time.
- transfer: a statement signed by the current owner naming this gateway and the new owner key
  (gateway.provisioning.transfer), sent by the current or the new owner.
Every admin request, refused or done, is audited (the ACL, proof and statement are not).
- punch: one step of a direct-link upgrade (docs/reach.md), for the owner and peers the ACL
  knows (a stranger cannot make the gateway dial anywhere), handed to `P2PContext.punch`.
- auditcheckpoint, auditrecords: owner only, the audit log's signed checkpoint and hash-chained
  records, page by page (auditops.py, docs/audit.md §6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from gateway.bindings.p2p import admission
from gateway.bindings.p2p.streams import EventPush, StreamKey
from gateway.codes import Code
from gateway.messages import Opened
from gateway.messages.sessionkeys import SESSION_OPS
from gateway.peer import wire
from gateway.provisioning.claim import process_claim
from gateway.provisioning.setup_code import SetupCodeStore
from gateway.provisioning.transfer import process_transfer
from gateway.requests import Outcome, Request
from gateway.requests.processor import AdminAction
from gateway.text import clean
from gateway.things.bus import Kind

if TYPE_CHECKING:
    from gateway.bindings.p2p.session import PeerSession

ONE_SHOT: Final = frozenset({"readproperty", "writeproperty", "invokeaction"})
STREAM_KIND: Final[dict[str, Kind]] = {
    "observeproperty": "property",
    "unobserveproperty": "property",
    "subscribeevent": "event",
    "unsubscribeevent": "event",
}
#: Operations that make a Thing visible to a peer, by affordance kind.
_VISIBLE_OPS: Final = {
    "properties": ("readproperty", "writeproperty", "observeproperty"),
    "actions": ("invokeaction",),
    "events": ("subscribeevent",),
}


class Operations:
    """Serves the verified request messages of one connection."""

    def __init__(self, session: PeerSession) -> None:
        self.session = session
        self.ctx = session.ctx

    async def dispatch(self, msg: Opened) -> None:
        op = msg.claims["op"]
        if msg.session is not None and op not in SESSION_OPS:  # opening refuses it already
            reason = f"op {clean(op, 32)!r} needs a sealed message"
            await self._refuse(msg, Outcome(Code.NEEDS_SIGNATURE, reason=reason))
        elif op in ONE_SHOT:
            await self._one_shot(msg)
        elif op in ("observeproperty", "subscribeevent"):
            await self._open_stream(msg)
        elif op in ("unobserveproperty", "unsubscribeevent"):
            await self._close_stream(msg)
        elif op == "things":
            await self._things(msg)
        elif op == "td":
            await self._td(msg)
        elif op == "aclpush":
            await self._aclpush(msg)
        elif op == "claim":
            await self._claim(msg)
        elif op == "transfer":
            await self._transfer(msg)
        elif op == "punch":
            await self._punch(msg)
        elif op in ("auditcheckpoint", "auditrecords"):  # owner only: auditops.py
            from gateway.bindings.p2p import auditops

            await (auditops.checkpoint if op == "auditcheckpoint" else auditops.records)(
                self.session, msg
            )
        else:  # open_sealed admits only known ops; a new one must be wired here first
            await self._refuse(msg, Outcome("unsupported_op", reason=f"op {clean(op, 32)!r}"))

    async def _refuse(self, msg: Opened, outcome: Outcome) -> None:
        req = admission.request_of(msg)
        await self.session.answer(msg, await self.ctx.processor.reject(req, outcome))

    # ----------------------------------------------------------- affordances
    async def _one_shot(self, msg: Opened) -> None:
        req = admission.request_of(msg)
        outcome = await self.ctx.processor.handle(req)
        status = wire.NO_CONTENT if req.op == "writeproperty" else None
        await self.session.answer(msg, outcome, status)

    async def _open_stream(self, msg: Opened) -> None:
        session = self.session
        req = admission.request_of(msg)
        key: StreamKey = (req.subject, STREAM_KIND[req.op], req.thing, req.name)
        if key not in session.streams and len(session.streams) >= self.ctx.limits.max_streams:
            reason = "too many subscriptions on this connection"
            await self._refuse(msg, Outcome(Code.RATE_LIMITED, reason=reason))
            return
        outcome, sub = await self.ctx.processor.open_stream(req)
        if sub is None:
            await session.answer(msg, outcome)
            return
        if session.closing:  # the connection closed while the request was being decided
            sub.close()
            return
        old = session.streams.pop(key, None)
        if old is not None:
            await old.stop()
        push = EventPush(session, req, sub, msg.sender, re=msg.jti)
        session.streams[key] = push
        await session.answer(msg, outcome, wire.ACCEPTED)
        push.start()

    async def _close_stream(self, msg: Opened) -> None:
        req = admission.request_of(msg)
        key: StreamKey = (req.subject, STREAM_KIND[req.op], req.thing, req.name)
        push = self.session.streams.pop(key, None)
        if push is not None:
            await push.stop()
        await self.session.answer(msg, Outcome("ok"), wire.NO_CONTENT)

    # -------------------------------------------------------------- metadata
    def _known(self, subject: str, chain: tuple[str, ...] = ()) -> bool:
        """SUBJECT is in the ACL, or holds the verified delegation CHAIN it presents."""
        if not chain:
            return self.ctx.acl.key_for(subject) is not None
        processor = self.ctx.processor
        req = Request(subject, "things", "", "", binding=admission.BINDING, chain=chain)
        verified = processor.delegations.verify(req, processor.acl.current, processor.clock())
        return isinstance(verified, tuple)

    def _visible(self, subject: str, thing_name: str, chain: tuple[str, ...] = ()) -> bool:
        processor = self.ctx.processor
        if processor.is_owner(subject) and not chain:
            return True
        thing = processor.things.get(thing_name)
        if thing is None:
            return False
        tables = {"properties": thing.properties, "actions": thing.actions, "events": thing.events}
        for kind, ops in _VISIBLE_OPS.items():
            for affordance in tables[kind]:
                for op in ops:
                    req = Request(
                        subject, op, thing_name, affordance, binding=admission.BINDING, chain=chain
                    )
                    if processor.decision(req).allowed:
                        return True
        return False

    async def _things(self, msg: Opened) -> None:
        subject, chain = msg.sender.id, admission.request_of(msg).chain
        if not self._known(subject, chain):
            await self._refuse(msg, Outcome("forbidden", reason="not a known peer", rule="none"))
            return
        listing: list[dict[str, Any]] = [
            {"name": name, "title": td.get("title", name), "id": td.get("id")}
            for name, td in self.ctx.tds().items()
            if self._visible(subject, name, chain)
        ]
        await self.session.answer(msg, Outcome("ok", output=listing), wire.OK)

    async def _td(self, msg: Opened) -> None:
        subject, key = msg.sender.id, msg.claims["thing"]
        chain = admission.request_of(msg).chain
        if not self._known(subject, chain):
            await self._refuse(msg, Outcome("forbidden", reason="not a known peer", rule="none"))
            return
        tds = self.ctx.tds()
        name = key if key in tds else next((n for n, t in tds.items() if t.get("id") == key), None)
        if name is None:
            reason = f"no Thing {clean(key, 64)!r}"
            await self._refuse(msg, Outcome("unknown_thing", reason=reason))
        elif not self._visible(subject, name, chain):
            await self._refuse(msg, Outcome("forbidden", reason="thing not granted"))
        else:
            await self.session.answer(msg, Outcome("ok", output=tds[name]), wire.OK)

    # ------------------------------------------------- ACL and provisioning
    async def _admin(self, msg: Opened, action: AdminAction, rule: str) -> None:
        outcome = await self.ctx.processor.admin(admission.request_of(msg), action, rule=rule)
        await self.session.answer(msg, outcome, wire.OK)

    async def _aclpush(self, msg: Opened) -> None:
        async def read() -> str:
            text: str = msg.claims["input"]  # a string: checked by open_sealed
            return text

        req = admission.request_of(msg)
        await self.session.answer(msg, await self.ctx.processor.install_acl(req, read), wire.OK)

    async def _claim(self, msg: Opened) -> None:
        ctx = self.ctx

        async def claim() -> tuple[Any, str]:
            process_claim(
                ctx.acl,
                SetupCodeStore(ctx.acl.state_dir),
                gateway_id=ctx.identity.id,
                claimer=msg.sender,
                jti=msg.jti,
                claim=msg.claims["input"],
            )
            output = {"owner": msg.sender.id, "gateway": ctx.identity.id}
            return output, f"claimed: owner {msg.sender.id} pinned"

        await self._admin(msg, claim, "setup-code")

    async def _transfer(self, msg: Opened) -> None:
        ctx = self.ctx

        async def transfer() -> tuple[Any, str]:
            st = process_transfer(
                ctx.acl,
                gateway_id=ctx.identity.id,
                sender=msg.sender,
                statement=msg.claims["input"],
            )
            new = st.new_owner.id
            output = {"owner": new, "previous": st.previous, "gateway": ctx.identity.id}
            return output, f"owner {st.previous} -> {new}; ACL cleared"

        await self._admin(msg, transfer, "owner-statement")

    # ---------------------------------------------------------- direct links
    async def _punch(self, msg: Opened) -> None:
        subject = msg.sender.id
        if not (self._known(subject) or self.ctx.processor.is_owner(subject)):
            await self._refuse(msg, Outcome("forbidden", reason="not a known peer", rule="none"))
            return
        hook = self.ctx.punch
        if hook is None:
            reason = "this gateway does not make direct links"
            await self._refuse(msg, Outcome(Code.UNSUPPORTED_OP, reason=reason))
            return
        outcome = await hook(self.session.label, subject, msg.claims["input"])
        if not outcome.ok:
            await self._refuse(msg, outcome)
            return
        await self.session.answer(msg, outcome, wire.OK)
