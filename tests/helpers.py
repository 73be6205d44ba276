"""Test helpers: keys, a provisioned state folder, and a running in-process gateway."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.acl import AclStore, Grant, new_acl, sign_acl, with_grant
from gateway.app import Gateway
from gateway.auth import issue_token
from gateway.config import GatewayConfig, LockSafety, P2pConfig, default_config
from gateway.identity import KeyPair

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
