#!/usr/bin/env node
/*
 * consumer.js: drive a WoT Thing (the Streembit gateway, or any HTTP Thing) with Eclipse Thingweb
 * node-wot 0.9.2 as an ordinary WoT consumer, following a JSON plan.
 *
 * Usage:
 *   node consumer.js '<plan JSON>'
 *   node consumer.js @plan.json
 *   node consumer.js - < plan.json          (or no argument and the plan on stdin)
 *
 * Plan:
 *   {
 *     "url": "http://127.0.0.1:PORT/things"          a TD listing (JSON array) or one TD's URL
 *     "token": "<bearer JWT>",                         optional; becomes addCredentials({[td.id]: {token}})
 *     "credentials": {...},                            optional; any node-wot credentials object instead
 *     "timeout": 30000,                                optional overall hard timeout (ms)
 *     "stepTimeout": 15000,                            optional default per-step timeout (ms)
 *     "steps": [ { "do": ..., "thing": ..., "name": ..., "value": ... }, ... ]
 *   }
 *
 * Steps ("thing" is the Thing's name in the listing, its id or its title; it may be left out when
 * "url" is one TD):
 *   list                          value: [{id, title, base}] of the listing (plain fetch through node-wot's client)
 *   td                            requestThingDescription + consume; value: {id, title, security, ...}
 *   read       name               readProperty(name) -> value()
 *   write      name value         writeProperty(name, value)
 *   invoke     name [value]       invokeAction(name, value) -> output value (or raw body, if no schema)
 *   observe    name               observeProperty(name, listener, errorListener); returns once subscribed
 *   subscribe  name               subscribeEvent(name, listener, errorListener); returns once subscribed
 *   wait       name [kind] ...    wait for notifications of an earlier observe/subscribe
 *                                 ("kind": "observe" (default) | "subscribe"); either "count": N
 *                                 (N more notifications) or "value": V (until one equal to V arrives);
 *                                 value: the notifications consumed by this wait
 *   unobserve / unsubscribe name  stop an observation / subscription
 *   sleep      ms                 pause
 * Every step may carry "timeout" (ms).
 *
 * Output: one JSON line per step on stdout, in order:
 *   {"step": i, "do": ..., "thing": ..., "name": ..., "ok": true, "value": ...}
 *   {"step": i, ..., "ok": false, "error": "<node-wot message> (HTTP 403 ...)", "status": 403, "body": {...}}
 * Exit code: 0 when the plan ran (whatever the steps' outcomes), 2 for a bad plan, 3 on the overall
 * timeout. The servient is always shut down.
 *
 * node-wot's own HTTP errors carry only the status text ("Client error: Forbidden"); this script wraps
 * node-wot's HttpClient to attach the status code and the response body to the thrown Error. It
 * changes nothing on the wire.
 */
"use strict";

const fs = require("fs");
const util = require("util");
const { Servient } = require("@node-wot/core");
const { HttpClientFactory, HttpClient } = require("@node-wot/binding-http");

// stdout carries only our result lines: anything node-wot (or a dependency) logs goes to stderr.
for (const level of ["log", "info", "warn", "debug"]) {
    console[level] = (...args) => process.stderr.write(util.format(...args) + "\n");
}

// --- diagnostics: attach the HTTP status and body to node-wot's errors --------------------------
{
    const origFetch = HttpClient.prototype._fetch;
    HttpClient.prototype._fetch = async function (request) {
        const response = await origFetch.call(this, request);
        if (response.status >= 400) {
            try {
                response.__diagBody = (await response.text()).slice(0, 4000);
            } catch (_e) {
                response.__diagBody = undefined;
            }
        }
        return response;
    };
    const origCheck = HttpClient.prototype.checkFetchResponse;
    HttpClient.prototype.checkFetchResponse = function (response) {
        try {
            return origCheck.call(this, response);
        } catch (e) {
            if (e instanceof Error && e.httpStatus === undefined) {
                e.httpStatus = response.status;
                e.httpBody = response.__diagBody;
                e.httpUrl = response.url;
            }
            throw e;
        }
    };
}

function readPlan() {
    const arg = process.argv[2];
    let text;
    if (arg === undefined || arg === "-") {
        text = fs.readFileSync(0, "utf8");
    } else if (arg.startsWith("@")) {
        text = fs.readFileSync(arg.slice(1), "utf8");
    } else {
        text = arg;
    }
    const plan = JSON.parse(text);
    if (typeof plan !== "object" || plan === null || typeof plan.url !== "string" || !Array.isArray(plan.steps)) {
        throw new Error('plan must be an object with "url" (string) and "steps" (array)');
    }
    return plan;
}

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function parseMaybeJson(text) {
    if (text === undefined || text === null) return text;
    try {
        return JSON.parse(text);
    } catch (_e) {
        return text;
    }
}

