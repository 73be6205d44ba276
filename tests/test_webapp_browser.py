"""The phone web app (/app) end to end in real browsers (issue 13, "Tests (real browser)").

A real gateway (`streembit-gateway demo`, a subprocess on 127.0.0.1: a secure context, so
WebCrypto works) and headless Chromium instances with separate profiles (owner, guest,
read-only guest), driven over the DevTools protocol (tests/browser.py):

1. the owner creates a key in the page; the test reads its public key from the Key screen and
   provisions the gateway with it (`streembit-gateway provision --owner-key`, a JWK file);
2. a guest creates a key; its public key text is copied from the guest's page into the owner's
   "Add a guest" form ("can unlock" on the front door), which signs and pushes the ACL;
3. the guest sees only the granted Thing and unlocks it (with the confirmation step); the
   owner's open Things screen shows the new lock state live (SSE, well before any poll);
4. the owner revokes the guest: the guest's open view shows the refusal at once, its unlock
   fails;
5. a read-only guest has no unlock control; a forged unlock from its page's console (a token
   signed with its own key, and a made-up token) is refused (403 / 401) and audited;
6. screenshots of the Things and Owner screens at 390x844 and 1280x800, non-blank, with the
   expected elements, kept in the test's folder and copied to docs/screenshots/ (README).

Chromium missing is a failure, not a skip (as tests/test_status_page.py).

What the UI lacks for tests (none blocks a step; the test works around them):
- no "drawn" marker on a screen (e.g. aria-busy while loading): a screen keeps its previous
  content until its data is loaded, so the test marks the old nodes and waits for new ones;
- no stable ids or data attributes on cards, buttons and grant rows: found by their words
  (card heading, button text, label text) and the grant row by its key id (code[title]);
- no claim flow in the app: the owner key made in the page is provisioned with the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Chromium, Page, find_chromium, png_size

REPO = Path(__file__).resolve().parent.parent
SHOTS_DIR = REPO / "docs" / "screenshots"
GW = str(Path(sys.executable).parent / "streembit-gateway")

GATEWAY_START_TIMEOUT_S = 30.0  # the demo prints its JSON line once it serves (~0.3 s idle)
GATEWAY_STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 30.0  # one `streembit-gateway provision|audit` (Python start ~0.5 s)
UI_TIMEOUT_S = 15.0  # a screen renders, a key is made, an ACL is signed and pushed
OWNER_PICKUP_TIMEOUT_S = 15.0  # the running gateway re-reads owner.pub every ACL_POLL_S (1 s)
LIVE_TIMEOUT_S = 8.0  # an SSE value reaches the page; well under the 30 s property poll
REVOKE_TIMEOUT_S = 8.0  # the gateway closes a revoked stream within REVOCATION_CHECK_S (1 s)
REFRESH_EVERY_S = 0.5  # how often "Refresh" is pressed while waiting for the owner pin
MIN_PIXEL_STDDEV = 8.0  # a blank (one-colour) screenshot has 0
SIZES = {"390x844": (390, 844, True), "1280x800": (1280, 800, False)}

# --------------------------------------------------------------------------- page queries
# Buttons, fields and screens are found the way a user finds them: by their visible words.
DIAGNOSE = """JSON.stringify({
  who: document.getElementById('who').textContent,
  status: document.getElementById('status').textContent,
  hash: location.hash,
  screen: (document.querySelector('main > section[data-screen]:not([hidden]) .body') || {})
          .innerText,
}).slice(0, 1500)"""

JS_HELPERS = """
window.__t = window.__t || {
  visible: (el) => !!el && el.getClientRects().length > 0,
  screen: (name) => document.querySelector(`main > section[data-screen="${name}"]`),
  button: (text, scope) => [...(scope || document).querySelectorAll('button')]
      .find((b) => b.textContent.trim() === text && window.__t.visible(b)) || null,
  field: (label, scope) => {
    const l = [...(scope || document).querySelectorAll('label')]
      .find((x) => x.textContent.trim() === label && window.__t.visible(x));
    return l ? document.getElementById(l.htmlFor) : null;
  },
  card: (title) => [...window.__t.screen('things').querySelectorAll('article.card')]
      .find((c) => (c.querySelector('h3') || {}).textContent === title) || null,
  navVisible: (name) =>
      !document.querySelector(`nav a[data-screen="${name}"]`).parentElement.hidden,
};
true
"""


def js(expr: str) -> str:
    """EXPR evaluated with the helpers (`T`) installed in the page."""
    return f"(() => {{ {JS_HELPERS}; const T = window.__t; return ({expr}); }})()"


def button(text: str, scope: str = "null") -> str:
    return f"window.__t.button({json.dumps(text)}, {scope})"


async def click_button(page: Page, text: str, scope: str = "null", what: str = "") -> None:
    await page.click_element(js(button(text, scope)), what or f'the "{text}" button')


async def wait(page: Page, expr: str, what: str, timeout: float = UI_TIMEOUT_S) -> Any:
    return await page.wait_for(js(expr), what, timeout)


async def mark_stale(page: Page, name: str) -> None:
    """Mark what screen NAME shows now, so `wait_rendered` can tell its next rendering. (The
    app has no "rendered" marker such as aria-busy: a screen shows its previous content until
    its data is loaded, then replaces it.)"""
    await page.eval(
        js(
            f"[...T.screen({json.dumps(name)}).querySelector('.body').children]"
            ".forEach((c) => c.setAttribute('data-stale', '')) || true"
        )
    )


async def wait_rendered(page: Page, name: str, timeout: float = UI_TIMEOUT_S) -> None:
    await wait(
        page,
        f"(() => {{ const s = T.screen({json.dumps(name)}); const b = s.querySelector('.body');"
        " return T.visible(s) && b.childElementCount > 0 && !b.querySelector('[data-stale]')"
        " && !/^Loading/.test(b.textContent); })()",
        f"the {name} screen",
        timeout,
    )


async def go_screen(page: Page, name: str) -> None:
    """Tap the tab NAME (it must be shown) and wait until its screen is drawn anew."""
    current = await page.eval(
        "(document.querySelector('nav a[aria-current=page]') || {dataset: {}}).dataset.screen"
    )
    if current == name:
        return
    await mark_stale(page, name)
    await page.click(f'nav a[data-screen="{name}"]')
    await wait_rendered(page, name)


# ------------------------------------------------------------------------------ gateway
@dataclass
class DemoGateway:
    proc: asyncio.subprocess.Process
    state: Path
    url: str
    id: str
    ws: str = ""  # the P2P WebSocket (away-from-home mode)

    async def cli(self, *args: str) -> Any:
        """`streembit-gateway ARGS --state STATE --json`: its JSON output (exit 0 asserted)."""
        proc = await asyncio.create_subprocess_exec(
            GW,
            *args,
            "--state",
            str(self.state),
            "--json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
        assert proc.returncode == 0, f"streembit-gateway {args}: {err.decode()}{out.decode()}"
        return json.loads(out)

    async def audit(self, limit: int = 500) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self.cli("audit", "--limit", str(limit))
        return records


@contextlib.asynccontextmanager
async def demo_gateway(tmp_path: Path) -> AsyncIterator[DemoGateway]:
    state = tmp_path / "gateway-state"
    log = (tmp_path / "gateway.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        GW,
        "demo",
        "--state",
        str(state),
        "--http-port",
        "0",
        "--ws-port",
        "0",
        "--dht-port",
        "0",
        "--no-mdns",
        "--no-reach",
        "--json",
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), GATEWAY_START_TIMEOUT_S)
        except TimeoutError:
            raise AssertionError("streembit-gateway demo did not start") from None
        assert line, f"streembit-gateway demo exited: {(tmp_path / 'gateway.log').read_text()}"
        info = json.loads(line)
        assert info["owner"] is None  # a fresh state folder: not provisioned yet
        yield DemoGateway(proc, state, info["http"], info["id"], info.get("ws", ""))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), GATEWAY_STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def need_chromium() -> None:
    if find_chromium() is None:
        pytest.fail(
            "the web app browser tests need Debian's chromium: apt-get install chromium "
            "(deploy/dev.sh test installs it)",
            pytrace=False,
        )


def browser(tmp_path: Path, who: str, size: tuple[int, int] = (1280, 800)) -> Chromium:
    return Chromium(tmp_path / f"chromium-{who}", size=size)


# ---------------------------------------------------------------------------- app steps
async def open_app(gw: DemoGateway, page: Page) -> None:
    page.diagnose = js(DIAGNOSE)
    await page.navigate(f"{gw.url}/app")
    await wait(page, "document.getElementById('who').textContent !== 'Loading…'", "the app")
    assert await page.eval("window.isSecureContext && !!crypto.subtle"), "not a secure context"


async def create_key(page: Page) -> str:
    """Key screen → "Create a key" (no passphrase); returns the public key text (JWK JSON)
    shown on the Key screen, as the user would copy it."""
    await wait(
        page,
        "!!T.button('Create a key', T.screen('key'))",
        "the Key screen of a browser without a key",
    )
    await click_button(page, "Create a key", "T.screen('key')")
    await wait(page, "document.getElementById('who').textContent.startsWith('Key ')", "the new key")
    await go_screen(page, "key")
    text = await wait(page, "(T.field('Public key (JWK)') || {}).value", "the public key text")
    jwk = json.loads(text)
    assert set(jwk) == {"kty", "crv", "x", "y"} and jwk["crv"] == "P-256", jwk
    return str(text)


async def key_id(page: Page) -> str:
    """The full key id shown on the Key screen."""
    await go_screen(page, "key")
    kid = await wait(
        page,
        "(() => { const dt = [...T.screen('key').querySelectorAll('dt')]"
        ".find((d) => d.textContent === 'Key id');"
        " return dt && dt.nextElementSibling.textContent; })()",
        "the key id",
    )
    return str(kid)


async def become_owner(gw: DemoGateway, page: Page, tmp_path: Path) -> str:
    """Create the owner key in the page, provision the gateway with its public key, and wait
    until the page shows the Owner tab. Returns the owner's key id."""
    jwk_text = await create_key(page)
    owner_id = await key_id(page)
    pub = tmp_path / "owner-from-page.jwk"
    pub.write_text(jwk_text)
    result = await gw.cli("provision", "--owner-key", str(pub))
    assert result["owner"] == owner_id, (result, owner_id)  # the page's id = the gateway's
    # The running gateway picks the owner up within ACL_POLL_S: press Refresh until the page
    # knows it is the owner (the Owner tab appears).
    await go_screen(page, "things")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OWNER_PICKUP_TIMEOUT_S
    while not await page.eval(js("T.navVisible('owner')")):
        assert loop.time() < deadline, "the page never showed the Owner tab after provisioning"
        with contextlib.suppress(AssertionError):  # the button is redrawn by the refresh
            await click_button(page, "Refresh", "T.screen('things')")
        await asyncio.sleep(REFRESH_EVERY_S)
    assert "owner" in await page.eval("document.getElementById('who').textContent")
    return owner_id


