// The test drivers' key stores: in-memory stores named by `store` (default "main"), exactly as
// the app keeps keys in IndexedDB. Shared by driver.mjs, p2p.mjs and delegation.mjs.

const keys = await import("../src/lib/keys.js");
const { memoryStore } = await import("../src/lib/store.js");

const stores = new Map();

export const storeOf = (name = "main") => {
  if (!stores.has(name)) stores.set(name, memoryStore());
  return stores.get(name);
};

export const keyOf = async (name) => {
  const k = await keys.loadKey(storeOf(name));
  if (!k) throw new Error(`no key in store ${name || "main"}`);
  return k;
};
