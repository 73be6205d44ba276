"""The session key of one P2P connection (docs/protocol.md §8): opening frames of either kind,
accepting an offer, announcing it in the answer, and sealing answers with the fastest form the
peer has agreed to.

Life of a session on one connection:
1. a verified sealed request carries `ses` (an offer): `accept` derives the keys at once and
   remembers the request's jti; a newer offer replaces an older session;
2. the answer to that request (reply or error) is still sealed, and carries the announcement
   `ses: {"id", "ttl"}` (`outgoing`);
3. once it is sent (`sent`), every later message to that peer on this connection is a session
   frame, until the session's TTL; then sealed again until the peer offers anew.
The connection's end ends the session: nothing of it is stored.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.errors import MessageError
from gateway.identity import KeyPair, PublicIdentity
from gateway.messages import Opened, codes, open_sealed, seal
from gateway.messages.replay import ReplayCache
from gateway.messages.sessionkeys import (
    SESSION_ALG,
    SESSION_TTL_S,
    SessionKeys,
    frame_alg,
    new_sid,
    offer_secret,
)

#: Answers that may carry the announcement of a session offered by the request they answer.
_ANSWERS: Final = frozenset({"reply", "error"})


class Keyring:
    """One connection's session state; the gateway's end."""

    def __init__(self, identity: KeyPair, ttl_s: float | None = None) -> None:
        self.identity = identity
        self.ttl_s = SESSION_TTL_S if ttl_s is None else ttl_s
        self.keys: SessionKeys | None = None
        self._announce: tuple[str, str] | None = None  # (offering request's jti, sid)
        self._live = False  # the announcement went out: the peer knows the session

    def open(self, frame: str, replay: ReplayCache | None, leeway: float | None = None) -> Opened:
        """Open FRAME, a session frame or a sealed message; `MessageError` when refused."""
        kw: dict[str, Any] = {} if leeway is None else {"leeway": leeway}
        if frame_alg(frame) == SESSION_ALG:
            if self.keys is None:
                raise MessageError("no session on this connection", code=codes.UNKNOWN_SESSION)
            return self.keys.open(frame, replay=replay, **kw)
        return open_sealed(frame, recipient=self.identity, replay=replay, **kw)

    def accept(self, msg: Opened) -> None:
        """Start the session MSG offers, if it is a sealed request with an offer."""
        offer = msg.claims.get("ses")
        if msg.session is not None or msg.typ != "request" or not isinstance(offer, dict):
            return
        sid = new_sid()
        self.keys = SessionKeys.derive(
            offer_secret(offer),
            sid,
            role="gateway",
            local=self.identity.public,
            remote=msg.sender,
            ttl_s=self.ttl_s,
        )
        self._announce, self._live = (msg.jti, sid), False

    def outgoing(
        self, to: PublicIdentity, typ: str, body: dict[str, Any]
    ) -> tuple[str, str | None]:
        """The frame carrying BODY to TO, and the session id it announces (else None)."""
        keys, announce = self.keys, self._announce
        if announce is not None and typ in _ANSWERS and body.get("re") == announce[0]:
            ttl = int(self.ttl_s)
            body = {**body, "ses": {"id": announce[1], "ttl": ttl}}
            return seal(body, sender=self.identity, recipient=to, typ=typ), announce[1]
        if self._live and keys is not None and keys.remote.id == to.id and keys.usable():
            return keys.seal(body, typ), None
        return seal(body, sender=self.identity, recipient=to, typ=typ), None

    def sent(self, sid: str) -> None:
        """The announcement of SID went out: later messages to the peer may use the session
        (unless a newer offer replaced it meanwhile)."""
        if self._announce is not None and self._announce[1] == sid:
            self._announce, self._live = None, True
