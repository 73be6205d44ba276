"""Fan-out of property changes and events to subscribers, with bounded queues.

A slow subscriber never blocks a Thing: its queue keeps the newest `maxsize` items and drops the
oldest (counted in `dropped`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["property", "event"]

SUBSCRIBER_QUEUE = 64  # items a slow subscriber may lag behind before the oldest are dropped


@dataclass(frozen=True)
class Notification:
    thing: str
    kind: Kind
    name: str
    data: Any
    seq: int


@dataclass(eq=False)
class Subscription:
    bus: Bus
    kind: Kind
    name: str
    queue: asyncio.Queue[Notification] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    dropped: int = 0
    closed: bool = False

    def push(self, n: Notification) -> None:
        if self.closed:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(n)

    async def get(self) -> Notification:
        return await self.queue.get()

    def close(self) -> None:
        self.closed = True
        self.bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Notification]:
        while not self.closed:
            yield await self.queue.get()


class Bus:
    """Per-Thing publisher. `seq` increases with every notification (for long-poll cursors)."""

    def __init__(self, thing: str) -> None:
        self.thing = thing
        self.seq = 0
        self.faults = 0  # times the Thing's `fault` property turned non-null (metrics)
        self._subs: set[Subscription] = set()
        self.last: dict[tuple[Kind, str], Notification] = {}
        # in-process observers called synchronously on every publish (the gateway's fault audit);
        # not subscribers: they have no queue and are not counted in subscriber_count
        self.listeners: list[Callable[[Notification], None]] = []

    def subscribe(self, kind: Kind, name: str) -> Subscription:
        sub = Subscription(self, kind, name)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, kind: Kind, name: str, data: Any) -> Notification:
        self.seq += 1
        if kind == "property" and name == "fault" and data is not None:
            before = self.last.get((kind, name))  # every Thing reports faults through `fault`
            if before is None or before.data is None:
                self.faults += 1
        n = Notification(self.thing, kind, name, data, self.seq)
        self.last[(kind, name)] = n
        for sub in list(self._subs):
            if sub.kind == kind and sub.name == name:
                sub.push(n)
        for listener in list(self.listeners):
            listener(n)
        return n

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
