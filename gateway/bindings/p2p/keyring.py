"""The session keys of one P2P connection (docs/protocol.md §8): opening frames of either kind,
accepting offers, announcing them in answers, and sealing answers with the fastest form each
peer has agreed to.

Life of a session, per peer on one connection:
1. a verified sealed request carries `ses` (an offer): `accept` derives the keys at once and
   remembers the request's jti; a newer offer from the same peer replaces its older session,
   and an offer never touches another peer's session;
2. the answer to that request (reply or error) is still sealed, and carries the announcement
   `ses: {"id", "ttl"}` (`outgoing`);
3. the first session frame the gateway opens from that peer confirms that the peer holds the
   key: only then does the gateway answer it and everything later with session frames, until
   the session's TTL; then sealed again until the peer offers anew.
The connection's end ends its sessions: nothing of them is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import MessageError
from gateway.identity import KeyPair, PublicIdentity
from gateway.messages import Opened, codes, open_sealed, seal
from gateway.messages.codec import header_object
from gateway.messages.replay import ReplayCache
from gateway.messages.sessionkeys import (
    SESSION_ALG,
    SESSION_TTL_S,
    SessionKeys,
    new_sid,
    offer_secret,
)

#: Answers that may carry the announcement of a session offered by the request they answer.
_ANSWERS: Final = frozenset({"reply", "error"})
#: Sessions one connection holds at once (one per peer): a connection normally carries one
#: peer; this bounds what a relay multiplexing peers, or a flood of keys, can make it keep.
MAX_SESSIONS_PER_CONNECTION: Final = 8


@dataclass
class _Session:
    keys: SessionKeys
    offer_jti: str  # the sealed request that offered it: its answer announces the session
    announced: bool = False
    confirmed: bool = False  # a session frame from the peer opened: it holds the key


class Keyring:
    """One connection's session state; the gateway's end."""

    def __init__(self, identity: KeyPair, ttl_s: float | None = None) -> None:
        self.identity = identity
        self.ttl_s = SESSION_TTL_S if ttl_s is None else ttl_s
        self._by_peer: dict[str, _Session] = {}  # oldest first
        self._by_sid: dict[str, _Session] = {}

    def keys_of(self, peer_id: str) -> SessionKeys | None:
        """The session keys PEER_ID has on this connection, if any."""
        entry = self._by_peer.get(peer_id)
        return None if entry is None else entry.keys

    def forget(self) -> None:
        """Drop every session (as if the gateway restarted)."""
        self._by_peer.clear()
        self._by_sid.clear()

    def open(self, frame: str, replay: ReplayCache | None, leeway: float | None = None) -> Opened:
        """Open FRAME, a session frame or a sealed message; `MessageError` when refused."""
        kw: dict[str, Any] = {} if leeway is None else {"leeway": leeway}
        try:
            header: dict[str, Any] | None = header_object(frame, "header")
        except MessageError:
            header = None  # open_sealed refuses it with the precise reason
        if header is None or header.get("alg") != SESSION_ALG:
            return open_sealed(frame, recipient=self.identity, replay=replay, **kw)
        kid = header.get("kid")
        entry = self._by_sid.get(kid) if isinstance(kid, str) else None
        if entry is None:
            raise MessageError(
                "no session with this id on this connection", code=codes.UNKNOWN_SESSION
            )
        msg = entry.keys.open(frame, replay=replay, **kw)
        if replay is not None:  # a real opening (not the re-opening that addresses a refusal)
            entry.confirmed = True
        return msg

    def accept(self, msg: Opened) -> None:
        """Start the session MSG offers, if it is a sealed request with an offer."""
        offer = msg.claims.get("ses")
        if msg.session is not None or msg.typ != "request" or not isinstance(offer, dict):
            return
        secret = offer_secret(offer)  # shape and canonical form checked by claims.check_body
        peer = msg.sender.id
        old = self._by_peer.pop(peer, None)
        if old is not None:
            self._by_sid.pop(old.keys.sid, None)
        while len(self._by_peer) >= MAX_SESSIONS_PER_CONNECTION:
            oldest = self._by_peer.pop(next(iter(self._by_peer)))
            self._by_sid.pop(oldest.keys.sid, None)
        keys = SessionKeys.derive(
            secret, new_sid(), role="gateway", local=self.identity.public, remote=msg.sender,
            ttl_s=self.ttl_s,
        )  # fmt: skip
        entry = _Session(keys, msg.jti)
        self._by_peer[peer] = entry
        self._by_sid[keys.sid] = entry

    def outgoing(
        self, to: PublicIdentity, typ: str, body: dict[str, Any]
    ) -> tuple[str, str | None]:
        """The frame carrying BODY to TO, and the session id it announces (else None)."""
        entry = self._by_peer.get(to.id)
        if entry is None:
            return seal(body, sender=self.identity, recipient=to, typ=typ), None
        if not entry.announced and typ in _ANSWERS and body.get("re") == entry.offer_jti:
            body = {**body, "ses": {"id": entry.keys.sid, "ttl": int(self.ttl_s)}}
            return seal(body, sender=self.identity, recipient=to, typ=typ), entry.keys.sid
        if entry.confirmed and entry.keys.usable():
            return entry.keys.seal(body, typ), None
        return seal(body, sender=self.identity, recipient=to, typ=typ), None

    def sent(self, sid: str) -> None:
        """The announcement of SID went out (it is not made twice)."""
        entry = self._by_sid.get(sid)
        if entry is not None:
            entry.announced = True
