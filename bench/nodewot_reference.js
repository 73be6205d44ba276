#!/usr/bin/env node
/*
 * nodewot_reference.js: the reference point for bench/bench_http.py. An Eclipse Thingweb node-wot
 * 0.9.2 servient (HttpServer binding, 127.0.0.1 only) exposing one open (nosec) thermostat Thing
 * with a read-only, observable `temperature` property.
 *
 *   node bench/nodewot_reference.js [PORT]        (PORT 0 or absent: any free port)
 *
 * Prints one JSON line once it is listening:
 *   {"ready": true, "url": "http://127.0.0.1:P/thermostat", "td": ..., "temperature": ".../properties/temperature", "pid": N}
 * Stops cleanly on SIGTERM / SIGINT.
 *
 * node-wot is resolved from tests/interop/node_modules (run `npm ci` in tests/interop first), or
 * from the folder named by NODEWOT_MODULES_DIR (a folder holding package.json + node_modules).
 */
"use strict";

const path = require("path");
const { createRequire } = require("module");

const modulesDir = process.env.NODEWOT_MODULES_DIR ?? path.resolve(__dirname, "..", "tests", "interop");
const requireNodeWot = createRequire(path.join(modulesDir, "package.json"));

let core;
let bindingHttp;
try {
    core = requireNodeWot("@node-wot/core");
    bindingHttp = requireNodeWot("@node-wot/binding-http");
} catch (e) {
    process.stderr.write(`cannot load node-wot from ${modulesDir}: ${e.message}\nrun: (cd tests/interop && npm ci)\n`);
    process.exit(2);
}
const { Servient, Helpers } = core;
const { HttpServer } = bindingHttp;

async function main() {
    const port = Number.parseInt(process.argv[2] ?? "0", 10);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port: ${process.argv[2]}`);
    // node-wot's HttpServer prefers $WOT_PORT / $PORT over its configured port: do not let a stray
    // environment variable move it.
    delete process.env.WOT_PORT;
    delete process.env.PORT;
    // node-wot writes every non-loopback interface address into the TD's hrefs unless told.
    Helpers.setStaticAddress("127.0.0.1");

    const servient = new Servient();
    servient.addServer(new HttpServer({ port, address: "127.0.0.1" }));
    const WoT = await servient.start();
    const thing = await WoT.produce({
        title: "thermostat",
        id: "urn:dev:bench:nodewot-thermostat",
        securityDefinitions: { nosec_sc: { scheme: "nosec" } },
        security: ["nosec_sc"],
        properties: {
            temperature: { type: "number", unit: "degree Celsius", readOnly: true, observable: true },
        },
    });
    let reads = 0;
    thing.setPropertyReadHandler("temperature", async () => {
        reads++;
        return 20 + (reads % 10) / 10;
    });
    await thing.expose();
    const actualPort = servient.getServers()[0].getPort();
    const base = `http://127.0.0.1:${actualPort}/thermostat`;
    process.stdout.write(
        JSON.stringify({
            ready: true,
            url: base,
            td: base,
            temperature: `${base}/properties/temperature`,
            pid: process.pid,
        }) + "\n",
    );

    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        const force = setTimeout(() => process.exit(0), 3000);
        try {
            await servient.shutdown();
        } finally {
            clearTimeout(force);
            process.exit(0);
        }
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((e) => {
    process.stderr.write(`nodewot_reference: ${e.stack ?? e}\n`);
    process.exit(1);
});
