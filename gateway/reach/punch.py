"""Direct upgrade by TCP hole punching (simultaneous open), synchronised like libp2p DCUtR.

Once a peer and a gateway talk through a relay, both ends learn their public mapping from an
observer (gateway/reach/observe.py), swap addresses over the relayed session and connect to each
other at the same moment from the port they observed, so that each NAT has an outgoing entry that
lets the other side's SYN in (docs/reach.md, "Direct upgrade"):

    initiator                                   responder
    observe(local port L) -> A                  observe(local port M) -> B
    t0; send connect{addrs:[A]}  ------------>
         rtt = now - t0  <------------------------ answer connect{addrs:[B]}
    send sync  -------------------------------->  on receipt: dial A from M
    wait rtt/2, dial B from L                      (answers {"type": "sync"}; not waited for)

`simultaneous_open` dials from the bound port over and over (a new socket per attempt, same port,
SO_REUSEADDR|SO_REUSEPORT) until one connect succeeds, and also listens on that port: behind a
full-cone NAT the other side's SYN may arrive first (or from another port, if its NAT is
symmetric), and is then accepted (only from the remote's IP address). Whatever connects first
wins; failure is `ReachError(code=punch_failed)` with a one-line reason, and the relayed path goes
on working. Times (`start_at`) are `loop.time()` values: monotonic and local to one process; the
two ends are synchronised by the RTT/2 rule, not by clocks.

`exchange` abstracts the relayed session: for the initiator, "send this dict, return the other
side's answer"; for the responder, "send this dict (my answer), return the other side's next
message", started with `incoming` (the initiator's connect). `PunchResponder.handle` is the same
responder as a request handler, for sessions that dispatch each request to a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from device_drivers.backoff import Backoff
from gateway.codes import Code
from gateway.errors import ReachError, StreembitError
from gateway.reach.observe import (
    Address,
    Observation,
    format_addr,
    observe,
    parse_addr,
    reuse_socket,
    set_abortive,
    why,
)
from gateway.reach.punchmsg import (
    MAX_ADDRS,
    CancelMsg,
    ConnectMsg,
    PunchMessage,
    SyncMsg,
    encode_message,
    parse_message,
    validate_message,
)
from gateway.reach.spray import SprayRole, budget, spray_open, sprayable
from gateway.text import clean

OTHER_ROLE: Final[dict[SprayRole, SprayRole]] = {"E": "S", "S": "E"}

__all__ = [
    "MAX_ADDRS",
    "CancelMsg",
    "ConnectMsg",
    "Exchange",
    "PunchMessage",
    "PunchPlan",
    "PunchResponder",
    "PunchResult",
    "PunchTiming",
    "Role",
    "SyncMsg",
    "encode_message",
    "parse_message",
    "punch",
    "simultaneous_open",
    "validate_message",
]

Role = Literal["initiator", "responder"]
Exchange = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]]

# errors of one connect attempt that a punch retries: the other side is not dialing yet (RST),
# a SYN was dropped, the port or the 4-tuple is briefly taken (an accepted connection, a socket
# not fully closed yet), a route not there yet
_RETRY: Final = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ETIMEDOUT,
        errno.EADDRINUSE,
        errno.EADDRNOTAVAIL,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)


def _fail(reason: str) -> ReachError:
    return ReachError(f"punch: {reason}", code=Code.PUNCH_FAILED)


# -- plans and timing -------------------------------------------------------------------------
@dataclass(frozen=True)
class PunchTiming:
    """Bounds of one punch. `deadline_s` caps everything (observe, exchanges, dial)."""

    deadline_s: float = 15.0
    dial_s: float = 5.0  # dialing, from the synchronised start
    attempt_s: float = 1.0  # one connect attempt (the kernel resends a SYN after 1 s)
    exchange_s: float = 5.0  # one exchange over the relayed session
    observe_s: float = 5.0
    max_rtt_s: float = 2.0  # a longer measured RTT is capped (so is the initiator's wait)
    attempts: int = 64
    listen: bool = True  # also accept the other side's SYN on the punched port
    backoff_initial_s: float = 0.05
    backoff_cap_s: float = 0.5
    spray_s: float = 3.0  # a spray matches within a round trip or a SYN resend, or never
    spray_count: int = 768  # sockets per side (spray.COUNT): about 1 miss in 10 000

    def __post_init__(self) -> None:
        for name in ("deadline_s", "dial_s", "attempt_s", "exchange_s", "observe_s", "max_rtt_s"):
            val = getattr(self, name)
            if not math.isfinite(val) or val <= 0:
                raise ValueError(f"punch timing {name} must be finite and > 0")
        if self.attempts < 1:
            raise ValueError("punch timing attempts must be >= 1")

    def backoff(self) -> Backoff:
        return Backoff(initial_s=self.backoff_initial_s, cap_s=self.backoff_cap_s)


@dataclass(frozen=True)
class PunchPlan:
    """What one end agreed on: its bound address and observed mapping, the other side's
    addresses (the first is dialed), the RTT measured (initiator only) and the dial start."""

    role: Role
    local: Address
    observed: Address
    remote: tuple[Address, ...]
    rtt_s: float | None
    start_at: float  # loop.time()
    spray: SprayRole | None = None  # this end's role in a spray; None: one simultaneous open


@dataclass
class PunchResult:
    """A connected, non-blocking TCP socket (the caller owns and closes it) and its plan."""

    sock: socket.socket
    plan: PunchPlan
    peer: Address  # the other side's address as this end's socket sees it


# -- simultaneous open ------------------------------------------------------------------------
@dataclass
class _Tally:
    attempts: int = 0
    last: str = "no attempt"


async def _connect_loop(
    local: Address, remote: Address, attempts: int, attempt_s: float, backoff: Backoff, t: _Tally
) -> socket.socket:
    loop = asyncio.get_running_loop()
    for _ in range(attempts):
        t.attempts += 1
        try:
            sock = reuse_socket(local)
        except OSError as exc:
            if exc.errno not in _RETRY:
                raise _fail(f"cannot bind {format_addr(local)}: {why(exc)}") from None
            t.last = f"bind: {why(exc)}"
            await asyncio.sleep(backoff.next())
            continue
        try:
            async with asyncio.timeout(attempt_s):
                await loop.sock_connect(sock, remote)
        except TimeoutError:
            sock.close()
            t.last = f"no answer within {attempt_s:g} s"
            continue  # the attempt itself waited: dial again at once
        except OSError as exc:
            sock.close()
            if exc.errno not in _RETRY:
                raise _fail(f"connect to {format_addr(remote)}: {why(exc)}") from None
            t.last = why(exc)
            await asyncio.sleep(backoff.next())
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise _fail(f"{attempts} connects to {format_addr(remote)} failed (last: {t.last})")


async def _accept_loop(listener: socket.socket, remote_ip: str) -> socket.socket:
    """The first connection from REMOTE_IP (any port: a symmetric NAT picks a new one)."""
    loop = asyncio.get_running_loop()
    while True:
        conn, peer = await loop.sock_accept(listener)
        try:
            ip = parse_addr(peer[0], peer[1])[0]
        except ValueError:
            ip = ""
        if ip == remote_ip:
            conn.setblocking(False)
            return conn
        set_abortive(conn)
        conn.close()


async def _settle(tasks: set[asyncio.Task[socket.socket]]) -> None:
    """Cancel TASKS and wait for them; close any socket one produced meanwhile."""
    for task in tasks:
        task.cancel()
    for res in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(res, socket.socket):
            res.close()


async def simultaneous_open(
    local_port: int,
    remote: Address,
    *,
    start_at: float | None = None,
    deadline_s: float = 5.0,
    attempts: int = 64,
    attempt_s: float = 1.0,
    local_host: str = "0.0.0.0",  # noqa: S104 - the port observed is on every interface
    listen: bool = True,
    backoff: Backoff | None = None,
) -> socket.socket:
    """A TCP connection between LOCAL_PORT and REMOTE, made by connecting from both ends at once.

    START_AT (a `loop.time()` value; None: now) is when dialing begins; DEADLINE_S counts from
    then. Each attempt is a new socket bound to LOCAL_PORT (SO_REUSEADDR|SO_REUSEPORT); refused,
    reset, timed-out or busy attempts are retried after a capped jittered backoff, up to ATTEMPTS.
    With LISTEN, a connection accepted on LOCAL_PORT from REMOTE's IP address also counts.
    Returns the connected non-blocking socket; ReachError(punch_failed) with a one-line reason."""
    if not 0 < local_port <= 65535:
        raise ValueError("local_port must be the port observed (1-65535)")
    remote = parse_addr(remote[0], remote[1])
    loop = asyncio.get_running_loop()
    start = loop.time() if start_at is None else start_at
    local = (local_host, local_port)
    tally = _Tally()
    listener: socket.socket | None = None
    if listen:
        try:
            listener = reuse_socket(local)
            listener.listen(8)
        except OSError as exc:
            if listener is not None:
                listener.close()
            raise _fail(f"cannot listen on {format_addr(local)}: {why(exc)}") from None
    tasks: set[asyncio.Task[socket.socket]] = set()
    try:
        await asyncio.sleep(max(0.0, start - loop.time()))
        dial = _connect_loop(
            local, remote, attempts, attempt_s, backoff or Backoff(0.05, 0.5), tally
        )
        tasks.add(asyncio.create_task(dial))
        if listener is not None:
            tasks.add(asyncio.create_task(_accept_loop(listener, remote[0])))
        failure: BaseException | None = None
        async with asyncio.timeout_at(start + deadline_s):
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        tasks |= done - {task}  # (a second winner is closed by _settle)
                        return task.result()
                    failure = task.exception()
        if isinstance(failure, ReachError):
            raise failure
        raise _fail(f"dial failed: {failure!r}")
    except TimeoutError:
        raise _fail(
            f"no connection with {format_addr(remote)} within {deadline_s:g} s "
            f"({tally.attempts} connects, last: {tally.last})"
        ) from None
    finally:
        await _settle(tasks)
        if listener is not None:
            listener.close()


# -- coordination -----------------------------------------------------------------------------
async def _ask(exchange: Exchange, msg: dict[str, Any], timing: PunchTiming) -> PunchMessage:
    """Send MSG over the relayed session; the other side's message back, checked."""
    try:
        async with asyncio.timeout(timing.exchange_s):
            answer = await exchange(msg)
    except TimeoutError:
        raise _fail(f"no answer over the relayed session within {timing.exchange_s:g} s") from None
    except (StreembitError, OSError) as exc:
        if isinstance(exc, ReachError) and exc.code == Code.PUNCH_FAILED:
            raise
        raise _fail(f"the relayed session failed: {clean(str(exc), 120)}") from None
    got = validate_message(answer)
    if isinstance(got, CancelMsg):
        raise _fail(f"the other side gave up: {got.reason}")
    return got


