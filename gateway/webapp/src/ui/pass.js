// "Pass on access" screen (docs/acl.md §6, docs/webapp.md "Passing access on"):
// - the access this key RECEIVED on this gateway (a delegation chain): what it allows, until
//   when; import one (scan its QR code or paste its text) or forget it;
// - PASS ON what this key holds (its own grant when the owner allowed `delegate`, or the chain
//   it received when that may go further): scan the other person's key QR, choose Things,
//   operations, an end (at most 30 days, not after one's own), an optional weekly schedule,
//   a use count and how far it may go on; the link is signed here, offline, with this
//   browser's key (lib/delegation.js signLink, which refuses anything wider than what is held)
//   and shown as a QR code and as text for the other person's app.

import { copy, field, fill, h, note, shortId, uid, when } from "./dom.js";
import * as core from "./core.js";
import { keyField, scheduleFields, unix } from "./grantform.js";
import { parsePublicKey } from "./pubkey.js";
import { qrSvg } from "./qr.js";
import { tdName } from "./things.js";
import { describe } from "./words.js";

const OP_WORDS = {
  invokeaction: "use its actions (e.g. unlock)",
  readproperty: "read its values",
  observeproperty: "watch its values live",
  subscribeevent: "receive its events",
  writeproperty: "change its settings",
};
const OP_ORDER = Object.keys(OP_WORDS);
const DEFAULT_DAYS = 7;
const QR_MAX_CHARS = 2300; // a QR code (error correction M) holds up to 2331 bytes

const local = (ts) => { // unix seconds -> the value of an <input type=datetime-local>
  const d = new Date(ts * 1000);
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 16);
};
const thingWords = (names, titles) => (names.includes("*") ? "all Things" : names.map((n) => titles.get(n) || n).join(", "));

/** What this key may pass on now: {bound, parent, prefix} or {why} in words. */
async function passable(ctx) {
  if (ctx.chain) {
    const last = ctx.chain[ctx.chain.length - 1];
    if (last.depth < 1) return { why: "The access passed on to you may not be passed on further." };
    return { bound: core.linkBound(last), parent: last.text, prefix: ctx.chain.map((l) => l.text) };
  }
  let rights;
  try {
    rights = await ctx.loadRights();
  } catch (err) {
    return { why: err.code === "unauthenticated" ? "This key holds no access of its own on this gateway to pass on." : `This key's rights cannot be read: ${describe(err)}` };
  }
  if (rights.role === "owner") return { why: "You are the owner: add people on the Owner screen instead." };
  if (!rights.grant || !(rights.grant.delegate > 0)) {
    return { why: "Your access may not be passed on: the owner decides that when granting it (\"May pass it on\")." };
  }
  return { bound: core.grantBound(rights.grant), parent: null, prefix: [] };
}

function received(ctx, titles, out) {
  if (!ctx.chain) return h("p", { class: "hint" }, "None: this key uses its own access (if any).");
  const s = core.chainSummary(ctx.chain);
  const ended = s.exp <= Date.now() / 1000;
  const forget = h("button", { type: "button", class: "danger" }, "Forget this access");
  forget.addEventListener("click", async () => {
    try {
      await ctx.setChain(null);
      await ctx.go("pass", true);
    } catch (err) {
      fill(out, note("error", describe(err)));
    }
  });
  return h("div", { class: "chain" },
    h("dl", {},
      h("dt", {}, "From"), h("dd", {}, s.from.map(shortId).join(" → ")),
      h("dt", {}, "Things"), h("dd", {}, thingWords(s.things, titles)),
      h("dt", {}, "May"), h("dd", {}, s.ops.map((op) => OP_WORDS[op] || op).join(", ")),
      h("dt", {}, "Valid"), h("dd", { class: "chain-exp" }, `${s.nbf > Date.now() / 1000 ? `from ${when(s.nbf)} ` : ""}until ${when(s.exp)}${ended ? " (ended)" : ""}`),
      s.schedules.length ? [h("dt", {}, "Schedule"), h("dd", {}, s.schedules.join(" and "))] : null,
      s.uses !== null ? [h("dt", {}, "Uses"), h("dd", {}, `at most ${s.uses} in all`)] : null,
      h("dt", {}, "May pass it on"), h("dd", {}, s.depth ? `${s.depth} more step(s)` : "no")),
    h("p", { class: "hint" }, "It goes with every request to this gateway's Things; the gateway checks it each time, and the owner can end it at any moment."),
    forget);
}

function importForm(ctx, out) {
  const access = keyField(out, {
    label: "Access text",
    hint: "What the person who passes access on to you shows under their QR code (one or more links separated by ~).",
    scanLabel: "Scan the access QR code",
    maxlength: 4 * 4097,
    what: "the text",
  });
  const form = h("form", {
    class: "chain-import",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await ctx.setChain(access.text.value);
        ctx.say("Access received: it is used for this gateway's Things now.");
        await ctx.go("things", true);
      } catch (err) {
        fill(out, note("error", `Not imported: ${describe(err)}`));
      }
    },
  },
  access.node,
  h("button", { type: "submit", class: "primary" }, "Use this access"));
  return { node: form, stop: access.stop };
}

