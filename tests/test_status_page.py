"""The status page in a real browser: Debian's Chromium, headless, driven over the DevTools
protocol against a gateway on 127.0.0.1. The page signs its own token from the owner's key file
with WebCrypto (ES256), shows the gateway, live Thing state, the audit log and the QR codes,
and refuses a key the ACL does not name. A screenshot is saved in the test's folder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Chromium, find_chromium, png_size
from tests.browser import Page as Cdp
from tests.helpers import Running

POLL_MS = 500  # ?poll= for the page: live state every half second
WINDOW = (1280, 1400)
DIAGNOSE = "document.body.dataset.state + ' ' + document.getElementById('signin-error').textContent"


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[tuple[Cdp, aiohttp.ClientSession]]:
    if find_chromium() is None:
        pytest.fail(
            "the status page test needs Debian's chromium: apt-get install chromium "
            "(deploy/dev.sh test installs it)",
            pytrace=False,
        )
    async with Chromium(tmp_path / "chromium-profile", size=WINDOW) as chromium:
        assert chromium.http is not None
        chromium.page.diagnose = DIAGNOSE
        yield chromium.page, chromium.http


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
    width, height = png_size((tmp_path / "status.png").read_bytes())
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
