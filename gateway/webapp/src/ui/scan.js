// Scan a QR code with the camera: BarcodeDetector where the browser has it (Chrome on Android,
// and others), else the bundled decoder on canvas frames (qrdecode.js); without a camera the
// owner pastes the text. The camera stops on a hit, on Cancel, when the screen changes, and
// after SCAN_LIMIT_MS in any case.

import { h } from "./dom.js";
import { decodeFrame } from "./qrdecode.js";

const SCAN_EVERY_MS = 250;
const SCAN_LIMIT_MS = 60_000;

const FRAME_MAX_PX = 640; // frames are scaled down to at most this width for the JS decoder

export const canScan = () => Boolean(navigator.mediaDevices?.getUserMedia);

/** detect(video) -> text or null: the browser's detector, or the bundled one on a canvas. */
function makeDetector() {
  if (typeof globalThis.BarcodeDetector === "function") {
    const native = new globalThis.BarcodeDetector({ formats: ["qr_code"] });
    return async (video) => {
      const codes = await native.detect(video);
      return codes.length && codes[0].rawValue ? codes[0].rawValue : null;
    };
  }
  const canvas = document.createElement("canvas");
  const g = canvas.getContext("2d", { willReadFrequently: true });
  return async (video) => {
    if (!video.videoWidth) return null;
    const scale = Math.min(1, FRAME_MAX_PX / video.videoWidth);
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    g.drawImage(video, 0, 0, canvas.width, canvas.height);
    const frame = g.getImageData(0, 0, canvas.width, canvas.height);
    return decodeFrame(frame.data, frame.width, frame.height);
  };
}

/** A scanner panel; start() resolves with the text of the first QR code seen (or null). */
export function scanner() {
  const video = h("video", { playsinline: true, muted: true, class: "scan-video", "aria-label": "Camera view" });
  video.muted = true;
  const cancel = h("button", { type: "button" }, "Stop the camera");
  const node = h("div", { class: "scanner", hidden: true }, video, cancel);
  let stream = null;
  let done = null;

  const stop = (value = null) => {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    node.hidden = true;
    if (done) done(value);
    done = null;
  };
  cancel.addEventListener("click", () => stop(null));

  async function start() {
    stop(null);
    const detect = makeDetector();
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    video.srcObject = stream;
    node.hidden = false;
    await video.play();
    cancel.focus();
    const until = Date.now() + SCAN_LIMIT_MS;
    return new Promise((resolve) => {
      done = resolve;
      const tick = async () => {
        if (!stream) return;
        if (Date.now() > until) { stop(null); return; }
        try {
          const text = await detect(video);
          if (text) { stop(text); return; }
        } catch { /* a frame not ready yet */ }
        setTimeout(tick, SCAN_EVERY_MS);
      };
      tick();
    });
  }
  return { node, start, stop };
}