function describeError(e) {
    const out = {};
    if (e instanceof Error) {
        out.error = e.message || String(e);
        if (e.httpStatus !== undefined) {
            out.status = e.httpStatus;
            if (e.httpBody) out.body = parseMaybeJson(e.httpBody); // none for HEAD (observe handshake)
            out.error += ` (HTTP ${e.httpStatus}${e.httpBody ? ": " + e.httpBody : ""})`;
        }
        if (e.name && e.name !== "Error") out.errorType = e.name;
    } else {
        out.error = typeof e === "string" ? e : JSON.stringify(e);
    }
    return out;
}

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function deepEqual(a, b) {
    return util.isDeepStrictEqual(a, b);
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function outputValue(output) {
    // InteractionOutput: value() validates against the affordance's schema; with no schema it
    // returns undefined without reading, so fall back to the raw body.
    const v = await output.value();
    if (v !== undefined) return v;
    try {
        const buf = await output.arrayBuffer();
        if (buf && buf.byteLength > 0) return parseMaybeJson(Buffer.from(buf).toString("utf8"));
    } catch (_e) {
        // nothing to read
    }
    return null;
}

class Stream {
    // notifications of one observation / subscription
    constructor() {
        this.values = [];
        this.errors = [];
        this.cursor = 0;
        this.waiters = new Set();
        this.subscription = null;
        this.closed = false;
    }
    push(value) {
        this.values.push(value);
        this.wake();
    }
    fail(err) {
        if (this.closed) return; // an aborted long-poll after unobserve is not an error
        this.errors.push(describeError(err));
        this.wake();
    }
    wake() {
        for (const w of [...this.waiters]) w();
    }
    changed() {
        return new Promise((resolve) => {
            const w = () => {
                this.waiters.delete(w);
                resolve();
            };
            this.waiters.add(w);
        });
    }
}

async function main() {
    let plan;
    try {
        plan = readPlan();
    } catch (e) {
        emit({ step: -1, do: "plan", ok: false, error: `bad plan: ${e.message}` });
        return 2;
    }

    const overallMs = plan.timeout ?? 30000;
    const stepDefaultMs = plan.stepTimeout ?? Math.min(15000, overallMs);
    const credentials = plan.credentials ?? (plan.token !== undefined ? { token: plan.token } : undefined);

    const servient = new Servient();
    servient.addClientFactory(new HttpClientFactory(null));
    let started = false;
    let exitCode = 0;
    const streams = new Map(); // "observe|thing|name" -> Stream
    const consumed = new Map(); // thing key -> ConsumedThing
    let listing; // cached directory listing (array) or null when url is one TD
    let currentStep = -1;

    const overall = setTimeout(async () => {
        emit({ step: currentStep, do: "timeout", ok: false, error: `overall timeout after ${overallMs} ms` });
        try {
            if (started) await withTimeout(servient.shutdown(), 2000, "shutdown");
        } catch (_e) {
            // best effort
        }
        process.exit(3);
    }, overallMs);

    try {
        const WoT = await servient.start();
        started = true;
        const httpClient = servient.getClientFor("http");

        async function fetchJson(url) {
            // through node-wot's own HTTP client (no credentials: TDs and the listing are public)
            const content = await httpClient.requestThingDescription(url);
            const body = await content.toBuffer();
            return JSON.parse(body.toString("utf8"));
        }

        async function getListing() {
            if (listing === undefined) {
                const doc = await fetchJson(plan.url);
                listing = Array.isArray(doc) ? doc : null;
            }
            return listing;
        }

        function tdUrlFor(thing) {
            return plan.url.replace(/\/+$/, "") + "/" + encodeURIComponent(thing);
        }

        async function getThing(thing) {
            const key = thing ?? "";
            if (consumed.has(key)) return consumed.get(key);
            const list = await getListing();
            let tdUrl;
            if (list === null) {
                tdUrl = plan.url;
            } else {
                if (thing === undefined) throw new Error('step needs "thing" when "url" is a listing');
                tdUrl = tdUrlFor(thing);
            }
            const td = await WoT.requestThingDescription(tdUrl);
            if (list === null && thing !== undefined && thing !== td.id && thing !== td.title) {
                const base = typeof td.base === "string" ? td.base : "";
                if (!base.replace(/\/+$/, "").endsWith("/" + thing)) {
                    throw new Error(`the TD at ${tdUrl} is ${td.id} (${td.title}), not '${thing}'`);
                }
            }
            if (credentials !== undefined) {
                if (td.id === undefined) throw new Error("TD has no id: node-wot keys credentials by TD id");
                servient.addCredentials({ [td.id]: credentials });
            }
            const ct = await WoT.consume(td);
            consumed.set(key, { td, ct });
            return consumed.get(key);
        }

        function streamKey(kind, thing, name) {
            return `${kind}|${thing ?? ""}|${name}`;
        }

        async function runStep(step) {
            const thing = step.thing;
            const name = step.name;
            switch (step.do) {
                case "list": {
                    const list = await getListing();
                    if (list === null) throw new Error(`${plan.url} is not a TD listing`);
                    return list.map((td) => ({ id: td.id, title: td.title, base: td.base }));
                }
                case "td": {
                    const { td } = await getThing(thing);
                    return {
                        id: td.id,
                        title: td.title,
                        base: td.base,
                        security: td.security,
                        securityDefinitions: td.securityDefinitions,
                        properties: Object.keys(td.properties ?? {}),
                        actions: Object.keys(td.actions ?? {}),
                        events: Object.keys(td.events ?? {}),
                    };
                }
                case "read": {
                    const { ct } = await getThing(thing);
                    return await outputValue(await ct.readProperty(name));
                }
                case "write": {
                    const { ct } = await getThing(thing);
                    await ct.writeProperty(name, step.value);
                    return null;
                }
                case "invoke": {
                    const { ct } = await getThing(thing);
                    const out = "value" in step ? await ct.invokeAction(name, step.value) : await ct.invokeAction(name);
                    return out === undefined ? null : await outputValue(out);
                }
                case "observe":
                case "subscribe": {
                    const { ct } = await getThing(thing);
                    const key = streamKey(step.do, thing, name);
                    if (streams.has(key) && !streams.get(key).closed) throw new Error(`already ${step.do}d: ${name}`);
                    const s = new Stream();
                    streams.set(key, s);
                    const listener = async (output) => {
                        try {
                            s.push(await outputValue(output));
                        } catch (e) {
                            s.fail(e);
                        }
                    };
                    const onError = (e) => s.fail(e);
                    s.subscription =
                        step.do === "observe"
                            ? await ct.observeProperty(name, listener, onError)
                            : await ct.subscribeEvent(name, listener, onError);
                    return "subscribed";
                }
                case "wait": {
                    const kind = step.kind ?? "observe";
                    const s = streams.get(streamKey(kind, thing, name));
                    if (s === undefined) throw new Error(`no ${kind} of ${name} to wait for`);
                    const start = s.cursor;
                    const errorsBefore = s.errors.length;
                    for (;;) {
                        if (step.value !== undefined) {
                            const idx = s.values.findIndex((v, i) => i >= start && deepEqual(v, step.value));
                            if (idx >= 0) {
                                s.cursor = idx + 1;
                                return s.values.slice(start, idx + 1);
                            }
                        } else {
                            const want = step.count ?? 1;
                            if (s.values.length - start >= want) {
                                s.cursor = start + want;
                                return s.values.slice(start, start + want);
                            }
                        }
                        if (s.errors.length > errorsBefore) {
                            const e = s.errors[s.errors.length - 1];
                            const err = new Error(`${kind} failed: ${e.error}`);
                            err.details = { received: s.values.slice(start), ...e };
                            throw err;
                        }
                        await s.changed();
                    }
                }
                case "unobserve":
                case "unsubscribe": {
                    const kind = step.do === "unobserve" ? "observe" : "subscribe";
                    const s = streams.get(streamKey(kind, thing, name));
                    if (s === undefined) throw new Error(`no ${kind} of ${name}`);
                    s.closed = true;
                    if (s.subscription) await s.subscription.stop();
                    return s.values;
                }
                case "sleep": {
                    await sleep(step.ms ?? step.value ?? 0);
                    return null;
                }
                default:
                    throw new Error(`unknown step "do": ${JSON.stringify(step.do)}`);
            }
        }

        for (let i = 0; i < plan.steps.length; i++) {
            currentStep = i;
            const step = plan.steps[i];
            const head = { step: i, do: step.do };
            if (step.thing !== undefined) head.thing = step.thing;
            if (step.name !== undefined) head.name = step.name;
            const ms = step.timeout ?? stepDefaultMs;
            try {
                const value = await withTimeout(runStep(step), ms, `${step.do} ${step.thing ?? ""} ${step.name ?? ""}`);
                emit({ ...head, ok: true, value: value === undefined ? null : value });
            } catch (e) {
                const out = { ...head, ok: false, ...describeError(e) };
                if (e && e.details) {
                    Object.assign(out, e.details);
                    out.error = e.message;
                }
                emit(out);
            }
        }
    } catch (e) {
        emit({ step: currentStep, do: "servient", ok: false, ...describeError(e) });
        exitCode = 1;
    } finally {
        for (const s of streams.values()) {
            s.closed = true;
            try {
                if (s.subscription) await withTimeout(s.subscription.stop(), 2000, "unsubscribe");
            } catch (_e) {
                // best effort
            }
        }
        try {
            if (started) await withTimeout(servient.shutdown(), 5000, "servient.shutdown");
        } catch (e) {
            process.stderr.write(`servient.shutdown failed: ${e.message}\n`);
        }
        clearTimeout(overall);
    }
    return exitCode;
}

main().then(
    (code) => {
        // long-poll sockets may still be open: leave explicitly once stdout is flushed
        process.stdout.write("", () => process.exit(code));
    },
    (e) => {
        emit({ step: -1, do: "consumer", ok: false, ...describeError(e) });
        process.exit(1);
    },
);
