// Build the web app: esbuild bundles src/main.js (and everything it imports: src/ui/**,
// src/lib/**, jose, uqr) into dist/app.js and copies the static files. Run at development
// time only (`npm run build`); dist/ is committed and served by the gateway at /app.
//
// Deterministic: same sources + same locked packages -> identical bytes (no timestamps, no
// absolute paths, no source map). tests/test_webapp_lib.py checks it.
//
//   node build.mjs [--outdir DIR]     (default: dist/ next to this file)

import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outdir = args[0] === "--outdir" && args[1] ? resolve(args[1]) : join(here, "dist");
// The files copied as they are (the gateway serves only an allow-list: webapp.py FILES).
const STATIC = ["index.html", "app.css", "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png"];

if (!existsSync(join(here, "src", "main.js"))) {
  console.error("build: src/main.js is missing");
  process.exit(1);
}
mkdirSync(outdir, { recursive: true });

await build({
  absWorkingDir: here,
  entryPoints: ["src/main.js"],
  outfile: join(outdir, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: false,
  legalComments: "eof", // keep the packages' license notices
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});

for (const name of STATIC) {
  const src = join(here, "src", name);
  const dst = join(outdir, name);
  if (existsSync(src)) copyFileSync(src, dst);
  else rmSync(dst, { force: true }); // no stale copy of a file the sources no longer have
}

const js = readFileSync(join(outdir, "app.js"));
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`build: ${join(outdir, "app.js")} ${kb(js.length)} (${kb(gzipSync(js, { level: 9 }).length)} gzip)`);