async def grant(owner: Page, guest_key_text: str, preset: str, things: list[str]) -> None:
    """Owner screen → Add a guest: paste the key, tick THINGS, choose PRESET, push."""
    await go_screen(owner, "owner")
    form = "document.querySelector('form.grant-form')"
    await wait(owner, f"T.visible({form})", "the Add a guest form")
    key_box = 'T.field("Guest\'s public key")'
    assert await owner.eval(js(f"!!{key_box}")), (
        'missing UI: no field labelled "Guest\'s public key"'
    )
    box_id = await owner.eval(js(f"{key_box}.id"))
    await owner.type(f"#{box_id}", guest_key_text)
    for thing in things:
        sel = f'form.grant-form input[type=checkbox][value="{thing}"]'
        assert await owner.eval(f"!!document.querySelector({json.dumps(sel)})"), (
            f"missing UI: no Thing checkbox for {thing} in the grant form"
        )
        await owner.click(sel)
    radio = f'form.grant-form input[type=radio][name=preset][value="{preset}"]'
    assert await owner.eval(f"!!document.querySelector({json.dumps(radio)})"), (
        f'missing UI: no "{preset}" preset in the grant form'
    )
    await owner.click(radio)
    checked = await owner.eval(
        "[...document.querySelectorAll('form.grant-form input:checked')].map((i) => i.value)"
    )
    assert sorted(checked) == sorted([*things, preset]), checked
    before = await owner.eval("document.getElementById('status').textContent")
    await mark_stale(owner, "owner")  # the screen is drawn anew once the ACL is pushed
    await click_button(owner, "Grant, sign and push", form)
    await wait(
        owner,
        f"(() => {{ const s = document.getElementById('status').textContent;"
        f" const err = document.querySelector('form.grant-form .note.error');"
        f" if (err) return 'ERROR ' + err.textContent;"
        f" return s !== {json.dumps(before)} && s.includes('granted') ? s : ''; }})()",
        "the pushed ACL",
    )
    error = await owner.eval(
        js("(T.screen('owner').querySelector('.note.error') || {}).textContent || ''")
    )
    assert not error, f"the grant was refused in the page: {error}"
    await wait_rendered(owner, "owner")


