// Owner screen: the installed ACL's grants, add a guest, revoke. Every change is built and
// signed here with the owner key (lib/acl.js) and pushed with PUT /acl; the gateway verifies
// it like any ACL (owner signature, gateway id, version above the installed one).

import { fill, h, note, shortId, when } from "./dom.js";
import * as core from "./core.js";
import { grantForm } from "./grantform.js";
import { presetOf } from "./presets.js";
import { tdName } from "./things.js";
import { describe } from "./words.js";

function grantRow(g, titles, onRevoke) {
  const things = g.things.includes("*") ? "all Things" : g.things.map((t) => titles.get(t) || t).join(", ");
  const valid = [g.nbf ? `from ${when(g.nbf)}` : "", g.exp ? `until ${when(g.exp)}` : ""].filter(Boolean).join(" ");
  const expired = g.exp && g.exp < Date.now() / 1000;
  const ask = h("button", { type: "button", class: "danger" }, "Revoke…");
  const yes = h("button", { type: "button", class: "danger" }, "Yes, revoke");
  const no = h("button", { type: "button" }, "Cancel");
  const confirm = h("div", { class: "confirm", hidden: true, role: "group", "aria-label": "Confirm revoke" },
    h("p", {}, `Revoke key ${shortId(g.sub)}? It loses every right at once.`), h("div", { class: "row" }, yes, no));
  ask.addEventListener("click", () => { confirm.hidden = false; yes.focus(); });
  no.addEventListener("click", () => { confirm.hidden = true; ask.focus(); });
  yes.addEventListener("click", () => { yes.disabled = true; onRevoke(g.sub).finally(() => { yes.disabled = false; }); });
  return h("li", { class: `grant${expired ? " expired" : ""}` },
    h("p", {}, h("strong", {}, "Key "), h("code", { title: g.sub }, shortId(g.sub)), g.role === "admin" ? " (admin)" : ""),
    h("p", {}, `${presetOf(g)} — ${things}`),
    valid ? h("p", {}, `Valid ${valid}${expired ? " (expired)" : ""}`) : null,
    g.schedule ? h("p", {}, `Schedule: ${g.schedule}`) : null,
    g.delegate ? h("p", {}, `May pass it on: ${g.delegate} step(s)`) : null,
    ask, confirm);
}

export async function show(el, ctx) {
  if (!ctx.gw) { fill(el, note("info", "Create or import a key first (Key screen).")); return undefined; }
  const rights = await ctx.loadRights().catch(() => null);
  if (!rights || rights.role !== "owner") {
    fill(el, note("info", "This key is not the gateway's owner: only the owner key can grant and revoke."));
    return undefined;
  }
  const out = h("div", { class: "messages", "aria-live": "polite" });
  let current;
  let tds;
  try {
    [current, tds] = await Promise.all([ctx.gw.editableAcl(), ctx.loadTds()]);
  } catch (err) {
    fill(el, note("error", `Cannot read the ACL: ${describe(err)}`));
    return undefined;
  }
  const doc = current.doc; // verified with this owner key (or a new, empty ACL)
  const things = tds.map((td) => ({ name: tdName(td), title: td.title || tdName(td) }));
  const titles = new Map(things.map((t) => [t.name, t.title]));
  const known = new Map(doc.grants.map((g) => [g.sub, g.jwk]));

  const push = async (next, what) => { // NEXT: the edited ACL (async: building may refuse)
    try {
      const jws = await core.signAcl(ctx.key, await next());
      const res = await ctx.gw.putAcl(jws);
      ctx.say(`${what}: ACL version ${res && res.version ? res.version : "new"} installed.`);
      await ctx.refresh();
    } catch (err) {
      fill(out, note("error", `${what} failed: ${describe(err)}`));
    }
  };
  const revoke = (sub) => push(async () => core.withoutSubject(doc, sub), `Key ${shortId(sub)} revoked`);
  const grant = ({ id, jwk, preset, opts }) =>
    push(async () => core.withGrant(doc, await core.presetGrant(preset, jwk, opts)), `Key ${shortId(id)} granted`);
  const form = grantForm(things, known, grant);

  fill(el,
    h("p", {}, current.version ? `ACL version ${current.version}, ${doc.grants.length} grant(s).` : "No ACL installed yet: only you have access."),
    out,
    h("section", { "aria-labelledby": "h-grants" }, h("h3", { id: "h-grants" }, "Grants"),
      doc.grants.length ? h("ul", { class: "grants" }, doc.grants.map((g) => grantRow(g, titles, revoke)))
        : h("p", { class: "hint" }, "Nobody else has access.")),
    h("section", { "aria-labelledby": "h-add" }, h("h3", { id: "h-add" }, "Add a guest"), form.node));
  return form.stop;
}
