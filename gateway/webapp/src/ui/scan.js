// Scan a QR code with the camera where the browser has BarcodeDetector (Chrome on Android,
// and others); elsewhere the owner pastes the text. The camera stops on a hit, on Cancel,
// when the screen changes, and after SCAN_LIMIT_MS in any case.

import { h } from "./dom.js";

const SCAN_EVERY_MS = 250;
const SCAN_LIMIT_MS = 60_000;

export const canScan = () =>
  typeof globalThis.BarcodeDetector === "function" && Boolean(navigator.mediaDevices?.getUserMedia);

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
    const detector = new globalThis.BarcodeDetector({ formats: ["qr_code"] });
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
          const codes = await detector.detect(video);
          if (codes.length && codes[0].rawValue) { stop(codes[0].rawValue); return; }
        } catch { /* a frame not ready yet */ }
        setTimeout(tick, SCAN_EVERY_MS);
      };
      tick();
    });
  }
  return { node, start, stop };
}
