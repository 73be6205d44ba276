"""Pushing one subscription (observeproperty / subscribeevent) to its subscriber.

The ACL is re-checked (`RequestProcessor.still_allowed`) before every event sent, whenever an
ACL is installed (`wake`), and every `recheck_s` while idle (grant windows and schedules end
without an ACL change). A revoked subscription ends at once with a sealed error `forbidden`
(`re` = the subscribing request's jti). `seq` counts notifications taken from the Thing's bus
plus those the bus dropped for this subscriber, so a gap shows loss.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from gateway.identity import PublicIdentity
from gateway.requests import Request
from gateway.things.bus import Kind, Notification, Subscription

if TYPE_CHECKING:
    from gateway.bindings.p2p.session import PeerSession

#: (subscriber id, "property" | "event", thing, affordance): one subscription each per connection.
StreamKey = tuple[str, Kind, str, str]
REVOKED_STATUS: Final = 403


class EventPush:
    """Owns the task that delivers one subscription's notifications as sealed events."""

    def __init__(
        self,
        session: PeerSession,
        req: Request,
        sub: Subscription,
        subscriber: PublicIdentity,
        *,
        re: str,
    ) -> None:
        self.session = session
        self.req = req
        self.sub = sub
        self.subscriber = subscriber
        self.re = re
        self.key: StreamKey = (subscriber.id, sub.kind, req.thing, req.name)
        self.task: asyncio.Task[None] | None = None
        self.taken = 0
        self._idle: asyncio.Timeout | None = None
        self._recheck = False

    def start(self) -> None:
        """Start delivering (after the subscribing request was answered)."""
        name = f"{self.session.label}-push-{self.sub.kind}-{self.re[:8]}"
        self.task = self.session.tasks.spawn(self._run(), name=name)

    def wake(self) -> None:
        """Re-check the ACL now (the ACL changed)."""
        self._recheck = True
        idle = self._idle
        if idle is not None:
            idle.reschedule(asyncio.get_running_loop().time())

    async def stop(self) -> None:
        """Cancel delivery, wait for it to end, close the subscription."""
        self.sub.close()
        task = self.task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})  # propagates our own cancellation, not the task's

    async def _next(self) -> Notification | None:
        """The next notification, or None when it is time to re-check the ACL."""
        if self._recheck:
            self._recheck = False
            return None
        try:
            async with asyncio.timeout(self.session.ctx.limits.recheck_s) as idle:
                self._idle = idle
                try:
                    return await self.sub.get()
                finally:
                    self._idle = None
        except TimeoutError:
            self._recheck = False
            return None

    async def _run(self) -> None:
        session, processor = self.session, self.session.ctx.processor
        try:
            while not self.sub.closed:
                n = await self._next()
                if not await processor.still_allowed(self.req):
                    await session.send_error(
                        self.subscriber,
                        "forbidden",
                        "access revoked",
                        re=self.re,
                        status=REVOKED_STATUS,
                    )
                    return
                if n is None:
                    continue
                seq = self.taken + self.sub.dropped
                self.taken += 1
                body = {"thing": n.thing, "name": n.name, "seq": seq, "data": n.data, "re": self.re}
                if not await session.send_sealed(self.subscriber, "event", body):
                    return  # the connection is gone
        finally:
            self.sub.close()
            if session.streams.get(self.key) is self:
                del session.streams[self.key]
