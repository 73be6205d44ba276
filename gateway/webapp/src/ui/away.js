// "Away from home": the setting that makes the app reach the gateway over the Streembit P2P
// binding instead of same-origin HTTP. The gateway is found by its id through a lookup peer
// (a node offering DHT lookups over WebSocket: the gateway's P2P port, or a public
// `streembit-peer node`); every record and every message is verified in this browser, so the
// lookup peer and any relay are not trusted (docs/webapp.md "Away from home").

import { field, fill, h, note } from "./dom.js";
import * as core from "./core.js";
import { describe } from "./words.js";

/** The settings form; SAVED is called with the new setting once it is checked and stored. */
export function awayForm(ctx) {
  const s = core.awaySettings();
  const out = h("div", { class: "messages" });
  const on = h("input", { type: "checkbox", id: "away-on", checked: s.on, class: "check" });
  const gwId = h("input", {
    type: "text", id: "away-id", value: s.gatewayId || ctx.gatewayId || "", maxlength: 43,
    spellcheck: "false", autocomplete: "off", autocapitalize: "off",
  });
  const lookup = h("input", {
    type: "text", id: "away-lookup", value: s.lookup, maxlength: 256, inputmode: "url",
    placeholder: "ws://203.0.113.7:4242", spellcheck: "false", autocomplete: "off", autocapitalize: "off",
  });
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      let saved;
      try {
        saved = core.saveAwaySettings({ on: on.checked, gatewayId: gwId.value, lookup: lookup.value });
      } catch (err) {
        fill(out, note("error", `Not saved: ${describe(err)}`));
        return;
      }
      fill(out, note("ok", saved.on ? "Saved: the app now reaches the gateway over P2P." : "Saved: the app uses the local network."));
      await ctx.setAway(saved);
    },
  },
  h("p", { class: "hint" },
    "Away from home the app finds your gateway by its id through a lookup peer and talks to it with ",
    "end-to-end sealed messages. At home, leave this off: the app talks to the gateway that served it."),
  h("div", { class: "field" }, h("label", { for: "away-on" }, on, " Reach the gateway away from home (P2P)")),
  field("Gateway id", gwId, ctx.gatewayId && !s.on ? "This gateway's id is filled in: keep it." : "The gateway's id (43 characters), as its status page shows it."),
  field("Lookup peer", lookup, "A node that offers DHT lookups: the gateway's public P2P address or a public `streembit-peer node` (ws://HOST:PORT)."),
  h("button", { type: "submit", id: "away-save" }, "Save"),
  out);
  return h("details", { id: "away", open: s.on }, h("summary", {}, s.on ? "Away from home: on" : "Away from home"), form);
}
