"""A small headless-Chromium driver over the DevTools protocol (CDP), shared by the browser
tests (tests/test_status_page.py, tests/test_webapp_browser.py) and bench/bench_webapp.py.

    async with Chromium(profile_dir, size=(390, 844)) as browser:
        page = browser.page
        await page.navigate(url)
        await page.wait_for("document.querySelector('#who').textContent !== 'Loading…'", "the key")
        await page.click("button.primary")
        await page.type("textarea", "text")
        png = await page.screenshot(path)

Debian's `chromium` (apt-get install chromium), started with its own profile folder (so two
instances are two separate browsers: separate IndexedDB, separate keys) and a window size.
Every wait has a timeout (the named constants below); nothing here sleeps for a fixed time
except the short polling step of `wait_for`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

BROWSER_START_TIMEOUT_S = 20.0
CDP_TIMEOUT_S = 30.0  # generous: a loaded CI machine makes Chromium slow
PAGE_TIMEOUT_S = 30.0  # default for wait_for
POLL_S = 0.05  # wait_for re-evaluates its condition this often
STOP_TIMEOUT_S = 10.0
DEFAULT_SIZE = (1280, 1400)
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
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    """The Chromium executable, or None (the tests then fail with an install hint)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(AssertionError):
    """A DevTools command failed, or a page script threw."""


class Page:
    """A minimal DevTools protocol client on one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, target_id: str = "") -> None:
        self.ws = ws
        self.target_id = target_id
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: evaluated when a wait_for times out, its value put in the error (what the page shows)
        self.diagnose: str | None = None
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
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def eval(self, expression: str, *, await_promise: bool = False) -> Any:
        """EXPRESSION's value (JSON-able); with AWAIT_PROMISE the value of the promise it is."""
        res = await self.send(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
            userGesture=True,
        )
        if "exceptionDetails" in res:
            raise CdpError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def navigate(self, url: str) -> None:
        """Open URL and return once its load event fired."""
        while not self.events.empty():
            self.events.get_nowait()
        await self.send("Page.navigate", url=url)
        while True:
            ev = await asyncio.wait_for(self.events.get(), CDP_TIMEOUT_S)
            if ev["method"] == "Page.loadEventFired":
                return

    async def reload(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()
        await self.send("Page.reload", ignoreCache=True)
        while True:
            ev = await asyncio.wait_for(self.events.get(), CDP_TIMEOUT_S)
            if ev["method"] == "Page.loadEventFired":
                return

    async def wait_for(self, expression: str, what: str, timeout: float = PAGE_TIMEOUT_S) -> Any:
        """Re-evaluate EXPRESSION until it is truthy (then return its value), or fail after
        TIMEOUT seconds with an error naming WHAT (and the page's `diagnose` value)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        state = ""
        if self.diagnose:
            with contextlib.suppress(CdpError, asyncio.TimeoutError):
                state = f" (page state: {await self.eval(self.diagnose)})"
        raise AssertionError(f"page never showed {what} within {timeout:.0f} s{state}")

    async def wait_selector(
        self, selector: str, what: str | None = None, timeout: float = PAGE_TIMEOUT_S
    ) -> None:
        """Wait until SELECTOR matches a rendered (not hidden) element."""
        await self.wait_for(_visible_js(_query_js(selector)), what or selector, timeout)

    async def _center(self, element_js: str, what: str) -> tuple[float, float]:
        box = await self.eval(
            f"""(() => {{ const el = {element_js};
              if (!el) return null;
              el.scrollIntoView({{block: 'center', inline: 'center'}});
              const r = el.getBoundingClientRect();
              return r.width && r.height ? [r.left + r.width / 2, r.top + r.height / 2] : null;
            }})()"""
        )
        if not box:
            raise AssertionError(f"nothing to click: {what} is missing or not rendered")
        return float(box[0]), float(box[1])

    async def click_element(self, element_js: str, what: str) -> None:
        """A real mouse click (press and release) in the middle of the element ELEMENT_JS (a JS
        expression giving an Element), as a tap would do."""
        x, y = await self._center(element_js, what)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def click(self, selector: str) -> None:
        await self.click_element(_query_js(selector), selector)

    async def type(self, selector: str, text: str) -> None:
        """Focus SELECTOR, clear it and type TEXT into it (one input event, as a paste)."""
        ok = await self.eval(
            f"""(() => {{ const el = {_query_js(selector)}; if (!el) return false;
              el.focus(); el.select && el.select(); return true; }})()"""
        )
        if not ok:
            raise AssertionError(f"nothing to type into: {selector} is missing")
        await self.send("Input.insertText", text=text)

    async def set_size(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Emulate a viewport of WIDTH x HEIGHT CSS pixels (scale 1); MOBILE as a phone."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    async def screenshot(self, path: Path | None = None, *, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page), also written to PATH when given."""
        shot = await self.send(
            "Page.captureScreenshot", format="png", captureBeyondViewport=full_page
        )
        png = base64.b64decode(shot["data"])
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(png)
        return png

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


def _query_js(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})"


def _visible_js(element_js: str) -> str:
    return (
        f"(() => {{ const el = {element_js}; return !!el && el.getClientRects().length > 0; }})()"
    )


class Chromium:
    """Headless Chromium with its own profile folder and window size; `page` is its first tab,
    `new_page()` opens more. An async context manager: the browser is stopped on exit."""

    def __init__(
        self,
        profile: Path,
        *,
        size: tuple[int, int] = DEFAULT_SIZE,
        exe: str | None = None,
        extra_flags: list[str] | None = None,
    ) -> None:
        self.profile = Path(profile)
        self.size = size
        self.exe = exe or find_chromium()
        self.extra_flags = extra_flags or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.port = 0
        self.pages: list[Page] = []

    @property
    def page(self) -> Page:
        return self.pages[0]

    async def __aenter__(self) -> Chromium:
        if self.exe is None:
            raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
        self.profile.mkdir(parents=True, exist_ok=True)
        width, height = self.size
        self.proc = subprocess.Popen(
            [
                self.exe,
                *CHROMIUM_FLAGS,
                f"--window-size={width},{height}",
                *self.extra_flags,
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = self.profile / "DevToolsActivePort"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + BROWSER_START_TIMEOUT_S
            while not port_file.exists() or len(port_file.read_text().split()) < 2:
                assert self.proc.poll() is None, "chromium exited at start"
                assert loop.time() < deadline, "chromium did not open its DevTools port"
                await asyncio.sleep(POLL_S)
            self.port = int(port_file.read_text().split()[0])
            self.http = aiohttp.ClientSession()
            async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                targets = [t for t in await resp.json() if t["type"] == "page"]
            await self._attach(targets[0])
        except BaseException:
            await self._stop()
            raise
        return self

    async def _attach(self, target: dict[str, Any]) -> Page:
        assert self.http is not None
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws, target.get("id", ""))
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        self.pages.append(page)
        return page

    async def new_page(self, url: str = "about:blank") -> Page:
        """Open another tab (same profile: same key store) and attach to it."""
        assert self.http is not None
        async with self.http.put(f"http://127.0.0.1:{self.port}/json/new?{url}") as resp:
            target = await resp.json()
        return await self._attach(target)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        for page in self.pages:
            with contextlib.suppress(Exception):
                await page.close()
        self.pages.clear()
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def png_size(data: bytes) -> tuple[int, int]:
    """WIDTH, HEIGHT of a PNG (from its IHDR)."""
    import struct

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