async def refresh_things(page: Page) -> None:
    await go_screen(page, "things")
    await mark_stale(page, "things")
    await click_button(page, "Refresh", "T.screen('things')")
    await wait_rendered(page, "things")


def lock_state(card_title: str = "Front door") -> str:
    card = f"(T.card({json.dumps(card_title)}) || document)"
    return f"({card}.querySelector('.lock-state') || {{dataset: {{}}}}).dataset.state"


def card_note(card_title: str = "Front door") -> str:
    return (
        f"((T.card({json.dumps(card_title)}) || document).querySelector('.messages .note') || {{}})"
        ".textContent || ''"
    )


async def unlock(page: Page) -> str:
    """Front door card: "Unlock…", check the confirmation (focus on "Yes, unlock"), confirm;
    returns the card's message."""
    card = "T.card('Front door')"
    await click_button(page, "Unlock…", card)
    await wait(
        page,
        f"T.visible({card}.querySelector('.confirm'))",
        "the unlock confirmation",
        timeout=UI_TIMEOUT_S,
    )
    focused = await page.eval("document.activeElement && document.activeElement.textContent")
    assert focused == "Yes, unlock", (
        f"the confirmation step does not focus 'Yes, unlock': {focused!r}"
    )
    await page.eval(js(f"{card}.querySelector('.messages').textContent = ''"))
    await click_button(page, "Yes, unlock", card)
    msg = await wait(page, card_note(), "the unlock result")
    return str(msg)


