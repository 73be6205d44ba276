"""QR codes of provisioning payloads: draw them (segno) and read them from images (zxing-cpp).

Drawing needs only segno. Reading needs the `qr-images` extra (zxing-cpp, Pillow), imported on
first use: without it, reading raises MissingExtraError saying what to install.

Reading accepts photos and screenshots: any orientation (also EXIF-rotated photos), scaled,
slightly blurred, noisy or low in contrast. zxing-cpp already searches every rotation, inverted
codes and downscaled copies with a local-average binarizer; when that finds nothing, the image
is retried with its contrast stretched and, for large photos, at half size.
"""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import segno

from gateway.errors import ProvisioningError
from gateway.extras import need
from gateway.provisioning import payload as pl
from gateway.text import clean

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES: Final = 30 * 1024 * 1024  # a 48 MP phone photo as JPEG is ~15-25 MB
MAX_IMAGE_PIXELS: Final = 60_000_000  # refuse decompression bombs before decoding pixels
PNG_SCALE: Final = 10  # pixels per module: prints and photographs well
QUIET_ZONE: Final = 4  # modules of white border (the QR standard's minimum)
ERROR_LEVEL: Final = "q"  # 25 % of the symbol may be damaged or misread
BIG_IMAGE_SIDE: Final = 1600  # photos larger than this are also tried at half size


def _err(code: str, message: str) -> ProvisioningError:
    return ProvisioningError(message, code=code)


# --------------------------------------------------------------------------- drawing
def make_qr(text: str) -> segno.QRCode:
    """The QR code of a payload, in alphanumeric mode (the payload alphabet fits it)."""
    return segno.make_qr(text, mode="alphanumeric", error=ERROR_LEVEL)


def write_png(text: str, path: Path, scale: int = PNG_SCALE) -> None:
    make_qr(text).save(str(path), kind="png", scale=scale, border=QUIET_ZONE)


def write_svg(text: str, path: Path, scale: int = PNG_SCALE) -> None:
    make_qr(text).save(str(path), kind="svg", scale=scale, border=QUIET_ZONE)


def print_terminal(text: str, out: TextIO | None = None) -> None:
    """Draw the code with Unicode half blocks (dark on light, as a phone camera expects)."""
    make_qr(text).terminal(out=out or sys.stdout, compact=True, border=QUIET_ZONE)


def png_bytes(text: str, scale: int = PNG_SCALE) -> bytes:
    buf = io.BytesIO()
    make_qr(text).save(buf, kind="png", scale=scale, border=QUIET_ZONE)
    return buf.getvalue()


# --------------------------------------------------------------------------- reading
def load_image(path: Path) -> Image.Image:
    """Open an image file safely (size limits, EXIF orientation); a grayscale copy."""
    need("qr-images")
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _err("image_unreadable", f"{path}: no such file") from None
    except OSError as exc:
        raise _err("image_unreadable", f"{path}: {exc.strerror}") from None
    if size > MAX_IMAGE_BYTES:
        raise _err("image_too_large", f"{path}: larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise _err("image_too_large", f"{path}: {w}x{h} pixels is too many")
                im.load()
                oriented = ImageOps.exif_transpose(im)
                return oriented.convert("L")
    except ProvisioningError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _err("image_too_large", f"{path}: too many pixels") from None
    except UnidentifiedImageError:
        raise _err("image_unreadable", f"{path}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise _err("image_unreadable", f"{path}: damaged image: {clean(str(exc), 80)}") from None


def _variants(img: Image.Image) -> list[Image.Image]:
    from PIL import Image, ImageFilter, ImageOps

    gray = img.convert("L")
    out = [gray, ImageOps.autocontrast(gray, cutoff=1)]
    if max(gray.size) > BIG_IMAGE_SIDE:
        half = gray.resize((gray.width // 2, gray.height // 2), Image.Resampling.LANCZOS)
        out.append(ImageOps.autocontrast(half, cutoff=1))
    out.append(ImageOps.autocontrast(gray.filter(ImageFilter.MedianFilter(3)), cutoff=1))
    return out


def read_texts(img: Image.Image) -> list[str]:
    """The texts of the QR codes found in IMG (distinct, in the order found); [] if none."""
    need("qr-images")
    import zxingcpp

    formats = zxingcpp.barcode_formats_from_str("QRCode,MicroQRCode")
    for variant in _variants(img):
        found = zxingcpp.read_barcodes(variant, formats=formats)
        texts = list(dict.fromkeys(b.text for b in found if b.valid and b.text))
        if texts:
            return texts
    return []


@dataclass(frozen=True)
class Scan:
    """What one image held: the Streembit payload texts and how many other codes."""

    payloads: tuple[str, ...]
    others: int


def scan(img: Image.Image) -> Scan:
    texts = read_texts(img)
    ours = tuple(t.strip() for t in texts if pl.is_streembit(t))
    return Scan(ours, len(texts) - len(ours))


def payload_text(found: Scan, where: str) -> str:
    """The one Streembit payload of a scan; ProvisioningError if none or several."""
    if len(found.payloads) > 1:
        raise _err("several_qr", f"{where} shows {len(found.payloads)} Streembit codes; show one")
    if found.payloads:
        return found.payloads[0]
    if found.others:
        raise _err(
            "not_streembit_payload",
            f"{where} holds a QR code, but not a Streembit provisioning code "
            "(a web address or other text?)",
        )
    raise _err("no_qr", f"no QR code found in {where}")


def read_payload_text(path: Path) -> str:
    """The Streembit payload text in an image file (not yet parsed)."""
    return payload_text(scan(load_image(path)), str(path))
