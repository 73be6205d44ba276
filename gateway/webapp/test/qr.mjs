// The owner's scanner decodes the QR codes the Key screen draws: encode TEXT with the app's
// encoder (uqr), draw it as camera-like RGBA pixels (SCALE px per module, a light border), and
// decode with the fallback decoder the app uses without BarcodeDetector (src/ui/qrdecode.js).
// argv: TEXT SCALE. Prints {"decoded": text|null, "blank": text|null, "bad_size": text|null}.
import { encode } from "uqr";
import { decodeFrame } from "../src/ui/qrdecode.js";

const [text, scaleArg] = process.argv.slice(2);
const scale = Number(scaleArg);
const { data, size } = encode(text, { ecc: "M", border: 4 });
const side = size * scale;
const rgba = new Uint8ClampedArray(side * side * 4).fill(255);
for (let y = 0; y < side; y++) {
  for (let x = 0; x < side; x++) {
    if (data[Math.floor(y / scale)][Math.floor(x / scale)]) {
      const i = (y * side + x) * 4;
      rgba[i] = rgba[i + 1] = rgba[i + 2] = 24; // dark module, as a camera sees black
    }
  }
}
const blank = new Uint8ClampedArray(side * side * 4).fill(200);
console.log(JSON.stringify({
  decoded: decodeFrame(rgba, side, side),
  blank: decodeFrame(blank, side, side),
  bad_size: decodeFrame(rgba, side + 1, side),
}));
