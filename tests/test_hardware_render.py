"""Every wiring diagram rendered by a real browser (Debian's Chromium, headless, the status page
test's browser fixture): each text lies inside the canvas, no two texts overlap, no drawn line
runs through a text. A PNG of each diagram is saved in the test's folder for a look."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp

from hardware import HARDWARE_DIR, RECIPES
from tests.browser import Page as Cdp
from tests.browser import png_size
from tests.test_status_page import browser  # noqa: F401  (browser: fixture)

INSET_PX = 1.0  # a line may graze a text box's edge by this much: glyph boxes include padding
STEP_PX = 1.0  # how finely each line is sampled

MEASURE = """(() => {
  const svg = document.documentElement;
  const box = r => ({x0: r.left, y0: r.top, x1: r.right, y1: r.bottom});
  const canvas = box(svg.getBoundingClientRect());
  const texts = [...svg.querySelectorAll('text')].map(
    t => ({s: t.textContent, ...box(t.getBoundingClientRect())}));
  const inside = (b, o) => b.x0 >= o.x0 && b.y0 >= o.y0 && b.x1 <= o.x1 && b.y1 <= o.y1;
  const hit = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
  const clipped = texts.filter(t => !inside(t, canvas)).map(t => t.s);
  const overlaps = [];
  texts.forEach((a, i) => texts.slice(i + 1).forEach(b => {
    if (hit(a, b)) overlaps.push([a.s, b.s]);
  }));
  const crossed = new Set();
  let samples = 0;
  for (const el of svg.querySelectorAll('path, polyline, polygon, line')) {
    const m = el.getScreenCTM();
    const len = el.getTotalLength();
    for (let d = 0; d <= len; d += STEP) {
      const p = el.getPointAtLength(d).matrixTransform(m);
      samples++;
      for (const t of texts) {
        if (p.x > t.x0 + INSET && p.x < t.x1 - INSET && p.y > t.y0 + INSET
            && p.y < t.y1 - INSET) crossed.add(t.s);
      }
    }
  }
  return JSON.stringify({canvas, count: texts.length, clipped, overlaps,
                         crossed: [...crossed], samples});
})()""".replace("STEP", str(STEP_PX)).replace("INSET", str(INSET_PX))


async def test_every_diagram_renders_readably(
    browser: tuple[Cdp, aiohttp.ClientSession],  # noqa: F811
    tmp_path: Path,
) -> None:
    cdp, _ = browser
    for name in RECIPES:
        svg = HARDWARE_DIR / name / "wiring.svg"
        await cdp.navigate(svg.as_uri())
        found = json.loads(await cdp.eval(MEASURE))
        assert found["count"] >= 15, (name, found["count"])
        assert found["samples"] > 5000, (name, found["samples"])
        assert found["clipped"] == [], (name, "text outside the canvas")
        assert found["overlaps"] == [], (name, "texts overlap")
        assert found["crossed"] == [], (name, "a line runs through text")
        c = found["canvas"]
        width, height = round(c["x1"] - c["x0"]), round(c["y1"] - c["y0"])
        shot = await cdp.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        png = tmp_path / f"{name}.png"
        png.write_bytes(base64.b64decode(shot["data"]))
        assert png_size(png.read_bytes()) == (width, height)


BROKEN = """<svg xmlns="http://www.w3.org/2000/svg" width="300" height="120" viewBox="0 0 300 120"
  font-size="14" font-family="DejaVu Sans, sans-serif">
<text x="10" y="30">Door contact reads open</text>
<text x="60" y="34">overlapping caption</text>
<text x="200" y="80">flyback: cathode to strike +</text>
<path d="M 0 100 L 120 100" style="stroke:black" />
<text x="20" y="100" dominant-baseline="central">wire through me</text>
</svg>"""


async def test_the_measure_catches_clipped_overlapping_and_crossed_text(
    browser: tuple[Cdp, aiohttp.ClientSession],  # noqa: F811
    tmp_path: Path,
) -> None:
    cdp, _ = browser
    svg = tmp_path / "broken.svg"
    svg.write_text(BROKEN)
    await cdp.navigate(svg.as_uri())
    found = json.loads(await cdp.eval(MEASURE))
    assert found["clipped"] == ["flyback: cathode to strike +"]
    assert found["overlaps"] == [["Door contact reads open", "overlapping caption"]]
    assert found["crossed"] == ["wire through me"]