FORGE_JS = """(async () => {
  const req = (r) => new Promise((ok, no) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });
  const db = await req(indexedDB.open('streembit-webapp'));
  const rec = await req(db.transaction('keys').objectStore('keys').get('identity'));
  const gid = (await (await fetch('/status/id')).json()).id;
  const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  const part = (obj) => b64u(new TextEncoder().encode(JSON.stringify(obj)));
  const now = Math.floor(Date.now() / 1000);
  const input = part({alg: 'ES256', typ: 'JWT', kid: rec.id}) + '.' + part({iss: rec.id,
      sub: rec.id, aud: gid, iat: now, nbf: now, exp: now + 60,
      jti: b64u(crypto.getRandomValues(new Uint8Array(16)))});
  const sig = await crypto.subtle.sign({name: 'ECDSA', hash: 'SHA-256'}, rec.signKey,
      new TextEncoder().encode(input));
  const post = async (token) => {
    const r = await fetch('/things/front-door/actions/unlock', {method: 'POST',
        headers: {Authorization: 'Bearer ' + token}});
    return {status: r.status, body: await r.text()};
  };
  const madeUp = part({alg: 'ES256', typ: 'JWT', kid: 'x'.repeat(43)}) + '.'
      + part({iss: 'x'.repeat(43), sub: 'x'.repeat(43), aud: gid, iat: now, nbf: now,
              exp: now + 60, jti: 'AAAAAAAAAAAAAAAAAAAAAA'}) + '.' + 'A'.repeat(86);
  return {id: rec.id, signed: await post(input + '.' + b64u(sig)), madeUp: await post(madeUp)};
})()"""


