/*
 * fake_gateway.js: a small stand-in for the Streembit gateway's HTTP binding, written to the
 * gateway's HTTP contract, used only by selftest.js to prove consumer.js (and node-wot) against
 * that contract before / without the real gateway:
 *   GET /things (array of TDs), GET /things/{name|id}, GET /.well-known/wot;
 *   TD base {http}/things/{name}/ with relative hrefs; one Thing-level bearer scheme;
 *   properties/P (GET, PUT), properties/P/observe (long-poll, HEAD answered at once),
 *   actions/A (POST), events/E (long-poll);
 *   401 / 403 with {"error": code, "reason": text}.
 * Tokens are opaque strings mapped to grants (no JWT checking here: that is the gateway's job).
 */
"use strict";

const http = require("http");

function tdFor(base, name, kind) {
    const common = {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "@type": "Thing",
        id: `urn:streembit:fake-gw:${name}`,
        title: name,
        base: `${base}/things/${name}/`,
        securityDefinitions: { bearer_sc: { scheme: "bearer", in: "header", alg: "ES256", format: "jwt" } },
        security: ["bearer_sc"],
    };
    const prop = (p, schema, writable) => ({
        ...schema,
        readOnly: !writable,
        observable: true,
        forms: [
            {
                href: `properties/${p}`,
                op: writable ? ["readproperty", "writeproperty"] : ["readproperty"],
                contentType: "application/json",
            },
            { href: `properties/${p}/observe`, op: ["observeproperty"], subprotocol: "longpoll", contentType: "application/json" },
        ],
    });
    if (kind === "lock") {
        return {
            ...common,
            properties: { state: prop("state", { type: "string", enum: ["locked", "unlocked", "jammed"] }, false) },
            actions: {
                lock: { forms: [{ href: "actions/lock", op: ["invokeaction"], contentType: "application/json" }] },
                unlock: { forms: [{ href: "actions/unlock", op: ["invokeaction"], contentType: "application/json" }] },
            },
            events: Object.fromEntries(
                ["locked", "unlocked", "jammed"].map((e) => [
                    e,
                    { data: { type: "object" }, forms: [{ href: `events/${e}`, op: ["subscribeevent"], subprotocol: "longpoll" }] },
                ]),
            ),
        };
    }
    return {
        ...common,
        properties: {
            temperature: prop("temperature", { type: "number", unit: "degree Celsius" }, false),
            targetTemperature: prop("targetTemperature", { type: "number", minimum: 5, maximum: 30 }, true),
            mode: prop("mode", { type: "string", enum: ["off", "heat"] }, true),
            heating: prop("heating", { type: "boolean" }, false),
        },
    };
}

const OP_BY = {
    "GET property": "readproperty",
    "PUT property": "writeproperty",
    "GET observe": "observeproperty",
    "HEAD observe": "observeproperty",
    "POST action": "invokeaction",
    "GET event": "subscribeevent",
    "HEAD event": "subscribeevent",
};

/**
 * Start the fake gateway on 127.0.0.1 (port 0 = any).
 * grants: {token: {thingName: [ops]}}, or {token: "expired"} for a token answered with 401.
 */