function passForm(ctx, can, things, out, result) {
  const { bound } = can;
  const key = keyField(out, {
    label: "Their public key",
    hint: "The JSON under the QR code on their app's Key screen, or a PEM public key.",
    scanLabel: "Scan their key's QR code",
  });
  const allowed = bound.things.includes("*") ? things : things.filter((t) => bound.things.includes(t.name));
  const boxes = allowed.map((t) => ({
    name: t.name,
    box: h("input", { type: "checkbox", id: uid("t"), value: t.name, checked: ctx.passThing === t.name || allowed.length === 1 }),
  }));
  const thingSet = h("fieldset", {}, h("legend", {}, "Things"),
    boxes.length ? boxes.map((b, i) => h("div", { class: "check" }, b.box, h("label", { for: b.box.id }, allowed[i].title)))
      : h("p", { class: "hint" }, "None of your Things is on this gateway now."));
  const opBoxes = OP_ORDER.filter((op) => bound.ops.includes(op)).map((op) => ({
    op, box: h("input", { type: "checkbox", id: uid("o"), value: op, checked: true }),
  }));
  const opSet = h("fieldset", {}, h("legend", {}, "They may"),
    opBoxes.map((b) => h("div", { class: "check" }, b.box, h("label", { for: b.box.id }, OP_WORDS[b.op]))));

  const now = Math.floor(Date.now() / 1000);
  const latest = Math.min(now + core.MAX_LIFETIME_S, bound.exp ?? Infinity);
  const until = h("input", { type: "datetime-local", value: local(Math.min(now + DEFAULT_DAYS * 86400, latest)), max: local(latest), required: true });
  const sched = scheduleFields(bound.schedule ? `Weekly schedule (inside yours: ${bound.schedule})` : "Weekly schedule (optional)");
  const uses = h("input", { type: "number", min: 1, max: bound.uses ?? 1000000, step: 1, inputmode: "numeric" });
  const depth = h("select", {}, Array.from({ length: bound.depth }, (_, i) => h("option", { value: String(i) }, i ? `Yes, ${i} step(s)` : "No")));

  const form = h("form", {
    class: "pass-form",
    onsubmit: async (e) => {
      e.preventDefault();
      fill(result);
      try {
        const { id } = await parsePublicKey(key.text.value);
        const picked = boxes.filter((b) => b.box.checked).map((b) => b.name);
        if (!picked.length) throw new Error("choose at least one Thing");
        const ops = opBoxes.filter((b) => b.box.checked).map((b) => b.op);
        if (!ops.length) throw new Error("choose at least one thing they may do");
        const exp = unix(until.value);
        if (exp === null) throw new Error("choose when it ends");
        const n = uses.value.trim() ? Number(uses.value) : null;
        const link = await core.signLink(ctx.key, {
          to: id,
          gatewayId: ctx.gatewayId,
          things: picked,
          affordances: bound.affordances.includes("*") ? ["*"] : bound.affordances,
          ops,
          exp,
          schedule: sched.spec(),
          uses: n,
          depth: Number(depth.value),
          parent: can.parent,
          bound,
        });
        const chain = [...can.prefix, link].join(core.SEPARATOR);
        const box = h("textarea", { rows: 6, readonly: true, spellcheck: "false", class: "chain-text" }, chain);
        box.value = chain;
        const copyBtn = h("button", {
          type: "button",
          onclick: async () => fill(out, (await copy(chain)) ? note("ok", "Access text copied.") : note("error", "Could not copy: select the text and copy it by hand.")),
        }, "Copy the access text");
        fill(result,
          note("ok", `Signed: key ${shortId(id)} may ${ops.map((op) => OP_WORDS[op]).join(", ")} on ${thingWords(picked, new Map(things.map((t) => [t.name, t.title])))} until ${when(exp)}.`),
          chain.length <= QR_MAX_CHARS ? qrSvg(chain, "QR code of the access passed on") : h("p", { class: "hint" }, "Too long for a QR code: send the text."),
          field("Access text (for their app: Pass on → Access text)", box),
          copyBtn);
        ctx.passThing = null;
      } catch (err) {
        fill(out, note("error", `Not signed: ${describe(err)}`));
      }
    },
  },
  key.node, thingSet, opSet,
  field("Until", until, `At most 30 days${bound.exp ? `, and not after your own access ends (${when(bound.exp)})` : ""}. This device's local time.`),
  sched.node,
  field("Number of uses (optional)", uses, bound.uses ? `At most ${bound.uses}.` : "Empty: no limit. Each allowed request counts once."),
  bound.depth > 1 ? field("They may pass it on", depth) : null,
  h("button", { type: "submit", class: "primary" }, "Sign and show"), out, result);
  return { node: form, stop: key.stop };
}

export async function show(el, ctx) {
  if (!ctx.gw) {
    fill(el, note("info", "Create or import a key first (Key screen)."));
    return undefined;
  }
  fill(el, note("info", "Loading…"));
  let tds = [];
  try {
    tds = await ctx.loadTds();
  } catch { /* names only, below */ }
  const things = tds.map((td) => ({ name: tdName(td), title: td.title || tdName(td) }));
  const titles = new Map(things.map((t) => [t.name, t.title]));
  const out = h("div", { class: "messages", "aria-live": "polite" });
  const passOut = h("div", { class: "messages", "aria-live": "polite" });
  const result = h("div", { class: "pass-result" });
  const imp = importForm(ctx, out);
  const can = await passable(ctx);
  const form = can.bound ? passForm(ctx, can, things, passOut, result) : null;
  fill(el,
    h("section", { "aria-labelledby": "h-received" }, h("h3", { id: "h-received" }, "Access passed on to you"),
      received(ctx, titles, out), out,
      h("details", { open: !ctx.chain }, h("summary", {}, ctx.chain ? "Receive another access (replaces it)" : "Receive access"), imp.node)),
    h("section", { "aria-labelledby": "h-give" }, h("h3", { id: "h-give" }, "Pass your access on"),
      form ? [h("p", { class: "hint" }, "Signed here, offline, with this browser's key. It can only be narrower than what you hold; the owner can end it at any moment."), form.node]
        : note("info", can.why)));
  return () => { imp.stop(); if (form) form.stop(); };
}
