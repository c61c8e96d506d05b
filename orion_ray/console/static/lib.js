// Small helpers every view uses: DOM building (text only, never HTML), the REST client with the
// key of this tab, formatting, bars and tables.

const KEY = "orion.key";

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// el("div", {class: "x", dataset: {id: 1}, onclick: fn, title: "t"}, "text", child, [more])
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// The REST API as this tab's key; JSON in, JSON (or text) out; errors as ApiError.
export async function api(path, { method = "GET", body, text = false, signal } = {}) {
  const headers = { Authorization: `Bearer ${getKey() || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    let code = "http_" + r.status, message = r.statusText;
    try {
      const e = (await r.json()).error || {};
      code = e.code || code;
      message = e.message || message;
    } catch (_) { /* not a JSON error body */ }
    if (r.status === 401) window.dispatchEvent(new CustomEvent("orion:unauthorized"));
    throw new ApiError(r.status, code, message, r.headers.get("Retry-After"));
  }
  return text ? r.text() : r.json();
}

export const fmt = {
  time(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString([], { hour12: false }) + " " + d.toISOString().slice(0, 10);
  },
  ago(iso) {
    if (!iso) return "—";
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (!isFinite(s)) return "—";
    if (s < 0) return "in " + fmt.span(-s);
    return fmt.span(s) + " ago";
  },
  span(s) {
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  },
  num(x, digits = 2) {
    if (x === null || x === undefined || !isFinite(x)) return "—";
    return Number(x).toLocaleString([], { maximumFractionDigits: digits });
  },
  pct(x, digits = 0) {
    if (x === null || x === undefined || !isFinite(x)) return "—";
    return (x * 100).toFixed(digits) + " %";
  },
};

// A horizontal bar: `value` of `max` (a marker at `mark` when given, e.g. the quota).
export function bar(value, max, { label, cls = "", mark, testid } = {}) {
  const frac = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
  const markFrac = mark !== undefined && max > 0 ? Math.max(0, Math.min(1, mark / max)) : undefined;
  return el("div", { class: "bar " + cls, title: label || "", dataset: testid ? { testid } : undefined },
    el("div", { class: "fill", style: `width:${(frac * 100).toFixed(1)}%` }),
    markFrac !== undefined ? el("div", { class: "mark", style: `left:${(markFrac * 100).toFixed(1)}%` }) : null,
    label ? el("span", { class: "bar-label" }, label) : null);
}

// table([{title, render(row) -> node|string, cls}], rows, {empty, rowProps(row)})
export function table(columns, rows, { empty = "Nothing here.", rowProps } = {}) {
  if (!rows.length) return el("p", { class: "muted empty" }, empty);
  return el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.cls }, c.title)))),
    el("tbody", {}, rows.map((row) =>
      el("tr", rowProps ? rowProps(row) : {}, columns.map((c) => el("td", { class: c.cls }, c.render(row)))))));
}

export function badge(text, cls = "") {
  return el("span", { class: `badge ${cls} s-${String(text).replace(/[^a-z_]/gi, "")}` }, text);
}

export function section(title, ...children) {
  return el("section", { class: "card" }, el("h2", {}, title), ...children);
}

export function errorBox(e) {
  const msg = e instanceof ApiError ? `${e.status} ${e.code}: ${e.message}` : String(e && e.message || e);
  return el("div", { class: "error", role: "alert" }, msg);
}

// Mark a view rendered with its data (tests and the page-load benchmark wait for it).
export function ready(view) {
  document.body.dataset.ready = view;
  window.__orionReady = window.__orionReady || {};
  if (!(view in window.__orionReady)) window.__orionReady[view] = performance.now();
}

export function link(href, text, props = {}) {
  return el("a", { href, ...props }, text);
}

// refresher(load): call load() now; later calls while one runs coalesce into one more run, and
// runs are at least `gapMs` apart (a burst of events costs one or two fetches, not one each).
export function refresher(load, gapMs = 750) {
  let running = false, again = false, last = 0, timer = null;
  async function run() {
    if (running) { again = true; return; }
    const wait = last + gapMs - performance.now();
    if (wait > 0) {
      if (!timer) timer = setTimeout(() => { timer = null; run(); }, wait);
      return;
    }
    running = true;
    last = performance.now();
    try { await load(); } finally {
      running = false;
      if (again) { again = false; run(); }
    }
  }
  run.cancel = () => { if (timer) clearTimeout(timer); timer = null; again = false; };
  return run;
}
