"""`streembit-peer` network commands: a DHT seed node, find a gateway, and control its Things.

    streembit-peer [--host ADDR] node --dht-port N [--host ADDR] [--bootstrap HOST:PORT]
    streembit-peer [--host ADDR] --bootstrap HOST:PORT find [--host ADDR] GW_ID
    streembit-peer --bootstrap HOST:PORT --key KEY things|td|read|write|invoke|observe|subscribe ...
    streembit-peer --bootstrap HOST:PORT --key KEY acl push --acl ACL_FILE GW_ID

The peer's own short-lived DHT node binds to the local address of the route toward the
bootstrap nodes (so nodes on other hosts can answer it); `--host ADDR` chooses another, before
or after the command (after it wins when both are given).
A refused request exits 1 and prints the gateway's reason. (An id that starts with '-' goes
after `--`, e.g. `find -- -AbC...`.)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import jsonsafe
from gateway.cli.common import EXIT_FAIL, EXIT_OK, SETTLES_GC, add_json, id_arg, out, settle_gc
from gateway.errors import ConfigError, IdentityError, P2PError

if TYPE_CHECKING:  # the network side (aiohttp, the DHT) is imported by the commands using it
    from gateway.peer import PeerConnection
    from gateway.peer.cache import ContactCache
    from gateway.peer.find import Contact

Action = Callable[["PeerConnection", argparse.Namespace], Awaitable[Any]]
T = TypeVar("T")


async def answer(
    args: argparse.Namespace, conn: PeerConnection, request: Awaitable[T], show: Callable[[T], None]
) -> int:
    """Await REQUEST (made on CONN), close CONN, then `show` the result: EXIT_OK; or print the
    gateway's refusal: EXIT_FAIL."""
    from gateway.peer import PeerRequestError

    try:
        result = await request
    except PeerRequestError as exc:
        out(
            args,
            {"error": exc.code, "reason": exc.reason, "status": exc.status},
            f"refused ({exc.status} {exc.code}): {exc.reason}",
        )
        return EXIT_FAIL
    finally:
        await conn.close()
    show(result)
    return EXIT_OK


def _bootstrap(args: argparse.Namespace) -> list[tuple[str, int]]:
    boot: list[tuple[str, int]] = []
    texts = getattr(args, "bootstrap", None) or []
    if not texts:
        return boot
    from gateway.config import parse_hostport  # (the config model: only when given)

    for text in texts:
        try:
            boot.append(parse_hostport(text))
        except ValueError as exc:
            raise ConfigError("--bootstrap", text, f"HOST:PORT ({exc})") from None
    return boot


def host_arg(args: argparse.Namespace) -> str | None:
    """--host: the local address of the peer's DHT node; None: the route's source address."""
    host = getattr(args, "host", None)
    return str(host) if host else None


def cache_arg(args: argparse.Namespace) -> ContactCache | None:
    """The contact cache (gateway/peer/cache.py); None with --no-cache."""
    from gateway.peer.cache import ContactCache

    return None if getattr(args, "no_cache", False) else ContactCache.for_user()


def json_arg(text: str, what: str) -> Any:
    """A JSON value typed by a person (VALUE, INPUT), within the bounds of every other input."""
    try:
        return jsonsafe.loads(text, what=what)
    except jsonsafe.JsonInputError as exc:
        hint = "; quote strings: '\"text\"'" if exc.problem == jsonsafe.SYNTAX else ""
        raise P2PError(f"{exc}{hint}", code="bad_input") from None


@dataclass(frozen=True)
class Json:
    """A JSON argument once parsed (VALUE of write, INPUT of invoke)."""

    value: Any


#: the positional arguments that are JSON, by attribute
JSON_ARGS = {"value": "VALUE", "input": "INPUT"}

#: the contact record's members that are times (Unix seconds; ISO 8601 UTC for people)
TIME_KEYS = ("iat", "exp")


def _utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def _record_dict(c: Contact) -> dict[str, Any]:
    r = c.record
    return {
        "id": r.id,
        "seq": r.seq,
        "iat": r.iat,
        "exp": r.exp,
        "addrs": list(r.addrs),
        "td": r.td,
    }


# --------------------------------------------------------------------------- commands
def cmd_node(args: argparse.Namespace) -> int:
    from gateway.cli.node import cmd_node as run_node

    return run_node(args, host_arg(args) or "127.0.0.1", _bootstrap(args))