async def _observe(local: Address, observer: Address, timing: PunchTiming) -> Observation:
    try:
        return await observe(local, observer, timeout_s=timing.observe_s)
    except ReachError as exc:
        raise _fail(str(exc)) from None


async def _dial(plan: PunchPlan, timing: PunchTiming) -> PunchResult:
    if plan.spray is not None:
        count = budget(timing.spray_count)
        if not count:
            raise _fail("not enough free file descriptors for a spray")
        if not sprayable(plan.remote[0][0]):
            raise _fail("a spray goes to public addresses only")
        sock = await spray_open(
            plan.spray, plan.local[1], plan.remote[0], count=count, deadline_s=timing.spray_s,
            start_at=plan.start_at, local_host=plan.local[0],
        )  # fmt: skip
        return _result(sock, plan)
    sock = await simultaneous_open(
        plan.local[1],
        plan.remote[0],
        start_at=plan.start_at,
        deadline_s=timing.dial_s,
        attempts=timing.attempts,
        attempt_s=timing.attempt_s,
        local_host=plan.local[0],
        listen=timing.listen,
        backoff=timing.backoff(),
    )
    return _result(sock, plan)


def _result(sock: socket.socket, plan: PunchPlan) -> PunchResult:
    try:
        peer = sock.getpeername()
    except OSError as exc:  # reset right after it connected
        sock.close()
        raise _fail(f"the connection was lost at once: {why(exc)}") from None
    return PunchResult(sock, plan, (str(peer[0]), int(peer[1])))


