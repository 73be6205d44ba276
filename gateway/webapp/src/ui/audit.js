// Audit screen (owner): the newest audit records, filtered by person (key) and Thing,
// allowed or refused, from GET /audit. Every field is shown as text (peers write them).

import { field, fill, h, note, shortId, when } from "./dom.js";
import { tdName } from "./things.js";
import { describe } from "./words.js";

const LIMITS = [50, 100, 200, 500];

function option(value, label, selected) {
  return h("option", { value, selected: selected || undefined }, label);
}

function recordItem(r, names) {
  const who = names.get(r.subject) || (r.subject === "-" ? "no valid token" : shortId(r.subject));
  const what = [r.op, r.thing, r.affordance].filter(Boolean).join(" ");
  return h("li", { class: `rec ${r.allowed ? "allowed" : "refused"}` },
    h("p", { class: "rec-head" },
      h("span", { class: "badge" }, r.allowed ? "allowed" : "refused"), " ",
      h("time", {}, when(r.ts)), " — ", h("span", { title: r.subject }, who)),
    h("p", {}, what, r.binding ? ` (via ${r.binding})` : ""),
    h("p", { class: "hint" }, [r.reason, r.rule && `rule ${r.rule}`, r.detail].filter(Boolean).join(" · ")));
}

export async function show(el, ctx) {
  if (!ctx.gw) { fill(el, note("info", "Create or import a key first (Key screen).")); return undefined; }
  const rights = await ctx.loadRights().catch(() => null);
  if (!rights || rights.role !== "owner") {
    fill(el, note("info", "Only the owner key can read the audit log."));
    return undefined;
  }
  const tds = await ctx.loadTds().catch(() => []);
  const acl = await ctx.gw.editableAcl().catch(() => null);
  const names = new Map([[ctx.info.id, "you (owner)"], ["system", "the gateway"]]);
  const people = [["", "everyone"], [ctx.info.id, "you (owner)"], ["system", "the gateway"], ["-", "no valid token"]];
  for (const g of (acl && acl.doc.grants) || []) people.push([g.sub, `key ${shortId(g.sub)}`]);

  const person = h("select", {}, people.map(([v, l]) => option(v, l)));
  const other = h("input", { type: "text", maxlength: 128, spellcheck: "false", autocomplete: "off", pattern: "[A-Za-z0-9_.:\\-]+" });
  const thing = h("select", {}, option("", "all Things"), tds.map((td) => option(tdName(td), td.title || tdName(td))));
  const outcome = h("select", {}, option("", "allowed and refused"), option("true", "allowed"), option("false", "refused"));
  const limit = h("select", {}, LIMITS.map((n) => option(String(n), String(n), n === 50)));
  const list = h("div", { "aria-live": "polite" });

  const load = async () => {
    const params = { limit: limit.value };
    const subject = other.value.trim() || person.value;
    if (subject) params.subject = subject;
    if (thing.value) params.thing = thing.value;
    if (outcome.value) params.allowed = outcome.value;
    fill(list, note("info", "Loading…"));
    try {
      const res = await ctx.gw.audit(params);
      const recs = (res && res.records) || [];
      fill(list,
        h("p", { class: "hint" }, `${recs.length} record(s), newest first${res.scanned ? ` (searched the newest ${res.scanned})` : ""}.`),
        h("ul", { class: "records" }, recs.map((r) => recordItem(r, names))));
    } catch (err) {
      fill(list, note("error", `Cannot read the audit log: ${describe(err)}`));
    }
  };
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); load(); } },
    field("Person", person), field("…or key id", other, "Overrides the list when filled."),
    field("Thing", thing), field("Outcome", outcome), field("Newest", limit),
    h("button", { type: "submit", class: "primary" }, "Show"));
  fill(el, form, list);
  await load();
  return undefined;
}
