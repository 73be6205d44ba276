// Test driver for tests/test_webapp_delegation.py: src/lib/delegation.js (and the token and
// sealed-message pieces a chain's holder uses) in Node, over the line protocol of driver.mjs:
// each stdin line {"id", "cmd", ...args}, each answer {"id", "ok": RESULT} or {"id", "error"}.

import { createInterface } from "node:readline";

if (!globalThis.crypto) globalThis.crypto = (await import("node:crypto")).webcrypto; // Node 18

const keys = await import("../src/lib/keys.js");
const tokens = await import("../src/lib/tokens.js");
const sealed = await import("../src/lib/sealed.js");
const dlg = await import("../src/lib/delegation.js");
const acl = await import("../src/lib/acl.js");
const { GatewayHttp } = await import("../src/lib/http.js");
const { getChain, putChain } = await import("../src/lib/store.js");

const { storeOf, keyOf } = await import("./stores.mjs");
const strip = (links) => links.map(({ text, ...rest }) => ({ ...rest, text }));

const COMMANDS = {
  importPem: async (a) => keys.describeKey(await keys.importPkcs8Pem(storeOf(a.store), a.pem, a)),
  createKey: async (a) => keys.describeKey(await keys.createKey(storeOf(a.store), a)),
  digest: async (a) => ({ digest: await dlg.digest(a.text) }),
  rootRef: async (a) => ({ ref: await dlg.rootRef(a.gatewayId, a.issuerId) }),
  parseLink: async (a) => dlg.parseLink(a.text),
  readChain: async (a) => strip(await dlg.readChain(a.chain, a)),
  grantBound: async (a) => dlg.grantBound(a.grant),
  /** Sign a link by key STORE; BOUND from a grant (GRANT) or the last link of PARENTCHAIN. */
  signLink: async (a) => {
    const key = await keyOf(a.store);
    let bound = a.bound || null;
    let parent = null;
    if (a.grant) bound = dlg.grantBound(a.grant);
    if (a.parentChain) {
      const links = await dlg.readChain(a.parentChain, { holder: key.id });
      bound = dlg.linkBound(links[links.length - 1]);
      parent = links[links.length - 1].text;
    }
    const { store, grant, parentChain, ...opts } = a;
    return { text: await dlg.signLink(key, { ...opts, bound, parent }) };
  },
  chainRights: async (a) => dlg.chainRights(await dlg.readChain(a.chain), a.tds, a.holder),
  token: async (a) => ({ token: await tokens.makeToken(await keyOf(a.store), a) }),
  /** A request sealed by STORE to RECIPIENTJWK with a `dlg` claim (or a refusal). */
  seal: async (a) => ({ token: await sealed.seal(a.body, { sender: await keyOf(a.store), recipientJwk: a.recipientJwk, typ: "request", now: a.now }) }),
  /** GET/POST through GatewayHttp with DELEGATION: what the gateway answered. */
  http: async (a) => {
    const gw = new GatewayHttp(a.base, await keyOf(a.store), a.gatewayId, { delegation: a.delegation });
    if (a.op === "invoke") return { out: await gw.invoke(a.thing, a.name) };
    return { out: await gw.read(a.thing, a.name) };
  },
  /** The owner's app re-signs an ACL: its payload text (delegate, revoked_delegations kept). */
  aclText: async (a) => ({ text: acl.aclPayloadText(a.acl) }),
  withGrant: async (a) => acl.withGrant(a.acl, a.grant, { now: a.now }),
  withoutSubject: async (a) => acl.withoutSubject(a.acl, a.sub, { now: a.now }),
  storeChain: async (a) => {
    await putChain(storeOf(a.store), a.gatewayId, a.links);
    return { links: await getChain(storeOf(a.store), a.gatewayId), other: await getChain(storeOf(a.store), "x".repeat(43)) };
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const { id, cmd, ...args } = JSON.parse(line);
  let answer;
  try {
    answer = { id, ok: await COMMANDS[cmd](args) };
  } catch (err) {
    answer = { id, error: { code: err.code || err.name, reason: err.reason || err.message, status: err.status } };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
