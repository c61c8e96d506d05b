// The console's shell: sign-in with an API key, navigation, the hash router and the live stream.
// Each view is a module in views/ exporting mount(root, ctx) -> {refresh(event), unmount()}.
import { api, el, errorBox, getKey, setKey } from "./lib.js";

const VIEWS = {
  queue: { title: "Queue", module: "./views/queue.js" },
  w: { module: "./views/workload.js" },
  gpus: { title: "GPUs", module: "./views/gpus.js", admin: true },
  serving: { title: "Serving", module: "./views/serving.js" },
};

const state = { me: null, current: null, stream: null, seq: 0 };
const main = () => document.getElementById("main");

function parseHash() {
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "queue").split("?");
  const [name, ...rest] = path.split("/");
  return { name: name || "queue", args: rest.map(decodeURIComponent), query: new URLSearchParams(query || "") };
}

function signIn(message) {
  stopStream();
  state.me = null;
  document.getElementById("nav").replaceChildren();
  document.getElementById("who").replaceChildren();
  const input = el("input", { type: "password", id: "key", autocomplete: "off", placeholder: "API key", required: true });
  const form = el("form", {
    class: "card signin",
    onsubmit: async (ev) => {
      ev.preventDefault();
      setKey(input.value.trim());
      await start();
    },
  },
  el("h2", {}, "Sign in"),
  el("p", { class: "muted" }, "An Orion API key: a tenant's key shows its own work, the admin key shows everything. " +
    "The key stays in this tab only."),
  message ? errorBox(message) : null,
  input, " ", el("button", { type: "submit", id: "signin" }, "Sign in"));
  main().replaceChildren(form);
  input.focus();
}

async function start() {
  if (!getKey()) return signIn();
  try {
    state.me = await api("/api/v1/whoami");
  } catch (e) {
    setKey(null);
    return signIn(e.status === 401 ? "That key is not valid." : e);
  }
  const nav = document.getElementById("nav");
  nav.replaceChildren(...Object.entries(VIEWS)
    .filter(([, v]) => v.title && (!v.admin || state.me.admin))
    .map(([name, v]) => el("a", { href: `#/${name}`, dataset: { view: name } }, v.title)));
  document.getElementById("who").replaceChildren(
    el("span", { class: "who", dataset: { testid: "who" } }, state.me.admin ? "admin" : `tenant ${state.me.tenant_id}`),
    " ",
    el("button", { class: "link", id: "signout", onclick: () => { setKey(null); signIn(); } }, "sign out"));
  startStream();
  await route();
}

async function route() {
  if (!state.me) return;
  const { name, args, query } = parseHash();
  const spec = VIEWS[name];
  if (state.current && state.current.unmount) state.current.unmount();
  state.current = null;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  const root = el("div", { class: "view", dataset: { view: name } });
  main().replaceChildren(root);
  if (!spec || (spec.admin && !state.me.admin)) {
    root.append(errorBox(spec ? "This view needs the admin key." : `No view ${name}.`));
    return;
  }
  document.body.dataset.ready = "";
  try {
    const mod = await import(spec.module);
    const ctx = { me: state.me, args, query, navigate: (h) => { location.hash = h; } };
    state.current = (await mod.mount(root, ctx)) || {};
  } catch (e) {
    root.append(errorBox(e));
  }
}

// -- live updates: one server-sent-event stream per tab, read with fetch (it carries the key) --
function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

function setLive(on) {
  const live = document.getElementById("live");
  live.classList.toggle("off", !on);
  live.title = on ? "live updates: connected" : "live updates: reconnecting";
}

async function startStream(delay = 0) {
  stopStream();
  const ctl = new AbortController();
  state.stream = ctl;
  if (delay) await new Promise((r) => setTimeout(r, delay));
  if (ctl.signal.aborted) return;
  try {
    const r = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${getKey()}` }, signal: ctl.signal });
    if (!r.ok || !r.body) throw new Error(`stream: ${r.status}`);
    setLive(true);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        dispatch(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  setLive(false);
  if (state.stream === ctl) startStream(Math.min(10000, 1000 + Math.random() * 2000));
}

function dispatch(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (event === "hello" || !data) return;
  let payload = {};
  try { payload = JSON.parse(data); } catch (_) { return; }
  const view = state.current;
  if (view && view.refresh) view.refresh(event, payload);
}

window.addEventListener("hashchange", route);
window.addEventListener("orion:unauthorized", () => { setKey(null); signIn("The key was refused (signed out)."); });
start();