async def _in_background(pending: Awaitable[object]) -> None:
    with contextlib.suppress(StreembitError, OSError, TimeoutError):
        await pending


class PunchResponder:
    """The responder as a request handler: `handle(connect)` observes (once; `prepare()` does it
    ahead) and answers with its own connect; `handle(sync)` answers {"type": "sync"} and starts
    dialing; `result()` is the dial's outcome."""

    def __init__(
        self,
        observer: Address,
        *,
        local: Address = ("0.0.0.0", 0),  # noqa: S104
        timing: PunchTiming | None = None,
    ) -> None:
        self.observer = observer
        self.local = local
        self.timing = timing or PunchTiming()
        self._observed: Observation | None = None
        self._remote: tuple[Address, ...] | None = None
        self._spray: SprayRole | None = None
        self._dial: asyncio.Task[PunchResult] | None = None

    async def prepare(self) -> Observation:
        if self._observed is None:
            self._observed = await _observe(self.local, self.observer, self.timing)
        return self._observed

    async def handle(self, msg: object) -> dict[str, Any]:
        """The answer to one message of the initiator; ReachError(punch_failed) if refused."""
        got = validate_message(msg)
        if isinstance(got, CancelMsg):
            self.close()
            raise _fail(f"the other side gave up: {got.reason}")
        if isinstance(got, ConnectMsg):
            if self._remote is not None:
                raise _fail("a second connect in one punch")
            obs = await self.prepare()
            self._remote = got.addrs
            self._spray = None if got.spray is None else OTHER_ROLE[got.spray]
            return encode_message(ConnectMsg((obs.external,)))
        if self._remote is None or self._observed is None or self._dial is not None:
            raise _fail("sync out of order (before connect, or twice)")
        loop = asyncio.get_running_loop()
        plan = PunchPlan(
            "responder", self._observed.local, self._observed.external, self._remote, None,
            loop.time(), self._spray,
        )  # fmt: skip
        self._dial = asyncio.create_task(_dial(plan, self.timing))
        return encode_message(SyncMsg())

    async def result(self) -> PunchResult:
        if self._dial is None:
            raise _fail("no sync received")
        return await self._dial

    def close(self) -> None:
        if self._dial is not None and not self._dial.done():
            self._dial.cancel()