# -------------------------------------------------------------------------------- tests
async def test_owner_grants_guest_unlocks_revoke_and_read_only(tmp_path: Path) -> None:
    need_chromium()
    async with contextlib.AsyncExitStack() as stack:
        gw = await stack.enter_async_context(demo_gateway(tmp_path))
        owner_b = await stack.enter_async_context(browser(tmp_path, "owner"))
        guest_b = await stack.enter_async_context(browser(tmp_path, "guest", (390, 844)))
        owner, guest = owner_b.page, guest_b.page
        await asyncio.gather(open_app(gw, owner), open_app(gw, guest))

        # 1. the owner's key, made in the page, provisions the gateway
        owner_id = await become_owner(gw, owner, tmp_path)

        # 2. the guest's key text goes from the guest's page into the owner's grant form
        guest_key = await create_key(guest)
        guest_id = await key_id(guest)
        assert guest_id != owner_id
        await go_screen(guest, "things")
        await wait(guest, "!!T.button('Refresh', T.screen('things'))", "the guest's Things screen")
        await grant(owner, guest_key, "can unlock", ["front-door"])
        grants = await owner.eval(
            "[...document.querySelectorAll('ul.grants li.grant code')].map((c) => c.title)"
        )
        assert grants == [guest_id], grants

        # 3. the guest sees only the front door and unlocks it; the owner sees it live
        await go_screen(owner, "things")
        await wait(owner, f"{lock_state()} === 'locked'", "the owner's locked front door")
        await refresh_things(guest)
        await wait(
            guest, "!!T.button('Unlock…', T.card('Front door'))", "the guest's Unlock button"
        )
        cards = await guest.eval(
            js(
                "[...T.screen('things').querySelectorAll('article.card h3')]"
                ".map((h) => h.textContent)"
            )
        )
        assert cards == ["Front door"], f"the guest sees more than its grant: {cards}"
        others = await guest.eval(
            js("[...T.screen('things').querySelectorAll('.others li')].map((l) => l.textContent)")
        )
        assert others == ["Living room"], others
        await wait(guest, f"{lock_state()} === 'locked'", "the guest's locked front door")
        msg = await unlock(guest)
        assert "Unlocked" in msg, msg
        await wait(guest, f"{lock_state()} === 'unlocked'", "the guest's unlocked front door")
        await wait(
            owner,
            f"{lock_state()} === 'unlocked'",
            "the unlock in the owner's open view (SSE)",
            timeout=LIVE_TIMEOUT_S,
        )

        # 4. revoke: the guest's open view loses access at once
        await go_screen(owner, "owner")
        row = (
            "[...document.querySelectorAll('ul.grants li.grant')]"
            f".find((li) => li.querySelector('code').title === {json.dumps(guest_id)})"
        )
        await click_button(owner, "Revoke…", row)
        await wait(owner, f"T.visible({row}.querySelector('.confirm'))", "the revoke confirmation")
        await mark_stale(owner, "owner")
        await click_button(owner, "Yes, revoke", row)
        await wait(
            owner,
            "document.getElementById('status').textContent.includes('revoked')",
            "the revocation",
        )
        await wait_rendered(owner, "owner")
        refusal = await wait(
            guest,
            "(() => { const r = T.card('Front door').querySelector('.prop-state');"
            " return r.classList.contains('bad') ? r.textContent : ''; })()",
            "the refusal in the revoked guest's live view",
            timeout=REVOKE_TIMEOUT_S,
        )
        assert "Not allowed" in refusal, refusal
        msg = await unlock(guest)
        assert msg.startswith("Unlock refused"), msg
        assert "Not allowed" in msg or "did not accept this key" in msg, msg

        # 5. a read-only guest: no unlock control; a forged unlock is refused and audited
        ro_b = await stack.enter_async_context(browser(tmp_path, "readonly", (390, 844)))
        ro = ro_b.page
        await open_app(gw, ro)
        ro_key = await create_key(ro)
        ro_id = await key_id(ro)
        await grant(owner, ro_key, "read only", ["front-door"])
        await refresh_things(ro)
        await wait(
            ro,
            f"!!{lock_state()}",
            "the read-only guest's lock state",
        )
        assert not await ro.eval(js("!!T.button('Unlock…')")), (
            "a read-only guest has an Unlock control"
        )
        assert await ro.eval(
            js("T.card('Front door').textContent.includes('Read only for this key.')")
        )
        forged = await ro.eval(FORGE_JS, await_promise=True)
        assert forged["id"] == ro_id
        assert forged["signed"]["status"] == 403, forged
        assert json.loads(forged["signed"]["body"])["error"] == "forbidden", forged
        assert forged["madeUp"]["status"] == 401, forged
        assert json.loads(forged["madeUp"]["body"])["error"] == "unauthenticated", forged

        records = await gw.audit()
        unlocks = [
            r
            for r in records
            if (r["op"], r["thing"], r["affordance"]) == ("invokeaction", "front-door", "unlock")
        ]
        assert any(r["subject"] == guest_id and r["allowed"] for r in unlocks), unlocks
        forged_rec = [r for r in unlocks if r["subject"] == ro_id]
        assert len(forged_rec) == 1 and not forged_rec[0]["allowed"], unlocks
        assert forged_rec[0]["reason"].startswith("forbidden"), forged_rec
        # the revoked guest's unlock and the made-up token: unknown issuer, subject "-"
        unknown = [
            r for r in unlocks if not r["allowed"] and r["reason"].startswith("unauthenticated")
        ]
        assert len(unknown) >= 2, unlocks