def cmd_find(args: argparse.Namespace) -> int:
    from gateway.peer.find import ephemeral_dht, find_contact

    async def main() -> int:
        async with ephemeral_dht(_bootstrap(args), host_arg(args)) as dht:
            c = await find_contact(dht, args.gateway_id)
        cache = cache_arg(args)
        if cache is not None:  # find always asks the DHT, and refreshes the cache
            cache.save(c)
        d = _record_dict(c)
        if getattr(args, "connect", False):
            d["path"] = await _path_taken(c)
        shown = {k: _utc(v) if k in TIME_KEYS else v for k, v in d.items()}
        out(args, d, lambda: "\n".join(f"{k}: {v}" for k, v in shown.items()))
        return EXIT_OK

    return asyncio.run(main())


async def _path_taken(c: Contact) -> dict[str, Any]:
    """Connect as a throwaway key (Happy Eyeballs over the record's addresses, as every command
    does) and say which address answered and how: direct, or relayed (docs/reach.md)."""
    import time

    from gateway.identity import generate_keypair
    from gateway.peer import PeerClient, PeerConnectionError
    from gateway.peer.find import connect

    t0 = time.perf_counter()
    async with PeerClient(generate_keypair()) as client:
        try:
            conn = await connect(client, c)
        except PeerConnectionError as exc:
            return {"path": None, "error": str(exc)}
        took = round((time.perf_counter() - t0) * 1000, 1)
        return {"path": conn.path, "url": conn.url, "connect_ms": took}


def _session(
    action: Action, human: Callable[[Any, argparse.Namespace], str]
) -> Callable[[argparse.Namespace], int]:
    """Run ACTION on a connection to the gateway found by id; print its result."""

    def handler(args: argparse.Namespace) -> int:
        for attr, what in JSON_ARGS.items():  # a typo is refused before any network traffic
            if getattr(args, attr, None) is not None:
                setattr(args, attr, Json(json_arg(getattr(args, attr), what)))
        if not getattr(args, "key", None):
            raise IdentityError("--key KEY is needed to talk to a gateway", code="no_key")
        from gateway.identity import load_keypair

        key = load_keypair(Path(args.key))
        chain: list[str] = []
        if getattr(args, "delegation", None):  # refused here, before any network traffic
            from gateway.cli.delegate import read_chain

            chain = read_chain(Path(args.delegation))

        from gateway.peer import PeerClient
        from gateway.peer.cache import connect_by_id

        boot = _bootstrap(args)
        settle_gc()  # start-up done: every module this command needs is loaded (common.py)

        async def main() -> int:
            host, cache = host_arg(args), cache_arg(args)
            async with PeerClient(key) as client:
                conn = await connect_by_id(
                    client, args.gateway_id, bootstrap=boot, host=host, cache=cache
                )
                conn.delegation = tuple(chain)

                def show(result: Any) -> None:
                    if result is not None or not getattr(args, "streaming", False):
                        out(args, result, lambda: human(result, args))

                return await answer(args, conn, action(conn, args), show)

        return asyncio.run(main())

    return handler


async def _things(c: PeerConnection, a: argparse.Namespace) -> Any:
    return await c.things()


async def _td(c: PeerConnection, a: argparse.Namespace) -> Any:
    return await c.td(a.thing)


async def _read(c: PeerConnection, a: argparse.Namespace) -> Any:
    return await c.read(a.thing, a.name)


async def _write(c: PeerConnection, a: argparse.Namespace) -> Any:
    await c.write(a.thing, a.name, a.value.value)
    return {"ok": True}


async def _invoke(c: PeerConnection, a: argparse.Namespace) -> Any:
    return await c.invoke(a.thing, a.name, a.input.value if a.input is not None else None)


async def _acl_push(c: PeerConnection, a: argparse.Namespace) -> Any:
    text = await asyncio.to_thread(Path(a.acl).read_text, encoding="utf-8", errors="replace")
    return await c.acl_push(text.strip())


def _stream(kind: str) -> Action:
    async def run(c: PeerConnection, a: argparse.Namespace) -> Any:
        a.streaming = True
        stream = c.observe(a.thing, a.name) if kind == "observe" else c.subscribe(a.thing, a.name)
        n = 0
        upgrading = _announce_and_upgrade(c)
        async with stream:
            async for ev in stream.events():
                line = {"thing": ev.thing, "name": ev.name, "seq": ev.seq, "data": ev.data}
                out(a, line, f"{ev.thing}/{ev.name} #{ev.seq}: {json.dumps(ev.data)}")
                n += 1
                if a.count and n >= a.count:
                    break
        if upgrading is not None:
            upgrading.cancel()
        return None

    return run


