"""The status page in a real browser: Debian's Chromium, headless, driven over the DevTools
protocol against a gateway on 127.0.0.1. The page signs its own token from the owner's key file
with WebCrypto (ES256), shows the gateway, live Thing state, the audit log and the QR codes,
and refuses a key the ACL does not name. A screenshot is saved in the test's folder."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import Running

BROWSER_START_TIMEOUT_S = 20.0
CDP_TIMEOUT_S = 30.0  # generous: a loaded CI machine makes Chromium slow
PAGE_TIMEOUT_S = 30.0  # the page signs, fetches and renders within about 0.2 s when idle
POLL_MS = 500  # ?poll= for the page: live state every half second
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--window-size=1280,1400",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


class Cdp:
    """A minimal DevTools protocol client on one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
            elif "method" in data:
                await self.events.put(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        reply = await asyncio.wait_for(fut, CDP_TIMEOUT_S)
        assert "error" not in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    async def eval(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    async def navigate(self, url: str) -> None:
        while not self.events.empty():
            self.events.get_nowait()
        await self.send("Page.navigate", url=url)
        while True:
            ev = await asyncio.wait_for(self.events.get(), CDP_TIMEOUT_S)
            if ev["method"] == "Page.loadEventFired":
                return

    async def wait_for(self, expression: str, what: str) -> Any:
        deadline = asyncio.get_running_loop().time() + PAGE_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.05)
        state = await self.eval("document.body.dataset.state + ' ' + $('signin-error').textContent")
        raise AssertionError(f"page never showed {what} (page state: {state})")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[tuple[Cdp, aiohttp.ClientSession]]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(
            "the status page test needs Debian's chromium: apt-get install chromium "
            "(deploy/dev.sh test installs it)",
            pytrace=False,
        )
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    proc = subprocess.Popen(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BROWSER_START_TIMEOUT_S
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            assert proc.poll() is None, "chromium exited at start"
            assert loop.time() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [t for t in await resp.json() if t["type"] == "page"]
            ws = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
            cdp = Cdp(ws)
            await cdp.send("Page.enable")
            await cdp.send("Runtime.enable")
            yield cdp, http
            await cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


SNAPSHOT = """JSON.stringify({
  id: $('gateway-id').textContent,
  owner: $('gateway-owner').textContent,
  viewer: $('viewer').textContent,
  things: [...document.querySelectorAll('#things tbody tr')].map(r => r.dataset.thing),
  lock: (document.querySelector('tr[data-thing="front-door"] [data-prop="state"]') || {})
        .textContent,
  audit: [...document.querySelectorAll('#audit tbody tr.audit-row')].map(r => r.textContent),
  qr: [...document.querySelectorAll('#qr img')].map(i => i.naturalWidth),
  qrText: [...document.querySelectorAll('#qr figcaption')].map(c => c.textContent),
  signinHidden: $('signin').hidden,
})""".replace("$(", "document.getElementById(")


async def test_status_page_in_headless_chromium(
    running: Running, browser: tuple[Cdp, aiohttp.ClientSession], tmp_path: Path
) -> None:
    cdp, _ = browser
    r = running
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=r.auth()) as resp:
        assert resp.status == 200  # a record by the user, for the audit table

    # 1. sign in with the owner's key file: the page signs an ES256 token with WebCrypto
    await cdp.navigate(f"{r.url}/status?poll={POLL_MS}")
    assert await cdp.eval("document.body.dataset.state") == "signin"
    assert await cdp.eval("window.isSecureContext && !!crypto.subtle")
    pem = (r.world.keydir / "owner").read_text()
    await cdp.eval(
        f"document.getElementById('key-pem').value = {json.dumps(pem)};"
        "document.getElementById('sign-key').click(); true"
    )
    await cdp.wait_for("document.body.dataset.state === 'ready'", "the status")
    assert await cdp.eval("document.getElementById('key-pem').value") == ""  # not kept
    page = json.loads(await cdp.eval(SNAPSHOT))
    assert page["id"] == r.gw.id and page["owner"] == r.world.owner.id
    assert page["viewer"].startswith(r.world.owner.id) and "(owner, full view)" in page["viewer"]
    assert page["signinHidden"] is True
    assert page["things"] == ["front-door", "living-room"]
    assert page["lock"] == "state: locked"
    assert any("readproperty" in row and r.world.user.id in row for row in page["audit"])
    assert any("readstatus" in row and "ALLOW" in row for row in page["audit"])
    assert len(page["qr"]) == 2 and all(w > 0 for w in page["qr"])  # the SVGs rendered
    assert any(t.startswith("SB:") for t in page["qrText"])

    # 2. live state: the lock opens, the page shows it at its next poll
    async with r.http.post(f"{r.url}/things/front-door/actions/unlock", headers=r.auth()) as resp:
        assert resp.status in (200, 204)
    await cdp.wait_for(
        '(document.querySelector(\'tr[data-thing="front-door"] [data-prop="state"]\') || {})'
        ".textContent === 'state: unlocked'",
        "the unlocked lock",
    )

    shot = await cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = __import__("base64").b64decode(shot["data"])
    (tmp_path / "status.png").write_bytes(png)
    width, height = _png_size((tmp_path / "status.png").read_bytes())
    assert width >= 800 and height >= 600 and len(png) > 20_000

    # 3. a key the ACL does not name is refused, and the page says so
    stranger = r.world.token(r.world.stranger)
    await cdp.navigate(f"{r.url}/status#token={stranger}")
    await cdp.wait_for("document.body.dataset.state === 'refused'", "the refusal")
    error = await cdp.eval("document.getElementById('signin-error').textContent")
    assert error.startswith("refused (401)")
    assert await cdp.eval("document.getElementById('status').hidden") is True
    assert await cdp.eval("location.hash") == ""  # the token left the address bar

    # 4. a pasted token of a granted user works too
    await cdp.navigate(f"{r.url}/status")
    await cdp.eval(
        f"document.getElementById('token').value = {json.dumps(r.world.token(r.world.user))};"
        "document.getElementById('use-token').click(); true"
    )
    await cdp.wait_for("document.body.dataset.state === 'ready'", "the user's status")
    assert "(user, limited view)" in await cdp.eval("document.getElementById('viewer').textContent")

    # 5. sign out, then choose the user's key file in the file picker
    await cdp.eval("document.getElementById('sign-out').click(); true")
    assert await cdp.eval("document.body.dataset.state") == "signin"
    doc = await cdp.send("DOM.getDocument")
    node = await cdp.send("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#key-file")
    await cdp.send(
        "DOM.setFileInputFiles", files=[str(r.world.keydir / "user")], nodeId=node["nodeId"]
    )
    await cdp.wait_for("document.body.dataset.state === 'ready'", "the status after the file")
    viewer = await cdp.eval("document.getElementById('viewer').textContent")
    assert viewer.startswith(r.world.user.id) and "(user, limited view)" in viewer
