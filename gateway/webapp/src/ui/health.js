// Health screen: the gateway's state from GET /status.json (owner: everything; a guest: the
// header and what its grant lets it read). Refreshed by hand, not polled.

import { fill, h, note, shortId, when } from "./dom.js";
import { show as showValue } from "./controls.js";
import { describe } from "./words.js";

function duration(s) {
  if (!Number.isFinite(s)) return "—";
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${hr} h` : hr ? `${hr} h ${m} min` : `${m} min`;
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

function thingItem(t) {
  const props = Object.entries(t.properties || {});
  const faults = t.faults && (Array.isArray(t.faults) ? t.faults.length : Object.keys(t.faults).length);
  return h("li", { class: "card" },
    h("h4", {}, t.title || t.name),
    faults ? h("p", { class: "note error" }, `Faults: ${JSON.stringify(t.faults)}`) : null,
    kv(props.map(([k, v]) => [k, v && "error" in v ? `unreadable (${v.error})` : showValue(v && v.value)])));
}

export async function show(el, ctx) {
  if (!ctx.gw) { fill(el, note("info", "Create or import a key first (Key screen).")); return undefined; }
  if (ctx.gw.away) {
    fill(el, note("info", "The health screen needs the gateway's own network: away from home the app reaches the gateway over P2P, which has no status query."),
      h("p", { class: "hint" }, `Connection: ${ctx.gw.transport()}.`));
    return undefined;
  }
  fill(el, note("info", "Loading…"));
  let st;
  try {
    st = await ctx.gw.status();
  } catch (err) {
    fill(el, note("error", `Cannot read the gateway's status: ${describe(err)}`));
    return undefined;
  }
  const g = st.gateway || {};
  fill(el,
    g.audit_healthy === false ? note("error", "The audit log is failing: the gateway refuses every request until it recovers.") : null,
    g.config_changed ? note("info", `Configuration: ${g.config_changed}`) : null,
    kv([
      ["Name", g.name], ["Gateway id", g.id], ["Version", g.version],
      ["Up for", duration(g.uptime_s)], ["Started", Number.isFinite(g.started) ? when(g.started) : g.started],
      ["Owner", g.owner ? shortId(g.owner) : "none (not provisioned)"],
      ["ACL version", g.acl_version ?? "none"], ["Grants", g.grants],
      ["Audit log", g.audit_healthy === undefined ? null : g.audit_healthy ? "healthy" : "FAILING"],
      ["HTTP", g.http], ["P2P", g.ws], ["DHT", g.dht], ["DHT peers", g.dht_peers],
      ["Viewer", st.viewer ? `${st.viewer.role} (${st.viewer.scope})` : null],
      ["Requests", st.counters ? `${st.counters.requests} (denied ${st.counters.denied}, errors ${st.counters.errors})` : null],
    ]),
    h("h3", {}, "Things"),
    h("ul", { class: "cards" }, (st.things || []).map(thingItem)),
    h("p", { class: "hint" }, `Read at ${when(Date.now() / 1000)}.`),
    h("button", { type: "button", onclick: () => ctx.go("health", true) }, "Refresh"));
  return undefined;
}
