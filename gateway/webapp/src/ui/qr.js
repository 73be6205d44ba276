// A QR code as an SVG element, drawn from the bundled encoder `uqr` (MIT, no dependencies):
// one <path> of dark modules, built with DOM calls (no markup string, nothing inline).

import { encode } from "uqr";

const SVG = "http://www.w3.org/2000/svg";
const QUIET = 4; // modules of light border the scanners need

/** An <svg role="img"> of TEXT as a QR code (error correction M), labelled LABEL. */
export function qrSvg(text, label) {
  const { data, size } = encode(text, { ecc: "M", border: 0 });
  const n = size + 2 * QUIET;
  let d = "";
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (data[y][x]) d += `M${x + QUIET} ${y + QUIET}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${n} ${n}`);
  svg.setAttribute("class", "qr");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("shape-rendering", "crispEdges");
  const bg = document.createElementNS(SVG, "rect");
  bg.setAttribute("width", String(n));
  bg.setAttribute("height", String(n));
  bg.setAttribute("class", "qr-bg");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", d);
  path.setAttribute("class", "qr-fg");
  svg.append(bg, path);
  return svg;
}
