"""Shared fixtures: keys, a provisioned state folder, and a running in-process gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.acl import AclStore, Grant
from gateway.app import Gateway
from gateway.identity import generate_keypair, write_keypair
from gateway.state import StateDir
from tests.helpers import ALL_OPS, Running, World, demo_config


@pytest.fixture(autouse=True, scope="session")
def _private_contact_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`streembit-peer` caches contact records under $XDG_CACHE_HOME: never the user's own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture
def world(tmp_path: Path) -> World:
    state = tmp_path / "state"
    gw_key, _ = StateDir(state).init_identity()
    keydir = tmp_path / "keys"
    keys = {}
    for name in ("owner", "user", "stranger"):
        kp = generate_keypair()
        write_keypair(keydir / name, kp)
        keys[name] = kp
    AclStore(state, gw_key.id).pin_owner(keys["owner"].public)
    return World(state, gw_key, keys["owner"], keys["user"], keys["stranger"], keydir)


@pytest.fixture
async def running(world: World) -> AsyncIterator[Running]:
    world.install(Grant.for_key(world.user.public, things=["*"], ops=ALL_OPS))
    gw = await Gateway.create(demo_config(world.state))
    await gw.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gw, gw.http_url, http, world)
    await gw.stop()
