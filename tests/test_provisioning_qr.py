"""QR codes through real image files: draw (segno), distort (Pillow), read back (zxing-cpp).

Every round trip writes the owner QR as a PNG the way `streembit-peer owner-qr --png` does, then
rotates, scales, blurs, adds noise or lowers the contrast, saves the result as a new image file
and reads the payload from that file. Then the refusals: no code, a web address, two codes,
files that are not images, and the camera loop with fake frame sources that yield real images.
"""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import segno
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from gateway.errors import ProvisioningError
from gateway.identity import generate_keypair
from gateway.provisioning import camera, qr
from gateway.provisioning import payload as pl

OWNER = generate_keypair()
TEXT = pl.OwnerPayload(OWNER.public, ("192.168.1.20:4242",)).encode()
GW_TEXT = pl.GatewayPayload(
    generate_keypair().public, ("ws://192.168.1.20:8081/p2p",), (), bytes(10)
).encode()

Transform = Callable[[Image.Image], Image.Image]


def rotate(deg: float) -> Transform:
    return lambda im: im.convert("L").rotate(
        deg, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC
    )


def scale(f: float) -> Transform:
    def t(im: Image.Image) -> Image.Image:
        return im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.BILINEAR)

    return t


def blur(radius: float) -> Transform:
    return lambda im: im.convert("L").filter(ImageFilter.GaussianBlur(radius))


def noise(sigma: float) -> Transform:
    def t(im: Image.Image) -> Image.Image:
        gray = im.convert("L")
        n = Image.effect_noise(gray.size, sigma)  # centred on 128
        return ImageChops.add(gray, n, scale=1.0, offset=-128)

    return t