def _announce_and_upgrade(c: PeerConnection) -> asyncio.Task[None] | None:
    """A streaming command says on stderr how it reached the gateway; through a relay it then
    tries a direct link (hole punch) in the background and says when it moved there."""
    import sys

    how = "relayed" if c.path == "relayed" else "directly"
    print(f"connected to {c.gateway.id[:12]}… {how} via {c.url}", file=sys.stderr, flush=True)
    if c.path != "relayed":
        return None
    from gateway.reach.upgrade import upgrade

    async def run() -> None:
        if await upgrade(c):
            print(f"moved to a direct link {c.url} (hole punched)", file=sys.stderr, flush=True)
        else:
            print("staying on the relay (no direct path)", file=sys.stderr, flush=True)

    return asyncio.create_task(run(), name="peer-upgrade")


def _plain(result: Any, a: argparse.Namespace) -> str:
    return json.dumps(result, indent=None if not isinstance(result, (dict, list)) else 2)


def _things_human(result: Any, a: argparse.Namespace) -> str:
    return (
        "\n".join(f"{t.get('name')}: {t.get('title')} ({t.get('id')})" for t in result) or "(none)"
    )


# --------------------------------------------------------------------------- parser
def net(p: argparse.ArgumentParser, host: bool = True) -> argparse.ArgumentParser:
    """The options of every network command (also accepted before the command): --json,
    --host (HOST), --bootstrap, --key, --no-cache."""
    add_json(p)
    if host:
        p.add_argument(
            "--host",
            default=argparse.SUPPRESS,
            metavar="ADDR",
            help="local address of this peer's DHT node (default: the source address of "
            "the route toward the bootstrap nodes; 0.0.0.0: every interface)",
        )
    p.add_argument(
        "--bootstrap",
        action="append",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help="a DHT node to join through (repeatable)",
    )
    p.add_argument("--key", default=argparse.SUPPRESS, help="your private key file")
    p.add_argument(
        "--no-cache",
        action="store_true",
        default=argparse.SUPPRESS,
        help="neither use nor update the cached contact records (always look up the DHT)",
    )
    return p


def add_network_commands(sub: Any, acl_sub: Any) -> None:
    sp = sub.add_parser(
        "node", help="run a DHT node (a seed for others to join through) and, when public, a relay"
    )
    net(sp, host=False)
    from gateway.cli.node import add_node_args

    add_node_args(sp)
    sp.set_defaults(func=cmd_node)

    sp = net(sub.add_parser("find", help="print a gateway's verified contact record"))
    sp.add_argument(
        "--connect",
        action="store_true",
        help="also connect and show which path answered (direct or through which relay)",
    )
    sp.add_argument("gateway_id", metavar="GW_ID", type=id_arg)
    sp.set_defaults(func=cmd_find)

    specs: list[tuple[str, str, list[str], Action, Callable[[Any, argparse.Namespace], str]]] = [
        ("things", "list a gateway's Things", [], _things, _things_human),
        ("td", "print a Thing's Thing Description", ["thing"], _td, _plain),
        ("read", "read a property", ["thing", "name"], _read, _plain),
        (
            "write",
            "write a property (VALUE is JSON)",
            ["thing", "name", "value"],
            _write,
            lambda r, a: "ok",
        ),
        ("invoke", "invoke an action (INPUT is JSON)", ["thing", "name"], _invoke, _plain),
        ("observe", "print a property's changes", ["thing", "name"], _stream("observe"), _plain),
        (
            "subscribe",
            "print an event's occurrences",
            ["thing", "name"],
            _stream("subscribe"),
            _plain,
        ),
    ]
    meta = {"thing": "THING", "name": "NAME", "value": "VALUE"}
    for name, help, positional, action, human in specs:
        sp = net(sub.add_parser(name, help=help, description=help))
        sp.add_argument("gateway_id", metavar="GW_ID", type=id_arg)
        for p in positional:
            sp.add_argument(p, metavar=meta[p])
        if name == "invoke":
            sp.add_argument("input", nargs="?", default=None, metavar="INPUT")
        if name in ("observe", "subscribe"):
            sp.add_argument("--count", type=int, default=0, help="stop after N (default: forever)")
        sp.add_argument(
            "--delegation",
            metavar="FILE",
            help="a delegation chain you received (`streembit-peer delegate --out`): act on "
            "its rights instead of a grant of your own",
        )
        sp.set_defaults(func=_session(action, human), **{SETTLES_GC: True})

    sp = net(acl_sub.add_parser("push", help="send a signed ACL to a running gateway (owner)"))
    sp.add_argument("--acl", required=True)
    sp.add_argument("gateway_id", metavar="GW_ID", type=id_arg)
    sp.set_defaults(
        func=_session(_acl_push, lambda r, a: f"ACL installed: {json.dumps(r)}"),
        **{SETTLES_GC: True},
    )
