"""A Streembit network in the NAT lab (tests/netns/natlab.py), run with the real command lines:
public seed nodes that relay (`streembit-peer node`), demo gateways behind home routers
(`streembit-gateway demo`), and peers' commands run on home hosts (`streembit-peer`).

Every address is one of the lab's (203.0.113.0/24, 100.64.N.0/24, 192.168.7x.0/24), inside
namespaces the lab made; nothing reaches any other network.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import GW, PEER, provision_cli
from tests.netns.natlab import Host, NatLab, RouterKind
from tests.netns.procs import first_line, stop

READY_TIMEOUT_S = 40.0  # a gateway settles reachability (dial-backs, mapping, relays) first
STOP_TIMEOUT_S = 15.0  # SIGTERM to exit: the gateway locks its lock and releases its relays
CMD_TIMEOUT_S = 40.0  # one peer command: DHT join, lookup, connect, answer
SEED_PORT = 4242


def start_json(
    host: Host, argv: list[str], what: str
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start a long-running command in HOST; its first stdout line is its JSON ready line."""
    proc = host.popen(argv)
    line = first_line(proc, READY_TIMEOUT_S)
    if not line:
        _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
        raise AssertionError(f"{what} did not start within {READY_TIMEOUT_S} s: {err}")
    info: dict[str, Any] = json.loads(line)
    return proc, info


@dataclass
class Seed:
    host: Host
    proc: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def dht(self) -> str:
        return str(self.info["dht"])


@dataclass
class Gateway:
    kind: str
    host: Host
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    id: str
    state: Path
    keys: Path

    @property
    def reach(self) -> dict[str, Any]:
        return dict(self.info["reach"])


@dataclass
class ReachNet:
    """Seeds on the lab's internet, gateways behind routers, peers behind routers."""

    lab: NatLab
    work: Path
    seeds: list[Seed] = field(default_factory=list)
    gateways: dict[str, Gateway] = field(default_factory=dict)
    peers: dict[str, Host] = field(default_factory=dict)

    def start_seeds(self, count: int = 3, *, relay: bool = True) -> list[Seed]:
        for i in range(count):
            host = self.lab.public(f"seed{len(self.seeds)}")
            argv = [PEER, "node", "--host", host.addr, "--advertise", host.addr,
                    "--dht-port", str(SEED_PORT), "--json"]  # fmt: skip
            argv += [] if relay else ["--no-relay"]
            argv += [arg for s in self.seeds for arg in ("--bootstrap", s.dht)]
            proc, info = start_json(host, argv, f"seed {i}")
            self.seeds.append(Seed(host, proc, info))
        return self.seeds

    @property
    def bootstrap(self) -> list[str]:
        return [arg for s in self.seeds[:2] for arg in ("--bootstrap", s.dht)]

    def start_gateway(self, kind: RouterKind | str, *extra: str) -> Gateway:
        """A provisioned demo gateway (alice may read and invoke on front-door) on a host
        behind a new router of KIND ("public": on the internet itself)."""
        tmp = self.work / f"gw-{kind}-{len(self.gateways)}"
        tmp.mkdir(parents=True)
        gw_id, st, k, _ = provision_cli(tmp, "readproperty,invokeaction,observeproperty",
                                        "front-door")  # fmt: skip
        if kind == "public":
            host = self.lab.public(f"gw{len(self.gateways)}")
        else:
            host = self.lab.home(kind, f"gw{len(self.gateways)}")  # type: ignore[arg-type]
        argv = [GW, "demo", "--state", str(st), "--host", "0.0.0.0", "--advertise", host.addr,
                "--http-port", "0", "--ws-port", "0", "--dht-port", "0", *self.bootstrap,
                "--no-mdns", "--json", *extra]  # fmt: skip
        proc, info = start_json(host, argv, f"the gateway behind {kind}")
        gw = Gateway(str(kind), host, proc, info, gw_id, st, k)
        self.gateways[f"{kind}-{len(self.gateways)}"] = gw
        return gw

    def peer_host(self, kind: RouterKind | str) -> Host:
        if kind == "public":
            host = self.lab.public(f"peer{len(self.peers)}")
        else:
            host = self.lab.home(kind, f"peer{len(self.peers)}")  # type: ignore[arg-type]
        self.peers[f"{kind}-{len(self.peers)}"] = host
        return host

    def peer(self, host: Host, gw: Gateway, who: str, *args: str,
             timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run `streembit-peer` as WHO (alice, mallory, owner) on HOST against GW's keys."""
        argv = [PEER, *self.bootstrap, "--key", str(gw.keys / who), *args]
        return host.run(argv, timeout=timeout, check=False)

    def popen_peer(self, host: Host, gw: Gateway, who: str, *args: str) -> subprocess.Popen[str]:
        return host.popen([PEER, *self.bootstrap, "--key", str(gw.keys / who), *args])

    def close(self) -> dict[str, int]:
        """Stop every gateway, then the seeds; the exit codes by name."""
        codes = {name: stop(gw.proc) for name, gw in self.gateways.items()}
        for i, seed in enumerate(self.seeds):
            codes[f"seed{i}"] = stop(seed.proc)
        return codes
