"""The peer's end of session keys (docs/protocol.md §8), for `PeerConnection`.

The first Thing request on a link is sealed and offers a session; when the gateway's answer
announces it, later Thing requests on that link go as session frames (one AES-GCM operation
instead of two ECDH, a signature and a verification each way). Administrative requests stay
sealed. A gateway that does not announce (an older one) is not asked again on that link. Keys
belong to one link: `adopt` moving to another link starts over there, while answers still due
on the old link open with the old link's keys.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from gateway.errors import MessageError
from gateway.identity import KeyPair, PublicIdentity
from gateway.messages import Opened, ReplayCache, open_sealed, seal
from gateway.messages.sessionkeys import (
    SESSION_ALG,
    SESSION_OPS,
    SessionKeys,
    frame_alg,
    new_offer,
    parse_announcement,
)
from gateway.reach.link import Link
from gateway.text import clean

log = logging.getLogger(__name__)

#: Refusals after which a request sent as a session frame is sent again, sealed, once.
RESEND_CODES: Final = frozenset({"unknown_session", "session_expired"})


class PeerKeys:
    """Session keys per link, and the one outstanding offer."""

    def __init__(self, key: KeyPair, gateway: PublicIdentity) -> None:
        self.key = key
        self.gateway = gateway
        self.enabled = True
        self._keys: dict[int, SessionKeys] = {}  # id(link) -> its session
        self._offer: tuple[int, str, bytes] | None = None  # (id(link), jti, secret)
        self._declined: set[int] = set()  # links whose gateway did not announce a session

    def frame(self, body: dict[str, Any], jti: str, link: Link, iat: int) -> tuple[str, bool]:
        """The request frame for BODY on LINK, and whether it is a session frame.

        IAT is the request's issue time: every frame of one request (jti) carries the same
        iat and exp, so at most one of them is ever executed (the replay cache holds the jti
        until that exp, and after it every copy is expired).
        """
        lid = id(link)
        keys = self._keys.get(lid)
        thing_op = body.get("op") in SESSION_OPS
        if keys is not None and thing_op and self.enabled and keys.usable():
            return keys.seal(body, "request", jti=jti, now=iat), True
        if self.enabled and thing_op and self._offer is None and lid not in self._declined:
            offer, secret = new_offer()
            frame = seal(
                {**body, "ses": offer},
                sender=self.key,
                recipient=self.gateway,
                typ="request",
                jti=jti,
                now=iat,
            )
            self._offer = (lid, jti, secret)
            return frame, False
        frame = seal(body, sender=self.key, recipient=self.gateway, typ="request", jti=jti, now=iat)
        return frame, False

    def open(self, frame: str, link: Link, replay: ReplayCache) -> Opened:
        """Open a frame that came on LINK; `MessageError` when refused."""
        keys = self._keys.get(id(link))
        if keys is not None and frame_alg(frame) == SESSION_ALG:
            return keys.open(frame, replay=replay)
        return open_sealed(frame, recipient=self.key, replay=replay)

    def answered(self, msg: Opened, link: Link) -> None:
        """Take the announcement from the sealed answer to our offer, if MSG is that answer."""
        offer = self._offer
        if offer is None or msg.claims.get("re") != offer[1] or msg.session is not None:
            return
        lid, _, secret = offer
        self._offer = None
        if lid != id(link):
            return
        if "ses" not in msg.claims:
            self._declined.add(lid)  # the gateway does not do sessions: keep sealing
            return
        try:
            sid, ttl = parse_announcement(msg.claims["ses"])
        except MessageError as exc:
            log.warning("ignored a malformed session announcement: %s", clean(str(exc), 120))
            self._declined.add(lid)
            return
        self._keys[lid] = SessionKeys.derive(
            secret, sid, role="peer", local=self.key.public, remote=self.gateway, ttl_s=ttl
        )

    def finished(self, jti: str) -> None:
        """The request JTI is over; an offer it carried and nobody answered may be made again."""
        if self._offer is not None and self._offer[1] == jti:
            self._offer = None

    def retire(self, link: Link) -> None:
        """Send nothing more on LINK's session (a refusal named it), but still open answers
        of it until they expire: an unauthenticated refusal must not cost real answers."""
        keys = self._keys.get(id(link))
        if keys is not None:
            keys.retire()

    def drop(self, link: Link) -> None:
        """Forget LINK's session (the link is gone)."""
        self._keys.pop(id(link), None)
        self._declined.discard(id(link))
