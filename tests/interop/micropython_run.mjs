#!/usr/bin/env node
/*
 * micropython_run.mjs: run Python files under the real MicroPython interpreter (the WebAssembly
 * port from npm @micropython/micropython-webassembly-pyscript 1.27.0) and exit non-zero when
 * the program raises. (The package's own CLI exits 0 on exceptions and reads stdin.)
 *
 * Usage: node micropython_run.mjs [--lib DIR]... [--file SRC]... [--heap BYTES] MAIN.py [ARG...]
 *   --lib DIR   copy every *.py and *.mpy file of DIR into the interpreter's /lib (on sys.path)
 *   --file SRC  copy the file SRC into the interpreter's / under its own name
 *   --heap N    GC heap size in bytes (default 1 MiB)
 *   ARGs are in `mp_argv.argv[1:]` (this port has no sys.argv; argv[0] is MAIN.py).
 * Exit code: 0 when MAIN.py ran to its end, 1 on a Python exception (traceback on stderr), 2 on
 * bad usage.
 */
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const argv = process.argv.slice(2);
const libs = [];
const files = [];
let heap = 1024 * 1024;
while (argv.length && argv[0].startsWith("--")) {
    const opt = argv.shift();
    if (opt === "--lib") libs.push(argv.shift());
    else if (opt === "--file") files.push(argv.shift());
    else if (opt === "--heap") heap = Number(argv.shift());
    else {
        process.stderr.write(`unknown option ${opt}\n`);
        process.exit(2);
    }
}
const main = argv.shift();
if (!main || !Number.isFinite(heap) || heap < 16384) {
    process.stderr.write("usage: node micropython_run.mjs [--lib DIR]... [--file SRC]... [--heap BYTES] MAIN.py [ARG...]\n");
    process.exit(2);
}

const out = (data) => process.stdout.write(data);
const err = (data) => process.stderr.write(data);
const mp = await loadMicroPython({ heapsize: heap, stdout: out, stderr: err, linebuffer: false });
mp.FS.mkdir("/lib");
for (const dir of libs) {
    for (const name of fs.readdirSync(dir)) {
        if (name.endsWith(".py") || name.endsWith(".mpy")) mp.FS.writeFile(`/lib/${name}`, fs.readFileSync(path.join(dir, name)));
    }
}
for (const file of files) mp.FS.writeFile(`/${path.basename(file)}`, fs.readFileSync(file));
mp.FS.writeFile("/main.py", fs.readFileSync(main));
const setup = [
    "import sys",
    "sys.path.insert(0, '/lib')",
].join("\n");
try {
    mp.runPython(setup);
    // sys.argv does not exist in this port: the arguments go in a module of their own
    mp.FS.writeFile("/lib/mp_argv.py", `argv = ${JSON.stringify([main, ...argv])}\n`);
    await mp.runPythonAsync("exec(open('/main.py').read(), {'__name__': '__main__'})");
} catch (e) {
    err(String(e && e.message ? e.message : e) + "\n");
    process.exit(1);
}
process.exit(0);
