// The notice shown when the page is not a secure context (plain http on a LAN address):
// browsers give WebCrypto only to https and to http://localhost / 127.0.0.1, so no key can be
// made or used here. It says so and offers what works: the same gateway through an SSH tunnel.

import { fill, h } from "./dom.js";

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** The notice's content for the current location. */
export function insecureNotice(loc = globalThis.location) {
  const port = loc.port || (loc.protocol === "https:" ? "443" : "80");
  const host = loc.hostname;
  const local = `http://localhost:8080/app`;
  return [
    h("h2", {}, "This address cannot keep keys"),
    h("p", {}, `The page was opened at ${loc.origin}, plain http on a network address. Browsers allow `,
      "the cryptography this app needs (WebCrypto) only on https or on http://localhost and http://127.0.0.1, ",
      "so here it cannot create a key, sign a request or read your Things."),
    h("h3", {}, "What works"),
    h("ol", {},
      h("li", {}, "Open a tunnel to the gateway with SSH, then open ", h("code", {}, local), " on the same device:",
        h("pre", {}, h("code", {}, `ssh -L 8080:localhost:${port} pi@${LOOPBACK.has(host) ? "GATEWAY" : host}`)),
        "On a phone, any SSH app with port forwarding does it (e.g. Termux on Android; on iOS an SSH client with local forwarding)."),
      h("li", {}, "On the gateway itself, open ", h("code", {}, `http://127.0.0.1:${port}/app`), "."),
      h("li", {}, "Always use the same address: keys are stored per address (localhost:8080 and 127.0.0.1:8080 are two different stores). ",
        "Move a key with Key → Export a backup.")),
    h("p", {}, "Without a key you can still see the status page at ", h("a", { href: "/status" }, "/status"),
      " with a token pasted from ", h("code", {}, "streembit-peer token"), "."),
  ];
}

export function showInsecure(el) {
  fill(el, insecureNotice());
  el.hidden = false;
}
