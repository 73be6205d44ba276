"""Test helpers: keys, a provisioned state folder, a running in-process gateway, and the
installed command lines run as subprocesses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant
from gateway.app import Gateway
from gateway.auth import issue_token
from gateway.config import GatewayConfig, LockSafety, P2pConfig, default_config
from gateway.identity import KeyPair
from gateway.p2p import DhtNode

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

ALL_OPS = ("readproperty", "writeproperty", "observeproperty", "invokeaction", "subscribeevent")


@dataclass
class World:
    state: Path
    gw_key: KeyPair
    owner: KeyPair
    user: KeyPair
    stranger: KeyPair
    keydir: Path

    def token(self, kp: KeyPair, ttl: int = 300, **kw: object) -> str:
        return issue_token(kp, audience=self.gw_key.id, ttl=ttl, **kw)  # type: ignore[arg-type]

    def install(self, *grants: Grant) -> str:
        store = AclStore(self.state, self.gw_key.id)
        acl = store.current or new_acl(self.gw_key.id)
        for g in grants:
            acl = with_grant(acl, g)
        text = sign_acl(acl, self.owner)
        store.install(text)
        return text


def demo_config(state: Path, *, p2p: P2pConfig | None = None) -> GatewayConfig:
    """The demo's Things on free loopback ports; HTTP only unless P2P settings are given."""
    cfg = default_config(state, http_port=0)
    lock = dataclasses.replace(cfg.things[0], safety=LockSafety(auto_relock_s=0, jam_timeout_s=1.0))
    return dataclasses.replace(cfg, things=(lock, cfg.things[1]), p2p=p2p or P2pConfig())


@dataclass
class Running:
    gw: Gateway
    url: str
    http: aiohttp.ClientSession
    world: World

    def auth(self, kp: KeyPair | None = None, **kw: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.token(kp or self.world.user, **kw)}"}


# --------------------------------------------------------------- the installed command lines
BIN = Path(sys.executable).parent
GW = str(BIN / "streembit-gateway")
PEER = str(BIN / "streembit-peer")
CMD_TIMEOUT_S = 60.0  # one CLI command (Python start, a DHT join, one sealed request: ~1 s)


def run_cli(*args: str | Path, ok: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command line to its end, output captured; with OK, assert that it exited 0."""
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=CMD_TIMEOUT_S, check=False
    )
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.stderr}{proc.stdout}"
    return proc


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one `error: ...` line a refused command prints on stderr (never a traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def provision_cli(tmp_path: Path, ops: str, things: str = "*") -> tuple[str, Path, Path, str]:
    """With the CLI: a gateway state folder, keys of owner, alice and mallory in a key folder,
    alice granted OPS on THINGS: (gateway id, state folder, key folder, ACL file)."""
    st, k = tmp_path / "st", tmp_path / "k"
    k.mkdir()
    gw_id = json.loads(run_cli(GW, "init", "--state", st, "--json", ok=True).stdout)["id"]
    for who in ("owner", "alice", "mallory"):
        run_cli(PEER, "keygen", "--key", k / who, ok=True)
    run_cli(GW, "provision", "--state", st, "--owner-key", k / "owner.pub", ok=True)
    acl = str(k / "acl.jws")
    run_cli(PEER, "acl", "grant", "--key", k / "owner", "--acl", acl, "--gateway", gw_id,
            "--subject", k / "alice.pub", "--things", things, "--ops", ops, ok=True)  # fmt: skip
    run_cli(GW, "acl", "apply", "--state", st, acl, ok=True)
    return gw_id, st, k, acl


# --------------------------------------------------------------------------- DHT networks
@asynccontextmanager
async def dht_network(
    n: int, host: Callable[[int], str] = lambda i: "127.0.0.1", **kw: Any
) -> AsyncIterator[list[DhtNode]]:
    """N started DHT nodes, node i on HOST(i), every other node bootstrapped from the first;
    KW goes to each `DhtNode`. All are stopped on exit."""
    nodes: list[DhtNode] = []
    try:
        for i in range(n):
            node = DhtNode(host(i), 0, bootstrap=[nodes[0].address] if nodes else [], **kw)
            await node.start()
            nodes.append(node)
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


@asynccontextmanager
async def udp_server(factory: Callable[[], Any]) -> AsyncIterator[tuple[Any, int]]:
    """The datagram protocol FACTORY makes, listening on 127.0.0.1 (a free port): yields
    (protocol, port); closed on exit. The fake routers of the port-mapping tests."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(factory, local_addr=("127.0.0.1", 0))
    try:
        yield proto, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()
