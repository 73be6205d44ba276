#!/usr/bin/env node
/*
 * mqtt_consumer.js: consume a Thing through the W3C WoT MQTT binding with Eclipse Thingweb
 * node-wot (@node-wot/core 0.9.2, @node-wot/binding-mqtt 0.8.16), as a WoT consumer would.
 *
 * Usage: node mqtt_consumer.js @plan.json   (or the plan JSON as the argument)
 * Plan: {"td": {...}, "broker": {"username", "password", "ca": "<PEM file>"},
 *        "steps": [{"do": "read", "name": P}, {"do": "observe", "name": P, "count": N},
 *                  {"do": "subscribe", "name": E, "count": N}], "timeout": 20000}
 * The broker account goes to node-wot's MqttsClientFactory (the TD's MQTT forms carry no
 * form-level security: node-wot 0.9 uses only the Thing-level scheme). observe/subscribe print
 * "ready" lines once subscribed (the caller then makes the changes), then the values.
 * Output: one JSON line per step event: {"step", "do", "name", "ok", "value"|"error"}.
 */
"use strict";
const fs = require("fs");
const util = require("util");
const { Servient } = require("@node-wot/core");
const { MqttsClientFactory, MqttClientFactory } = require("@node-wot/binding-mqtt");

for (const level of ["log", "info", "warn", "debug"]) {
    console[level] = (...args) => process.stderr.write(util.format(...args) + "\n");
}
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const arg = process.argv[2] || "-";
const plan = JSON.parse(arg.startsWith("@") ? fs.readFileSync(arg.slice(1), "utf8") : arg === "-" ? fs.readFileSync(0, "utf8") : arg);

async function main() {
    const servient = new Servient();
    const b = plan.broker || {};
    const config = { username: b.username, password: b.password, rejectUnauthorized: true };
    if (b.ca) config.ca = fs.readFileSync(b.ca);
    servient.addClientFactory(new MqttsClientFactory(config));
    servient.addClientFactory(new MqttClientFactory());
    const WoT = await servient.start();
    const timer = setTimeout(() => { emit({ error: "timeout" }); process.exit(3); }, plan.timeout || 20000);
    try {
        const thing = await WoT.consume(plan.td);
        for (const [i, step] of plan.steps.entries()) {
            const base = { step: i, do: step.do, name: step.name };
            try {
                if (step.do === "read") {
                    const out = await thing.readProperty(step.name);
                    emit({ ...base, ok: true, value: await out.value() });
                } else if (step.do === "observe" || step.do === "subscribe") {
                    const values = [];
                    let done;
                    const finished = new Promise((resolve) => (done = resolve));
                    const listener = async (out) => {
                        values.push(await out.value());
                        if (values.length >= (step.count || 1)) done();
                    };
                    const sub = step.do === "observe"
                        ? await thing.observeProperty(step.name, listener, (e) => emit({ ...base, ok: false, error: String(e) }))
                        : await thing.subscribeEvent(step.name, listener, (e) => emit({ ...base, ok: false, error: String(e) }));
                    emit({ ...base, ok: true, value: "ready" });
                    await finished;
                    await sub.stop();
                    emit({ ...base, ok: true, value: values });
                }
            } catch (e) {
                emit({ ...base, ok: false, error: String(e && e.message ? e.message : e) });
            }
        }
    } finally {
        clearTimeout(timer);
        await servient.shutdown();
    }
}
main().then(() => process.exit(0), (e) => { emit({ error: String(e) }); process.exit(1); });
