// QR decoding of camera frames where the browser has no BarcodeDetector (Firefox, Safari, most
// desktop browsers): the bundled decoder `jsqr` (Apache-2.0) on the frame's RGBA pixels.
// Pure: no DOM, so Node tests decode the app's own QR codes with it.

import jsQR from "jsqr";

/** The text of the QR code in an RGBA frame (Uint8ClampedArray, width x height), or null. */
export function decodeFrame(rgba, width, height) {
  if (!(rgba instanceof Uint8ClampedArray) || rgba.length !== width * height * 4) return null;
  const found = jsQR(rgba, width, height, { inversionAttempts: "dontInvert" });
  return found && found.data ? found.data : null;
}