def _stddev(png: bytes) -> float:
    from PIL import Image, ImageStat

    img = Image.open(BytesIO(png)).convert("L")
    return float(ImageStat.Stat(img).stddev[0])


async def test_screenshots_things_and_owner(tmp_path: Path) -> None:
    need_chromium()
    async with contextlib.AsyncExitStack() as stack:
        gw = await stack.enter_async_context(demo_gateway(tmp_path))
        owner_b = await stack.enter_async_context(browser(tmp_path, "owner"))
        guest_b = await stack.enter_async_context(browser(tmp_path, "guest"))
        owner, guest = owner_b.page, guest_b.page
        await asyncio.gather(open_app(gw, owner), open_app(gw, guest))
        await become_owner(gw, owner, tmp_path)
        guest_key = await create_key(guest)
        await grant(owner, guest_key, "can unlock", ["front-door"])  # one grant to show

        shots: list[Path] = []
        for label, (width, height, mobile) in SIZES.items():
            await owner.set_size(width, height, mobile=mobile)
            # Things: both cards with live values
            await go_screen(owner, "things")
            await wait(
                owner,
                f"{lock_state()} === 'locked' && !!T.card('Living room') && "
                "![...T.screen('things').querySelectorAll('.value')]"
                ".some((v) => v.textContent === '…')",
                "the owner's Things with their values",
            )
            assert await owner.eval(js("!!T.button('Unlock…', T.card('Front door'))"))
            assert await owner.eval(
                js("T.card('Living room').classList.contains('thing-thermostat')")
            )
            assert await owner.eval(js("T.navVisible('owner') && T.navVisible('audit')"))
            assert (
                await owner.eval(
                    "document.querySelector('nav a[aria-current=page]').dataset.screen"
                )
                == "things"
            )
            await owner.eval("window.scrollTo(0, 0); document.activeElement.blur(); true")
            shots.append(await _shot(owner, tmp_path, f"webapp-things-{label}.png", width, height))

            # Owner: the grant list and the Add a guest form
            await go_screen(owner, "owner")
            await wait(
                owner,
                "document.querySelectorAll('ul.grants li.grant').length === 1",
                "the grant list",
            )
            assert await owner.eval(js('!!T.field("Guest\'s public key")'))
            presets = await owner.eval(
                "[...document.querySelectorAll('form.grant-form input[name=preset]')]"
                ".map((r) => r.value)"
            )
            assert presets == ["can unlock", "read only"], presets
            assert await owner.eval(
                js("!!T.button('Grant, sign and push') && !!T.button('Revoke…')")
            )
            await owner.eval("window.scrollTo(0, 0); document.activeElement.blur(); true")
            shots.append(await _shot(owner, tmp_path, f"webapp-owner-{label}.png", width, height))

        SHOTS_DIR.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, SHOTS_DIR / shot.name)


async def _shot(page: Page, tmp_path: Path, name: str, width: int, height: int) -> Path:
    path = tmp_path / name
    png = await page.screenshot(path)
    assert png_size(png) == (width, height), (name, png_size(png))
    spread = _stddev(png)
    assert spread >= MIN_PIXEL_STDDEV, f"{name} looks blank (pixel stddev {spread:.1f})"
    return path
