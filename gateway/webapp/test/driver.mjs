// Test driver: the core library (src/lib/) in Node, driven by tests/test_webapp_lib.py over a
// line protocol. Each stdin line is {"id", "cmd", ...args}; each answer one stdout line
// {"id", "ok": RESULT} or {"id", "error": {code, reason}}. Keys live in in-memory stores
// (named by `store`, default "main"), exactly as the app keeps them in IndexedDB.

import { createInterface } from "node:readline";

if (!globalThis.crypto) globalThis.crypto = (await import("node:crypto")).webcrypto; // Node 18

const keys = await import("../src/lib/keys.js");
const tokens = await import("../src/lib/tokens.js");
const acl = await import("../src/lib/acl.js");
const sealed = await import("../src/lib/sealed.js");
const { GatewayHttp } = await import("../src/lib/http.js");


const { storeOf, keyOf } = await import("./stores.mjs");
const replays = new Map();
const streams = new Map(); // observe: id -> {values, errors, stop}

const COMMANDS = {
  createKey: async (a) => keys.describeKey(await keys.createKey(storeOf(a.store), a)),
  importPem: async (a) => keys.describeKey(await keys.importPkcs8Pem(storeOf(a.store), a.pem, a)),
  exportBackup: async (a) => ({ text: await keys.exportBackup(await keyOf(a.store), a.passphrase) }),
  importBackup: async (a) => keys.describeKey(await keys.importBackup(storeOf(a.store), a.text, a.passphrase, a)),
  keyId: async (a) => ({ id: await keys.keyId(a.jwk) }),
  /** What is stored: no readable private key anywhere, only non-extractable CryptoKeys. */
  storeInfo: async (a) => {
    const rec = await storeOf(a.store).get(keys.RECORD);
    const json = JSON.stringify(rec);
    return {
      fields: Object.keys(rec).sort(),
      signKey: { type: rec.signKey.type, extractable: rec.signKey.extractable, usages: rec.signKey.usages, alg: rec.signKey.algorithm.name },
      ecdhKey: { type: rec.ecdhKey.type, extractable: rec.ecdhKey.extractable, usages: rec.ecdhKey.usages, alg: rec.ecdhKey.algorithm.name },
      hasD: json.includes('"d"'),
      backup: rec.backup,
    };
  },
  token: async (a) => ({ token: await tokens.makeToken(await keyOf(a.store), a) }),
  /** Edit the ACL answer of GET /acl (or none installed) with STEPS, then sign it. */
  aclEdit: async (a) => {
    const owner = await keyOf(a.store);
    let doc = await acl.parseAcl(a.answer || { version: null, acl: null, jws: null }, { owner, gatewayId: a.gatewayId });
    for (const { revoke, preset, jwk, ...opts } of a.steps) {
      if (revoke) doc = acl.withoutSubject(doc, revoke, { now: a.now });
      else if (preset) doc = acl.withGrant(doc, await acl.presetGrant(preset, jwk, opts), { now: a.now });
      else doc = acl.withGrant(doc, await acl.makeGrant(jwk, opts), { now: a.now });
    }
    if (a.version !== undefined) doc = { ...doc, version: a.version };
    return { jws: await acl.signAcl(owner, doc), payload: doc, text: acl.aclPayloadText(doc) };
  },
  aclVerify: async (a) => acl.verifyAcl(a.jws, { owner: a.ownerJwk, gatewayId: a.gatewayId }),
  checkSchedule: async (a) => acl.checkSchedule(a.spec),
  seal: async (a) => ({ token: await sealed.seal(a.body, { ...a, sender: await keyOf(a.store) }) }),
  open: async (a) => {
    if (a.replay && !replays.has(a.store)) replays.set(a.store, new sealed.ReplayCache());
    return sealed.openSealed(a.token, { recipient: await keyOf(a.store), now: a.now, replay: a.replay ? replays.get(a.store) : null });
  },
  http: async (a) => {
    const gw = new GatewayHttp(a.base, await keyOf(a.store), a.gatewayId);
    return { value: await gw[a.method](...(a.args || [])) };
  },
  observe: async (a) => {
    const gw = new GatewayHttp(a.base, await keyOf(a.store), a.gatewayId);
    const s = { values: [], errors: [] };
    s.stop = gw.observe(a.thing, a.prop, (v, meta) => s.values.push({ v, ...meta }), (e) => s.errors.push({ ...e.toJSON(), retrying: e.retrying }), a);
    streams.set(a.name, s);
    return {};
  },
  streamState: async (a) => {
    const s = streams.get(a.name);
    if (a.stop) s.stop();
    return { values: s.values, errors: s.errors };
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const msg = JSON.parse(line);
  let out;
  try {
    const fn = COMMANDS[msg.cmd];
    if (!fn) throw new Error(`unknown command ${msg.cmd}`);
    out = { id: msg.id, ok: (await fn(msg)) ?? null };
  } catch (err) {
    out = { id: msg.id, error: { code: err.code || err.name, reason: err.reason || err.message, status: err.status } };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