def contrast(lo: int, hi: int) -> Transform:
    return lambda im: im.convert("L").point(lambda v: lo + (hi - lo) * v // 255)


def on_photo(im: Image.Image) -> Image.Image:
    """The code small in a larger, busy scene (a screenshot with other things on it)."""
    rng = random.Random(7)
    canvas = Image.new("L", (im.width * 3, im.height * 2), 200)
    draw = ImageDraw.Draw(canvas)
    for _ in range(40):
        x, y = rng.randrange(canvas.width), rng.randrange(canvas.height)
        draw.rectangle(
            (x, y, x + rng.randrange(5, 60), y + rng.randrange(5, 60)), fill=rng.randrange(256)
        )
    canvas.paste(im.convert("L"), (im.width, im.height // 2))
    return canvas


def chain(*ts: Transform) -> Transform:
    def t(im: Image.Image) -> Image.Image:
        for f in ts:
            im = f(im)
        return im

    return t


CASES: dict[str, Transform] = {
    "plain": chain(),
    **{f"rotate-{d}": rotate(d) for d in (7, 45, 90, 133, 180, 222, 270, 333)},
    **{f"scale-{f}": scale(f) for f in (0.5, 0.75, 1.5, 2.0)},
    "blur-1.5": blur(1.5),
    "blur-2.5": blur(2.5),
    "noise-40": noise(40),
    "low-contrast": contrast(100, 150),
    "very-low-contrast-dark": contrast(30, 60),
    "photo-like": chain(scale(0.6), rotate(21), blur(1.0), contrast(70, 190), noise(20), on_photo),
}


@pytest.fixture(scope="module")
def owner_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qr") / "owner.png"
    qr.write_png(TEXT, path)
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_through_distorted_png(name: str, owner_png: Path, tmp_path: Path) -> None:
    with Image.open(owner_png) as src:
        out = CASES[name](src.convert("L"))
    path = tmp_path / f"{name}.png"
    out.save(path)
    text = qr.read_payload_text(path)
    assert text == TEXT
    assert pl.decode_owner(text).owner.id == OWNER.id


def test_jpeg_photo_with_exif_rotation(owner_png: Path, tmp_path: Path) -> None:
    with Image.open(owner_png) as src:
        im = src.convert("RGB").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: rotate 90 CW to view
    path = tmp_path / "photo.jpg"
    im.save(path, quality=70, exif=exif)
    assert qr.read_payload_text(path) == TEXT


def test_svg_and_terminal_output(tmp_path: Path) -> None:
    svg = tmp_path / "o.svg"
    qr.write_svg(TEXT, svg)
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    code = qr.make_qr(GW_TEXT)
    assert code.mode == "alphanumeric" and code.error in ("Q", "H")

    buf = io.StringIO()
    qr.print_terminal(TEXT, buf)
    assert buf.getvalue().count("\n") > 10


def _save(im: Image.Image, path: Path) -> Path:
    im.save(path)
    return path


def test_image_without_a_code(tmp_path: Path) -> None:
    im = Image.linear_gradient("L").resize((400, 300))
    with pytest.raises(ProvisioningError) as info:
        qr.read_payload_text(_save(im, tmp_path / "blank.png"))
    assert info.value.code == "no_qr"


def test_qr_of_a_web_address(tmp_path: Path) -> None:
    path = tmp_path / "url.png"
    segno.make("https://example.com/setup", error="m").save(str(path), scale=8)
    with pytest.raises(ProvisioningError, match="not a Streembit") as info:
        qr.read_payload_text(path)
    assert info.value.code == "not_streembit_payload"


def test_two_codes_in_one_picture(owner_png: Path, tmp_path: Path) -> None:
    other = tmp_path / "gw.png"
    qr.write_png(GW_TEXT, other)
    with Image.open(owner_png) as a, Image.open(other) as b:
        canvas = Image.new("L", (a.width + b.width + 40, max(a.height, b.height)), 255)
        canvas.paste(a.convert("L"), (0, 0))
        canvas.paste(b.convert("L"), (a.width + 40, 0))
    with pytest.raises(ProvisioningError) as info:
        qr.read_payload_text(_save(canvas, tmp_path / "two.png"))
    assert info.value.code == "several_qr"


def test_a_code_with_a_corrupted_payload_is_read_then_refused(tmp_path: Path) -> None:
    i = 3 + 15  # least significant digit of the 4th base38 group (key bytes): stays in range
    bad = TEXT[:i] + ("1" if TEXT[i] != "1" else "2") + TEXT[i + 1 :]
    path = tmp_path / "bad.png"
    qr.write_png(bad, path)
    text = qr.read_payload_text(path)
    with pytest.raises(ProvisioningError) as info:
        pl.decode_owner(text)
    assert info.value.code == "payload_checksum"


def test_files_that_are_not_usable_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "text.png").write_text("not an image")
    good = tmp_path / "good.png"
    qr.write_png(TEXT, good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    for name, code in (
        ("text.png", "image_unreadable"),
        ("missing.png", "image_unreadable"),
        ("cut.png", "image_unreadable"),
    ):
        with pytest.raises(ProvisioningError) as info:
            qr.read_payload_text(tmp_path / name)
        assert info.value.code == code, name
    monkeypatch.setattr(qr, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ProvisioningError) as info:
        qr.read_payload_text(good)
    assert info.value.code == "image_too_large"
    monkeypatch.setattr(qr, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(ProvisioningError) as info:
        qr.read_payload_text(good)
    assert info.value.code == "image_too_large"


# ------------------------------------------------------------------ camera
class FakeCamera:
    """A frame source that yields real images, then runs dry."""

    def __init__(self, frames: list[Image.Image]) -> None:
        self.frames = list(frames)
        self.captured = 0
        self.closed = False

    def capture(self) -> Image.Image | None:
        if not self.frames:
            return None
        self.captured += 1
        return self.frames.pop(0)

    def close(self) -> None:
        self.closed = True


def _pil(code: segno.QRCode) -> Image.Image:
    buf = io.BytesIO()
    code.save(buf, kind="png", scale=6, border=4)
    buf.seek(0)
    return Image.open(buf).convert("L")


def _frame(text: str, t: Transform | None = None) -> Image.Image:
    im = _pil(qr.make_qr(text))
    return t(im) if t else im


def test_camera_loop_finds_the_code_among_other_frames() -> None:
    blank = Image.new("L", (640, 480), 128)
    url = _pil(segno.make("https://example.com"))
    cam = FakeCamera([blank, blank, url, _frame(TEXT, chain(rotate(30), blur(1.0)))])
    slept: list[float] = []
    found = camera.scan_frames(cam, decode=pl.decode_owner, sleep=slept.append)
    assert isinstance(found, pl.OwnerPayload) and found.owner.id == OWNER.id
    assert cam.captured == 4 and len(slept) == 3


def test_camera_loop_reports_what_it_saw() -> None:
    url = _pil(segno.make("https://example.com"))
    with pytest.raises(ProvisioningError) as info:
        camera.scan_frames(FakeCamera([url, url]), sleep=lambda s: None)
    assert info.value.code == "not_streembit_payload"
    with pytest.raises(ProvisioningError) as info:  # the gateway's QR shown to `provision`
        camera.scan_frames(
            FakeCamera([_frame(GW_TEXT)]), decode=pl.decode_owner, sleep=lambda s: None
        )
    assert info.value.code == "payload_kind"


def test_camera_loop_times_out() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    blank = Image.new("L", (64, 48), 255)
    cam = FakeCamera([blank] * 1000)
    with pytest.raises(ProvisioningError, match="no QR code seen") as info:
        camera.scan_frames(cam, timeout_s=2.0, interval_s=0.5, clock=lambda: now[0], sleep=sleep)
    assert info.value.code == "camera_timeout" and cam.captured == 4


def test_frame_sources_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("L", (50, 50), 255).save(folder / "a.png")
    (folder / "b.png").write_text("broken frame")  # skipped with a warning
    _frame(TEXT, rotate(200)).save(folder / "c.jpg")
    src = camera.open_source(f"dir:{folder}")
    found = camera.scan_frames(src, sleep=lambda s: None)
    assert isinstance(found, pl.OwnerPayload)
    monkeypatch.setenv(camera.ENV_VAR, f"dir:{folder}")
    assert isinstance(camera.open_source(), camera.DirectorySource)
    with pytest.raises(ProvisioningError) as info:
        camera.open_source("webcam9")
    assert info.value.code == "no_camera"
    with pytest.raises(ProvisioningError) as info:
        camera.open_source(f"dir:{tmp_path / 'nope'}")
    assert info.value.code == "no_camera"


def test_no_camera_backend_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on a machine without it
    with pytest.raises(ProvisioningError, match="sudo apt install python3-picamera2") as info:
        camera.open_source("picamera2")
    assert info.value.code == "no_camera"
