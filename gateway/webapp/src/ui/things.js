// Things screen: the Things this key may use now (from GET /acl/mine), each as a live card;
// the gateway's other Things are listed by name only, not actionable.

import { fill, h, note, shortId, when } from "./dom.js";
import { STREAM_BUDGET, thingCard } from "./cards.js";
import { describe } from "./words.js";

/** The Thing name of a TD: the last path segment of its base ("…/things/NAME/"). */
export function tdName(td) {
  const m = /\/things\/([^/]+)\/?$/.exec(td.base || "");
  return m ? decodeURIComponent(m[1]) : td.title || td.id;
}

export async function show(el, ctx) {
  if (!ctx.gw) {
    fill(el, note("info", "Create or import a key first (Key screen)."));
    return undefined;
  }
  fill(el, note("info", "Loading the Things…"));
  let tds;
  let rights;
  try {
    [tds, rights] = await Promise.all([ctx.loadTds(), ctx.loadRights()]);
  } catch (err) {
    const noGrant = err.code === "unauthenticated" || (ctx.gw.away && err.code === "forbidden");
    fill(el, noGrant
      ? note("info", "This key has no grant on this gateway yet: show your key to the owner (Key screen), then Refresh.")
      : note("error", `Cannot load the Things: ${describe(err)}`),
    h("button", { type: "button", onclick: () => ctx.refresh() }, "Refresh"));
    return undefined;
  }
  const cards = [];
  const mine = h("div", { class: "cards" });
  const others = [];
  const streams = { left: STREAM_BUDGET };
  // "Pass on…" on each card when what this key holds may go further (ui/pass.js)
  const canPass = ctx.chain ? ctx.chain[ctx.chain.length - 1].depth > 0 : Boolean(rights.grant && rights.grant.delegate > 0);
  const chain = rights.chain
    ? note("info", `Access passed on to you by key ${shortId(rights.chain.from[rights.chain.from.length - 1])}, until ${when(rights.chain.exp)}${rights.chain.uses !== null ? `, at most ${rights.chain.uses} uses` : ""} (Pass on screen).`)
    : null;
  const locksFirst = (td) => (rights.things?.[tdName(td)]?.type === "lock" ? 0 : 1);
  for (const td of [...tds].sort((a, b) => locksFirst(a) - locksFirst(b))) {
    const name = tdName(td);
    const r = rights.things && rights.things[name];
    if (r) {
      const card = thingCard(name, td, r, ctx.gw, streams);
      cards.push(card);
      if (canPass) {
        card.node.append(h("button", { type: "button", class: "pass-on", onclick: () => { ctx.passThing = name; ctx.go("pass"); } }, "Pass on…"));
      }
      mine.append(card.node);
    } else {
      others.push(td.title || name);
    }
  }
  fill(el,
    chain,
    cards.length ? mine : note("info", ctx.roleWords() === "no grant"
      ? "This key has no grant on this gateway yet: show your key to the owner (Key screen)."
      : "This key may use no Thing right now (outside its validity window or schedule?)."),
    others.length ? h("section", { class: "others", "aria-label": "Other Things" },
      h("h3", {}, "Other Things on this gateway"),
      h("p", { class: "hint" }, "Not granted to this key, or not at this time."),
      h("ul", {}, others.map((t) => h("li", {}, t)))) : null,
    h("button", { type: "button", onclick: () => ctx.refresh() }, "Refresh"));
  return () => cards.forEach((c) => c.stop());
}