async function startFakeGateway({ port = 0, grants = {} } = {}) {
    const things = {
        "front-door": { kind: "lock", values: { state: "locked" } },
        "living-room": { kind: "thermostat", values: { temperature: 19.25, targetTemperature: 20, mode: "heat", heating: true } },
    };
    const waiters = []; // {thing, key, res}
    const log = [];
    let base;

    function notify(thing, key, value) {
        for (const w of waiters.splice(0)) {
            if (w.thing === thing && w.key === key) {
                send(w.res, 200, value);
            } else {
                waiters.push(w);
            }
        }
    }
    function setValue(thing, prop, value) {
        things[thing].values[prop] = value;
        notify(thing, `p:${prop}`, value);
    }
    function send(res, status, body) {
        const text = body === undefined ? "" : JSON.stringify(body);
        res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
        res.end(text);
    }
    function deny(res, status, error, reason) {
        if (status === 401) res.setHeader("WWW-Authenticate", 'Bearer realm="fake-gateway"');
        send(res, status, { error, reason });
    }
    function readBody(req) {
        return new Promise((resolve, reject) => {
            const chunks = [];
            req.on("data", (c) => chunks.push(c));
            req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
            req.on("error", reject);
        });
    }
    function findThing(idOrName) {
        if (things[idOrName]) return idOrName;
        return Object.keys(things).find((n) => tdFor(base, n, things[n].kind).id === idOrName);
    }

    const server = http.createServer(async (req, res) => {
        const url = new URL(req.url, base);
        const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
        const entry = { method: req.method, path: url.pathname, chunked: req.headers["transfer-encoding"] === "chunked" };
        log.push(entry);
        try {
            if (req.method === "GET" && (url.pathname === "/things" || url.pathname === "/things/")) {
                return send(res, 200, Object.keys(things).map((n) => tdFor(base, n, things[n].kind)));
            }
            if (req.method === "GET" && url.pathname === "/.well-known/wot") {
                return send(res, 200, { things: `${base}/things` });
            }
            if (parts[0] !== "things" || parts.length < 2) return deny(res, 404, "not_found", "no such resource");
            const name = findThing(parts[1]);
            if (name === undefined) return deny(res, 404, "not_found", "no such Thing");
            const td = tdFor(base, name, things[name].kind);
            if (parts.length === 2) {
                if (req.method !== "GET") return deny(res, 405, "method_not_allowed", req.method);
                res.setHeader("Content-Type", "application/td+json");
                return send(res, 200, td);
            }
            const [, , section, aff, sub] = parts;
            let kind;
            if (section === "properties" && td.properties?.[aff] && sub === undefined) kind = "property";
            else if (section === "properties" && td.properties?.[aff] && sub === "observe") kind = "observe";
            else if (section === "actions" && td.actions?.[aff] && sub === undefined) kind = "action";
            else if (section === "events" && td.events?.[aff] && sub === undefined) kind = "event";
            else return deny(res, 404, "not_found", "no such affordance");
            const op = OP_BY[`${req.method} ${kind}`];
            if (op === undefined) return deny(res, 405, "method_not_allowed", `${req.method} on ${kind}`);
            // authenticate, then authorise
            const auth = req.headers.authorization ?? "";
            const m = /^Bearer (\S+)$/.exec(auth);
            entry.auth = m ? "bearer" : auth ? "other" : "none";
            if (!m) return deny(res, 401, "missing_token", "a bearer token is required");
            const grant = grants[m[1]];
            if (grant === undefined) return deny(res, 401, "unknown_key", "token not signed by a known key");
            if (grant === "expired") return deny(res, 401, "token_expired", "token has expired");
            const allowed = grant[name] ?? [];
            if (!allowed.includes(op)) return deny(res, 403, "op_not_granted", `${op} not granted on ${name}`);
            entry.op = op;
            if (req.method === "HEAD") {
                res.writeHead(200);
                return res.end();
            }
            if (kind === "property") {
                if (req.method === "GET") return send(res, 200, things[name].values[aff]);
                const body = JSON.parse(await readBody(req));
                const schema = td.properties[aff];
                if (schema.readOnly) return deny(res, 405, "read_only", `${aff} is read-only`);
                if (
                    (schema.minimum !== undefined && body < schema.minimum) ||
                    (schema.maximum !== undefined && body > schema.maximum)
                ) {
                    return deny(res, 400, "out_of_range", `${aff} must be within ${schema.minimum}..${schema.maximum}`);
                }
                setValue(name, aff, body);
                res.writeHead(204);
                return res.end();
            }
            if (kind === "action") {
                await readBody(req);
                const state = aff === "lock" ? "locked" : "unlocked";
                setValue(name, "state", state);
                notify(name, `e:${state}`, { state, by: "fake" });
                return send(res, 200, { state });
            }
            // long-poll: observe (property) or event; answered on the next change
            const key = kind === "observe" ? `p:${aff}` : `e:${aff}`;
            const w = { thing: name, key, res };
            waiters.push(w);
            req.on("close", () => {
                const i = waiters.indexOf(w);
                if (i >= 0) waiters.splice(i, 1);
            });
        } catch (e) {
            deny(res, 500, "internal", e.message);
        }
    });
    server.keepAliveTimeout = 1000;
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", resolve);
    });
    base = `http://127.0.0.1:${server.address().port}`;
    return {
        url: base,
        log,
        setValue,
        close: () =>
            new Promise((resolve) => {
                for (const w of waiters.splice(0)) w.res.destroy();
                server.closeAllConnections?.();
                server.close(() => resolve());
            }),
    };
}

module.exports = { startFakeGateway };
