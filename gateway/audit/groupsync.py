"""Group commit for the audit journal: one fdatasync per group of appends, off the event loop.

The event loop hands a group to the `audit-fsync` thread by writing one byte to a pipe; the
thread runs `fdatasync` and answers with one byte on a second pipe, which the loop watches
(`add_reader`). So a group costs the loop two tiny pipe writes/reads and no cross-thread
callback, and the thread runs almost no Python (it holds the GIL only between its three
system calls). While a sync is in flight, new appends wait for the next group; under load (the
previous group held more than one record) the next group is also held back GROUP_WINDOW_S so
one fdatasync covers many decisions. A lone request is synced at once.

Without a running event loop (a CLI, another thread) the caller syncs in its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from gateway.audit.journal import Journal

GROUP_WINDOW_S = 0.002  # under load, gather appends this long per fdatasync (costly here)

T = TypeVar("T")
Settle = Callable[[list[T], "OSError | None"], None]


class GroupSync(Generic[T]):
    """Collects items written to JOURNAL and calls SETTLE(items, error) once they are durable
    (error is the OSError of a failed sync). SETTLE runs on the loop that queued the group, or
    in the thread that synced inline."""

    def __init__(self, journal: Journal, settle: Settle[T]) -> None:
        self._journal = journal
        self._settle = settle
        self._lock = threading.Lock()
        self._pending: list[T] = []
        self._inflight: list[T] | None = None
        self._scheduled = False
        self._last = 0  # size of the previous group: > 1 means "under load"
        self._error: OSError | None = None  # of the sync in flight, read after its answer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._req_r, self._req_w = os.pipe2(os.O_CLOEXEC)
        self._resp_r, self._resp_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._resp_r, False)
        self._thread = threading.Thread(target=self._run, name="audit-fsync", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ callers
    def add(self, item: T) -> bool:
        """Queue ITEM (already written) for the next group. Call in write order. True when
        there is no running loop here: then call `sync_inline()` (outside the caller's locks)."""
        with self._lock:
            self._pending.append(item)
            if self._scheduled or self._inflight is not None:
                return False
            self._scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return True
        if loop is not self._loop:
            self._bind(loop)
        self._schedule(loop)
        return False

    def close(self) -> None:
        """Stop the thread and sync whatever is still queued or in flight (in this thread)."""
        with contextlib.suppress(OSError):
            os.write(self._req_w, b"q")
        self._thread.join()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                loop.remove_reader(self._resp_r)
        with self._lock:
            batch = (self._inflight or []) + self._pending
            self._inflight, self._pending = None, []
        if batch:
            self._settle(batch, self._sync())
        for fd in (self._req_r, self._req_w, self._resp_r, self._resp_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------------ the loop side
    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        old = self._loop
        if old is not None and not old.is_closed():
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                old.remove_reader(self._resp_r)
        self._loop = loop
        loop.add_reader(self._resp_r, self._on_synced)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._last > 1:  # under load: let more appends join this group
            loop.call_later(GROUP_WINDOW_S, self._kick)
        else:
            loop.call_soon(self._kick)

    def _kick(self) -> None:
        with self._lock:
            self._scheduled = False
            if self._inflight is not None or not self._pending:
                return
            self._inflight, self._pending = self._pending, []
            self._last = len(self._inflight)
        try:
            os.write(self._req_w, b"s")
        except OSError as exc:  # the thread is gone (closed): fail the group
            with self._lock:
                batch, self._inflight = self._inflight, None
            if batch:
                self._settle(batch, exc)

    def _on_synced(self) -> None:
        try:
            answer = os.read(self._resp_r, 64)
        except BlockingIOError:
            return
        if not answer:
            return
        with self._lock:
            batch, self._inflight = self._inflight, None
            error, self._error = self._error, None
            more = bool(self._pending) and not self._scheduled
            if more:
                self._scheduled = True
        if batch:
            self._settle(batch, error)
        if more and self._loop is not None:
            self._schedule(self._loop)

    def sync_inline(self) -> None:
        """Sync what is queued in this thread (no event loop here)."""
        with self._lock:
            self._scheduled = False
            if self._inflight is not None:  # the loop's answer takes these along
                return
            batch, self._pending = self._pending, []
        if batch:
            self._settle(batch, self._sync())

    def _sync(self) -> OSError | None:
        try:
            self._journal.sync()
        except OSError as exc:
            return exc
        return None

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        """audit-fsync thread: per request byte, one fdatasync, then one answer byte."""
        while True:
            try:
                cmd = os.read(self._req_r, 64)
            except OSError:
                return
            if b"s" in cmd:
                self._error = self._sync()
                try:
                    os.write(self._resp_w, b"k")
                except OSError:
                    return
            if not cmd or b"q" in cmd:
                return
