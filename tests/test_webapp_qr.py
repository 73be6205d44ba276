"""The web app's QR fallback (gateway/webapp/src/ui/qrdecode.js, the bundled `jsqr` used where
the browser has no BarcodeDetector) decodes the public-key QR codes the app draws (`uqr`), run
in real Node: a key's JWK text at several camera scales; a blank frame and a frame of the wrong
size give nothing. Fails (never skips) without Node or the web app's npm packages."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.identity import generate_keypair

WEBAPP = Path(__file__).resolve().parents[1] / "gateway" / "webapp"
SCRIPT = WEBAPP / "test" / "qr.mjs"
NODE_TIMEOUT_S = 30.0  # one Node process decoding a few frames


def decode(text: str, scale: int) -> dict[str, str | None]:
    node = shutil.which("node")
    if node is None or not (WEBAPP / "node_modules" / "jsqr").is_dir():
        pytest.fail("needs Node.js and the web app's packages: cd gateway/webapp && npm ci")
    out = subprocess.run([node, str(SCRIPT), text, str(scale)], capture_output=True, text=True,
                         timeout=NODE_TIMEOUT_S, check=True)  # fmt: skip
    result: dict[str, str | None] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("scale", [3, 6])
def test_the_fallback_decoder_reads_the_apps_own_key_qr(scale: int) -> None:
    jwk = json.dumps(generate_keypair().public.jwk, separators=(",", ":"))
    result = decode(jwk, scale)
    assert result["decoded"] == jwk
    assert result["blank"] is None and result["bad_size"] is None
