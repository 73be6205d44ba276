#!/usr/bin/env node
/*
 * selftest.js: prove consumer.js (the node-wot consumer used by tests/test_interop_nodewot.py)
 * without the real gateway, against:
 *   A. fake_gateway.js: the gateway's HTTP contract (bearer, relative hrefs + base, long-poll with
 *      HEAD, 401/403 JSON bodies) with opaque tokens;
 *   B. a node-wot 0.9.2 servient exposing a thermostat + lock with HTTP basic auth;
 *   C. a node-wot 0.9.2 servient exposing the same with nosec.
 * Run: npm ci && node selftest.js      (exit 0 = all checks passed)
 */
"use strict";

const path = require("path");
const { spawn } = require("child_process");
const assert = require("assert/strict");
const { Servient, Helpers } = require("@node-wot/core");
const { HttpServer } = require("@node-wot/binding-http");
const { startFakeGateway } = require("./fake_gateway");

const CONSUMER = path.join(__dirname, "consumer.js");

function runConsumer(plan) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [CONSUMER, "-"], { stdio: ["pipe", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (err += d));
        const t0 = Date.now();
        child.on("error", reject);
        child.on("close", (code) => {
            const lines = out
                .split("\n")
                .filter(Boolean)
                .map((l) => JSON.parse(l));
            resolve({ code, lines, stderr: err, ms: Date.now() - t0 });
        });
        child.stdin.end(JSON.stringify(plan));
    });
}

let failures = 0;
async function check(label, fn) {
    try {
        await fn();
        console.log(`ok   ${label}`);
    } catch (e) {
        failures++;
        console.log(`FAIL ${label}\n     ${e.stack.split("\n").slice(0, 3).join("\n     ")}`);
    }
}

function thermostatLockInit(id, title, security) {
    return {
        title,
        id,
        securityDefinitions: security.defs,
        security: security.names,
        properties: {
            temperature: { type: "number", readOnly: true, observable: true },
            targetTemperature: { type: "number", minimum: 5, maximum: 30, observable: true },
            state: { type: "string", enum: ["locked", "unlocked", "jammed"], readOnly: true, observable: true },
        },
        actions: {
            lock: { output: { type: "object", properties: { state: { type: "string" } } } },
            unlock: { output: { type: "object", properties: { state: { type: "string" } } } },
        },
    };
}

async function startNodeWotServient(scheme) {
    Helpers.setStaticAddress("127.0.0.1"); // otherwise TD hrefs use the LAN addresses
    const servient = new Servient();
    const config = { port: 0, address: "127.0.0.1" };
    if (scheme === "basic") config.security = [{ scheme: "basic" }];
    servient.addServer(new HttpServer(config));
    const WoT = await servient.start();
    const id = `urn:dev:selftest:${scheme}`;
    const security =
        scheme === "basic"
            ? { defs: { basic_sc: { scheme: "basic", in: "header" } }, names: ["basic_sc"] }
            : { defs: { nosec_sc: { scheme: "nosec" } }, names: ["nosec_sc"] };
    const thing = await WoT.produce(thermostatLockInit(id, `selftest-${scheme}`, security));
    if (scheme === "basic") servient.addCredentials({ [id]: { username: "alice", password: "s3cret" } });
    const values = { temperature: 19.5, targetTemperature: 20, state: "locked" };
    for (const p of Object.keys(values)) thing.setPropertyReadHandler(p, async () => values[p]);
    thing.setPropertyWriteHandler("targetTemperature", async (v) => {
        values.targetTemperature = await v.value();
        thing.emitPropertyChange("targetTemperature");
    });
    for (const a of ["lock", "unlock"]) {
        thing.setActionHandler(a, async () => {
            values.state = a === "lock" ? "locked" : "unlocked";
            thing.emitPropertyChange("state");
            return { state: values.state };
        });
    }
    await thing.expose();
    const port = servient.getServers()[0].getPort();
    return { servient, url: `http://127.0.0.1:${port}/selftest-${scheme}` };
}

