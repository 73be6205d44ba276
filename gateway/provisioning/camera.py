"""Scan a provisioning QR code with a camera: a frame source, and a loop that reads frames.

Frame sources are chosen by name, like gpiozero's pin factories: the `STREEMBIT_CAMERA`
environment variable or the `source` argument, default ``picamera2``.

- ``picamera2``: the Raspberry Pi camera through the picamera2 library. It is a Debian /
  Raspberry Pi OS package, not on PyPI: ``sudo apt install python3-picamera2`` (and give the
  venv access to it: ``python3 -m venv --system-site-packages``).
- ``dir:PATH``: image files in folder PATH, in name order, one per frame (for tools that drop
  webcam snapshots into a folder, and for tests).

Any object with ``capture() -> PIL.Image | None`` (None: no more frames) and ``close()`` is a
frame source: pass it to `scan_frames` directly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from gateway.errors import ProvisioningError
from gateway.extras import need
from gateway.provisioning import payload as pl
from gateway.provisioning.qr import load_image, scan

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ENV_VAR: Final = "STREEMBIT_CAMERA"
DEFAULT_SOURCE: Final = "picamera2"
SCAN_TIMEOUT_S: Final = 60.0  # give the person a minute to hold the phone up
FRAME_INTERVAL_S: Final = 0.2  # five frames a second is plenty and keeps a Pi Zero cool
CAMERA_SIZE: Final = (1280, 960)  # enough pixels for a phone screen at arm's length
NO_CAMERA_FIX: Final = (
    "no camera backend: picamera2 is not available. On Raspberry Pi OS: "
    "sudo apt install python3-picamera2 (and create the venv with --system-site-packages); "
    "or take a photo and use --qr IMAGE, or type the text with --payload"
)
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class FrameSource(Protocol):
    def capture(self) -> Image.Image | None:
        """The next frame, or None when the source has no more."""

    def close(self) -> None: ...


class Picamera2Source:
    """Frames from the Raspberry Pi camera (picamera2)."""

    def __init__(self, size: tuple[int, int] = CAMERA_SIZE) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ProvisioningError(NO_CAMERA_FIX, code="no_camera") from None
        try:
            cam: Any = Picamera2()
            cam.configure(cam.create_still_configuration(main={"size": size}))
            cam.start()
        except Exception as exc:  # no camera connected, camera busy, libcamera errors
            raise ProvisioningError(
                f"cannot start the camera: {exc}", code="camera_failed"
            ) from None
        self._cam = cam

    def capture(self) -> Image.Image | None:
        image: Image.Image = self._cam.capture_image("main")
        return image

    def close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()


class DirectorySource:
    """Frames from the image files of a folder, in name order."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise ProvisioningError(f"{folder}: no such folder of frames", code="no_camera")
        self._files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )

    def capture(self) -> Image.Image | None:
        while self._files:
            path = self._files.pop(0)
            try:
                return load_image(path)
            except ProvisioningError as exc:
                log.warning("skipping frame %s: %s", path.name, exc)
        return None

    def close(self) -> None:
        self._files = []


def open_source(name: str | None = None) -> FrameSource:
    """The frame source NAME (default: $STREEMBIT_CAMERA, else picamera2); MissingExtraError
    before any camera starts when the `qr-images` extra (zxing-cpp, Pillow) is missing."""
    need("qr-images")
    spec = name or os.environ.get(ENV_VAR) or DEFAULT_SOURCE
    if spec == "picamera2":
        return Picamera2Source()
    if spec.startswith("dir:"):
        return DirectorySource(Path(spec[4:]))
    raise ProvisioningError(
        f"unknown camera source {spec!r}: use picamera2 or dir:PATH", code="no_camera"
    )


def scan_frames(
    source: FrameSource,
    *,
    decode: Callable[[str], pl.Payload] = pl.decode,
    timeout_s: float = SCAN_TIMEOUT_S,
    interval_s: float = FRAME_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> pl.Payload:
    """Read frames until one shows a Streembit code that DECODE accepts.

    A frame with a code that does not parse (a misread, another QR) is skipped and remembered:
    if no good code turns up within TIMEOUT_S (or the source runs dry), that problem is raised,
    else `camera_timeout`."""
    deadline = clock() + timeout_s
    last_problem: ProvisioningError | None = None
    frames = 0
    while clock() < deadline:
        frame = source.capture()
        if frame is None:
            break
        frames += 1
        found = scan(frame)
        for text in found.payloads:
            try:
                return decode(text)
            except ProvisioningError as exc:
                last_problem = exc
        if not found.payloads and found.others and last_problem is None:
            last_problem = ProvisioningError(
                "the camera sees a QR code, but not a Streembit provisioning code",
                code="not_streembit_payload",
            )
        sleep(interval_s)
    if last_problem is not None:
        raise last_problem
    raise ProvisioningError(
        f"no QR code seen in {frames} camera frames ({timeout_s:g} s)", code="camera_timeout"
    )
