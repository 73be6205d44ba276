// Where the key lives: a tiny async key-value interface, so the rest of the library never
// touches IndexedDB. Values are structured-cloneable: a non-extractable CryptoKey is stored
// as the CryptoKey object itself (the browser keeps the key material; script cannot read it).
//
//   store.get(name) -> value | undefined      store.put(name, value)      store.delete(name)

/** An in-memory store (Node tests, or a browser session that must not persist anything). */
export function memoryStore() {
  const map = new Map();
  return {
    async get(name) { return map.get(name); },
    async put(name, value) { map.set(name, value); },
    async delete(name) { map.delete(name); },
  };
}

const DB_NAME = "streembit-webapp";
const DB_STORE = "keys";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** The browser store: one IndexedDB database of this origin, one object store. */
export function idbStore(dbName = DB_NAME) {
  let db = null;
  const open = async () => {
    if (db) return db;
    if (!globalThis.indexedDB) throw new Error("IndexedDB is not available in this browser");
    const req = globalThis.indexedDB.open(dbName, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE);
    db = await request(req);
    return db;
  };
  const run = async (mode, fn) => {
    const tx = (await open()).transaction(DB_STORE, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
    });
    const result = await request(fn(tx.objectStore(DB_STORE)));
    await done; // a write is durable only once its transaction completed
    return result;
  };
  return {
    get: (name) => run("readonly", (s) => s.get(name)),
    put: (name, value) => run("readwrite", (s) => s.put(value, name)),
    delete: (name) => run("readwrite", (s) => s.delete(name)),
  };
}

// ----------------------------------------------------------------- received chains
// A delegation chain this key received (docs/acl.md §6), kept per gateway: record
// "dlg:GATEWAY_ID" -> {v: 1, links: [LINK, ...] (first link first), saved: unix seconds}.
// Links are signed statements, not secrets: a chain is useless without this key.
const chainName = (gatewayId) => `dlg:${gatewayId}`;

/** The links of the chain kept for GATEWAYID, or null. */
export async function getChain(store, gatewayId) {
  const rec = await store.get(chainName(gatewayId));
  return rec && rec.v === 1 && Array.isArray(rec.links) && rec.links.length ? [...rec.links] : null;
}

/** Keep LINKS (checked by the caller: delegation.js readChain) for GATEWAYID. */
export async function putChain(store, gatewayId, links) {
  await store.put(chainName(gatewayId), { v: 1, links: [...links], saved: Math.floor(Date.now() / 1000) });
}

/** Forget the chain kept for GATEWAYID. */
export async function deleteChain(store, gatewayId) {
  await store.delete(chainName(gatewayId));
}