function lockObservePlanSteps(thing) {
    const t = thing === undefined ? {} : { thing };
    return [
        { do: "observe", ...t, name: "state" },
        { do: "invoke", ...t, name: "unlock" },
        { do: "wait", ...t, name: "state", value: "unlocked", timeout: 5000 },
        // node-wot's long-poll re-polls only after a notification: give it time to re-arm
        { do: "sleep", ms: 200 },
        { do: "invoke", ...t, name: "lock" },
        { do: "wait", ...t, name: "state", value: "locked", timeout: 5000 },
        { do: "unobserve", ...t, name: "state" },
    ];
}

async function main() {
    const gw = await startFakeGateway({
        grants: {
            "tok-all": {
                "front-door": ["readproperty", "observeproperty", "invokeaction", "subscribeevent"],
                "living-room": ["readproperty", "writeproperty", "observeproperty"],
            },
            "tok-read": { "living-room": ["readproperty"] },
            "tok-expired": "expired",
        },
    });
    const basic = await startNodeWotServient("basic");
    const nosec = await startNodeWotServient("nosec");

    try {
        await check("A1 fake gateway: TDs, read, write + read back, observe unlock/lock, event", async () => {
            const r = await runConsumer({
                url: `${gw.url}/things`,
                token: "tok-all",
                steps: [
                    { do: "list" },
                    { do: "td", thing: "living-room" },
                    { do: "td", thing: "front-door" },
                    { do: "read", thing: "living-room", name: "temperature" },
                    { do: "write", thing: "living-room", name: "targetTemperature", value: 21.5 },
                    { do: "read", thing: "living-room", name: "targetTemperature" },
                    { do: "subscribe", thing: "front-door", name: "unlocked" },
                    ...lockObservePlanSteps("front-door"),
                    { do: "wait", kind: "subscribe", thing: "front-door", name: "unlocked", count: 1 },
                    { do: "unsubscribe", thing: "front-door", name: "unlocked" },
                ],
            });
            assert.equal(r.code, 0, r.stderr);
            for (const l of r.lines) assert.equal(l.ok, true, JSON.stringify(l));
            const v = r.lines.map((l) => l.value);
            assert.deepEqual(
                v[0].map((t) => t.title).sort(),
                ["front-door", "living-room"],
            );
            assert.equal(v[1].id, "urn:streembit:fake-gw:living-room");
            assert.deepEqual(v[2].actions.sort(), ["lock", "unlock"]);
            assert.equal(v[3], 19.25);
            assert.equal(v[5], 21.5);
            assert.deepEqual(v[9], ["unlocked"]);
            assert.deepEqual(v[12], ["locked"]);
            assert.deepEqual(v[14], [{ state: "unlocked", by: "fake" }]);
            // node-wot details seen on the wire
            const put = gw.log.find((e) => e.method === "PUT");
            assert.equal(put.chunked, true, "node-wot sends PUT bodies chunked");
            assert.ok(gw.log.some((e) => e.method === "HEAD" && e.path.endsWith("/observe")), "HEAD before long-poll");
            assert.ok(gw.log.filter((e) => e.path.startsWith("/things/")).every((e) => e.path.split("/").length <= 3 || e.auth === "bearer"));
        });

        await check("A2 fake gateway: op not granted -> 403 with status and JSON body", async () => {
            const r = await runConsumer({
                url: `${gw.url}/things`,
                token: "tok-read",
                steps: [
                    { do: "read", thing: "living-room", name: "temperature" },
                    { do: "write", thing: "living-room", name: "targetTemperature", value: 22 },
                    { do: "read", thing: "front-door", name: "state" },
                    { do: "observe", thing: "living-room", name: "temperature" },
                ],
            });
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.lines[0].ok, true);
            for (const l of r.lines.slice(1)) {
                assert.equal(l.ok, false, JSON.stringify(l));
                assert.equal(l.status, 403, JSON.stringify(l));
                assert.match(l.error, /Client error: Forbidden \(HTTP 403/);
                // the observe refusal is the answer to node-wot's HEAD handshake: no body
                if (l.do !== "observe") assert.equal(l.body.error, "op_not_granted");
            }
        });

        await check("A3 fake gateway: expired / unknown token -> 401; no token -> refused", async () => {
            for (const token of ["tok-expired", "tok-nobody"]) {
                const r = await runConsumer({
                    url: `${gw.url}/things`,
                    token,
                    steps: [{ do: "read", thing: "living-room", name: "temperature" }],
                });
                assert.equal(r.code, 0);
                assert.equal(r.lines[0].ok, false);
                assert.equal(r.lines[0].status, 401, JSON.stringify(r.lines[0]));
            }
            const r = await runConsumer({
                url: `${gw.url}/things`,
                steps: [{ do: "read", thing: "living-room", name: "temperature" }],
            });
            assert.equal(r.lines[0].ok, false);
            // node-wot 0.9.2 fails locally (a TypeError in BearerCredential) and sends nothing when a
            // bearer TD has no credentials
            assert.match(r.lines[0].error, /Cannot destructure property 'token'/);
        });

        await check("A4 fake gateway: write out of range -> 400 body passed through", async () => {
            const r = await runConsumer({
                url: `${gw.url}/things`,
                token: "tok-all",
                steps: [{ do: "write", thing: "living-room", name: "targetTemperature", value: 99 }],
            });
            assert.equal(r.lines[0].ok, false);
            assert.equal(r.lines[0].status, 400, JSON.stringify(r.lines[0]));
            assert.equal(r.lines[0].body.error, "out_of_range");
        });

        await check("A5 timeouts: a step timeout reports and the run goes on; overall timeout exits 3", async () => {
            const r = await runConsumer({
                url: `${gw.url}/things`,
                token: "tok-all",
                steps: [
                    { do: "observe", thing: "living-room", name: "temperature" },
                    { do: "wait", thing: "living-room", name: "temperature", timeout: 300 },
                    { do: "read", thing: "living-room", name: "temperature" },
                ],
            });
            assert.equal(r.code, 0);
            assert.equal(r.lines[1].ok, false);
            assert.match(r.lines[1].error, /timeout after 300 ms/);
            assert.equal(r.lines[2].ok, true);
            const r2 = await runConsumer({ url: `${gw.url}/things`, timeout: 500, steps: [{ do: "sleep", ms: 5000 }] });
            assert.equal(r2.code, 3);
            assert.ok(r2.ms < 3000, `took ${r2.ms} ms`);
            const r3 = await runConsumer({ url: 42, steps: [] });
            assert.equal(r3.code, 2);
        });

        await check("B1 node-wot servient (basic auth): read, write, invoke, observe", async () => {
            const r = await runConsumer({
                url: basic.url,
                credentials: { username: "alice", password: "s3cret" },
                steps: [
                    { do: "td" },
                    { do: "read", name: "temperature" },
                    { do: "write", name: "targetTemperature", value: 21.5 },
                    { do: "read", name: "targetTemperature" },
                    ...lockObservePlanSteps(undefined),
                ],
            });
            assert.equal(r.code, 0, r.stderr);
            for (const l of r.lines) assert.equal(l.ok, true, JSON.stringify(l));
            assert.equal(r.lines[1].value, 19.5);
            assert.equal(r.lines[3].value, 21.5);
            assert.deepEqual(r.lines[5].value, { state: "unlocked" });
            assert.deepEqual(r.lines[6].value, ["unlocked"]);
            assert.deepEqual(r.lines[9].value, ["locked"]);
        });

        await check("B2 node-wot servient (basic auth): wrong password -> 401", async () => {
            const r = await runConsumer({
                url: basic.url,
                credentials: { username: "alice", password: "wrong" },
                steps: [{ do: "read", name: "temperature" }],
            });
            assert.equal(r.lines[0].ok, false);
            assert.equal(r.lines[0].status, 401);
        });

        await check("C1 node-wot servient (nosec): read via the TD URL", async () => {
            const r = await runConsumer({
                url: nosec.url,
                steps: [{ do: "td" }, { do: "read", name: "temperature" }, { do: "invoke", name: "unlock" }],
            });
            assert.equal(r.code, 0, r.stderr);
            for (const l of r.lines) assert.equal(l.ok, true, JSON.stringify(l));
            assert.equal(r.lines[1].value, 19.5);
        });
    } finally {
        await gw.close();
        await basic.servient.shutdown();
        await nosec.servient.shutdown();
    }
    console.log(failures === 0 ? "selftest: all passed" : `selftest: ${failures} failed`);
    process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