async def _initiate(
    exchange: Exchange,
    observer: Address,
    local: Address,
    t: PunchTiming,
    also: Sequence[Address] = (),
    spray: SprayRole | None = None,
) -> PunchResult:
    loop = asyncio.get_running_loop()
    obs = await _observe(local, observer, t)
    sent = loop.time()
    addrs = tuple(dict.fromkeys((*also, obs.external)))[:MAX_ADDRS]  # ALSO first: dialed first
    answer = await _ask(exchange, encode_message(ConnectMsg(addrs, spray)), t)
    rtt = min(loop.time() - sent, t.max_rtt_s)
    if not isinstance(answer, ConnectMsg):
        raise _fail("the responder did not answer connect with connect")
    sync = asyncio.create_task(_in_background(exchange(encode_message(SyncMsg()))))
    start = loop.time() + rtt / 2
    plan = PunchPlan("initiator", obs.local, obs.external, answer.addrs, rtt, start, spray)
    try:
        return await _dial(plan, t)
    finally:  # the sync's answer is not waited for
        sync.cancel()
        await asyncio.gather(sync, return_exceptions=True)


async def _respond(
    exchange: Exchange, observer: Address, local: Address, t: PunchTiming, first: object
) -> PunchResult:
    responder = PunchResponder(observer, local=local, timing=t)
    pending: asyncio.Task[None] | None = None
    try:
        got = await _ask(exchange, await responder.handle(first), t)
        if not isinstance(got, SyncMsg):
            raise _fail("expected sync after connect")
        ack = await responder.handle(encode_message(got))
        pending = asyncio.create_task(_in_background(exchange(ack)))
        return await responder.result()
    finally:
        responder.close()
        if pending is not None:  # the pump waits for a next message that never comes
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


async def punch(
    role: Role,
    exchange: Exchange,
    observer: Address,
    *,
    incoming: Mapping[str, Any] | None = None,
    local: Address = ("0.0.0.0", 0),  # noqa: S104
    timing: PunchTiming | None = None,
    also: Sequence[Address] = (),
    spray: SprayRole | None = None,
) -> PunchResult:
    """One DCUtR-like hole punch over EXCHANGE (the relayed session); see the module doc.

    ROLE "initiator": observe, connect/connect (RTT measured), sync, wait RTT/2, dial. ALSO
    (initiator): addresses named before the observed one, e.g. a port the initiator's router
    maps to LOCAL (the responder dials the first address). SPRAY (initiator): spray in that role
    (gateway/reach/spray.py) instead of one simultaneous open; the responder takes the other.
    ROLE "responder": INCOMING is the initiator's connect; observe, answer with connect, dial on
    the sync. Returns the connected socket and the plan; ReachError(punch_failed) otherwise,
    within `timing.deadline_s`."""
    t = timing or PunchTiming()
    if role not in ("initiator", "responder"):
        raise ValueError("role is 'initiator' or 'responder'")
    if role == "responder" and incoming is None:
        raise ValueError("a responder starts from the initiator's connect (incoming)")
    try:
        async with asyncio.timeout(t.deadline_s):
            if role == "initiator":
                return await _initiate(exchange, observer, local, t, also, spray)
            return await _respond(exchange, observer, local, t, incoming)
    except TimeoutError:
        raise _fail(f"not done within {t.deadline_s:g} s") from None
