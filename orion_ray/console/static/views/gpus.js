// GPUs (admin): nodes as rows and GPUs as cells coloured by free fraction, stranded capacity,
// cordoned and draining nodes marked; pools with current -> target; recent scaling events.
// Sources: /admin/v1/infrastructure/nodes (state, pool, totals, free), .../fragmentation (the
// per-GPU free fractions and stranded GPUs per node, in Orion's account), .../health (the
// autoscaler's pools) and /admin/v1/scaling/events. Only the admin reaches this view: console.js
// refuses it to a tenant before this module is loaded, so a tenant never calls these routes.
import { api, badge, el, errorBox, fmt, ready, refresher, section, table } from "../lib.js";

const EVENTS = 15;
// free-fraction buckets of a cell, lowest first: the legend and the cells use the same list
const BUCKETS = [
  { cls: "f0", max: 0, label: "in use" },
  { cls: "f1", max: 0.34, label: "≤ 1/3 free" },
  { cls: "f2", max: 0.67, label: "≤ 2/3 free" },
  { cls: "f3", max: 0.999, label: "mostly free" },
  { cls: "f4", max: 1, label: "free" },
];

function bucket(free) {
  return BUCKETS.find((b) => free <= b.max + 1e-9) || BUCKETS[BUCKETS.length - 1];
}

// Per-GPU free fractions of a node: fragmentation's list when it covers the node's GPUs,
// else spread the node's free count (whole GPUs free first, then the fraction, rest in use).
function gpuFree(node, frag) {
  const total = Math.round((node.resources || {}).GPU || 0);
  if (frag && Array.isArray(frag.gpu_free) && frag.gpu_free.length === total) return frag.gpu_free.map(Number);
  let left = Number((node.free || {}).GPU || 0);
  return Array.from({ length: total }, () => {
    const f = Math.max(0, Math.min(1, left));
    left -= f;
    return f;
  });
}

// Which cells carry the stranded mark: stranded GPUs are a per-node amount of free capacity the
// placement engine cannot use for queued work; mark that many of the node's free cells, partly
// used ones first (that is where stranding usually sits).
function strandedCells(frees, stranded) {
  const marked = new Set();
  let left = stranded;
  const order = frees.map((f, i) => [f, i]).filter(([f]) => f > 0).sort((a, b) => a[0] - b[0]);
  for (const [f, i] of order) {
    if (left <= 1e-9) break;
    marked.add(i);
    left -= f;
  }
  return marked;
}

function cells(node, frag) {
  const frees = gpuFree(node, frag);
  const marked = strandedCells(frees, Number((frag && frag.stranded_gpus) || 0));
  return frees.map((f, i) => el("span", {
    class: `gpu ${bucket(f).cls}${marked.has(i) ? " stranded" : ""}`,
    title: `GPU ${i}: ${fmt.pct(f)} free${marked.has(i) ? " (stranded)" : ""}`,
    dataset: { testid: "gpu-cell", free: String(f) },
  }));
}

function stateBadges(n) {
  const out = [badge(n.state || n.status || "unknown")];
  if (n.cordoned && n.state !== "cordoned") out.push(" ", badge("cordoned", "warn"));
  if (n.state === "draining" && n.drain_deadline) out.push(el("span", { class: "muted" }, ` until ${fmt.time(n.drain_deadline)}`));
  if (n.cordon_reason) out.push(el("div", { class: "muted small" }, n.cordon_reason));
  return out;
}

function nodeRow(n, frag, act) {
  const total = Math.round((n.resources || {}).GPU || 0);
  const free = Number((n.free || {}).GPU || 0);
  const stranded = Number((frag && frag.stranded_gpus) || 0);
  const ended = n.state === "terminated" || n.state === "lost";
  const cordoned = n.cordoned || n.state === "cordoned" || n.state === "draining";
  return el("tr", {
    class: cordoned ? "node-off" : "",
    dataset: { testid: "node-row", node: n.node_id, state: n.state || "", cordoned: String(!!n.cordoned) },
  },
  el("td", { class: "mono" }, n.node_id),
  el("td", {}, n.pool || "—", el("span", { class: "muted small" }, n.gpu_type ? ` · ${n.gpu_type}` : "")),
  el("td", { dataset: { testid: "node-state" } }, stateBadges(n)),
  el("td", { class: "num" }, el("span", { dataset: { testid: "free-gpus" } }, fmt.num(free)), ` / ${total}`),
  el("td", { class: "num", dataset: { testid: "stranded" } }, stranded > 0 ? fmt.num(stranded) : ""),
  el("td", { class: "cells" }, total ? cells(n, frag) : el("span", { class: "muted" }, "no GPU")),
  el("td", { class: "num", title: (n.workloads || []).join("\n") }, String((n.workloads || []).length)),
  el("td", {}, ended ? "" : el("button", {
    dataset: { testid: n.cordoned ? "uncordon" : "cordon" },
    onclick: (ev) => act(ev, n.node_id, n.cordoned ? "uncordon" : "cordon"),
  }, n.cordoned ? "uncordon" : "cordon")));
}

function legend() {
  return el("div", { class: "legend", dataset: { testid: "legend" } },
    BUCKETS.map((b) => el("span", {}, el("span", { class: `gpu ${b.cls}` }), " ", b.label)),
    el("span", {}, el("span", { class: "gpu f4 stranded" }), " stranded (free, unusable by the queue)"),
    el("span", {}, badge("cordoned", "warn"), " / ", badge("draining"), " rows dimmed: no new placements"));
}

function pools(nodes, auto) {
  const byPool = new Map();
  for (const n of nodes) {
    const p = byPool.get(n.pool || "—") || { pool: n.pool || "—", nodes: 0, gpus: 0, free: 0 };
    p.nodes += 1;
    p.gpus += (n.resources || {}).GPU || 0;
    p.free += (n.free || {}).GPU || 0;
    byPool.set(p.pool, p);
  }
  for (const a of (auto && auto.pools) || []) {
    const p = byPool.get(a.pool) || { pool: a.pool, nodes: 0, gpus: 0, free: 0 };
    byPool.set(a.pool, Object.assign(p, { auto: a }));
  }
  const rows = [...byPool.values()].sort((a, b) => String(a.pool).localeCompare(String(b.pool)));
  const status = auto ? auto.status : "unknown";
  return [
    el("p", { class: "muted", dataset: { testid: "autoscaler-status" } }, `Autoscaler: ${status}`,
      auto && auto.last_report ? `, last report ${fmt.ago(auto.last_report)}` : "",
      auto && auto.last_error ? ` — last error: ${auto.last_error}` : ""),
    table([
      { title: "pool", render: (p) => p.pool },
      { title: "nodes", render: (p) => String(p.nodes), cls: "num" },
      { title: "GPUs free", render: (p) => `${fmt.num(p.free)} / ${fmt.num(p.gpus)}`, cls: "num" },
      { title: "current → target", render: (p) => (p.auto ? el("span", { dataset: { testid: "pool-target" } },
        `${p.auto.current} → ${p.auto.target}`, p.auto.direction && p.auto.direction !== "hold" ? " " : "",
        p.auto.direction && p.auto.direction !== "hold" ? badge(p.auto.direction, "warn") : "") : el("span", { class: "muted" }, "not autoscaled")) },
      { title: "min–max", render: (p) => (p.auto && p.auto.spec ? `${p.auto.spec.min_size}–${p.auto.spec.max_size}` : "—") },
      { title: "provisioning", render: (p) => (p.auto && p.auto.provisioning ? String(p.auto.provisioning) : ""), cls: "num" },
      { title: "why", render: (p) => (p.auto ? p.auto.reason || "" : "") },
    ], rows, { empty: "No pools.", rowProps: (p) => ({ dataset: { testid: "pool-row", pool: p.pool } }) }),
  ];
}

function events(items) {
  const change = (e) => (e.before == null && e.after == null ? "" : `${e.before ?? "—"} → ${e.after ?? "—"}`);
  return table([
    { title: "when", render: (e) => fmt.ago(e.at) },
    { title: "kind", render: (e) => e.kind },
    { title: "pool", render: (e) => e.pool || "—" },
    { title: "node", render: (e) => e.node_id || "" },
    { title: "change", render: change },
    { title: "outcome", render: (e) => (e.outcome ? badge(e.outcome) : "") },
    { title: "trigger / reason", render: (e) => [e.trigger || "", e.reason ? ": " + e.reason : ""].join("") },
  ], items, { empty: "No scaling events yet.", rowProps: () => ({ dataset: { testid: "scaling-event" } }) });
}

export async function mount(root, ctx) {
  // which rows to show: with 100 nodes, finding the free, stranded or cordoned ones matters
  const SHOW = { all: () => true, free: (n) => ((n.free || {}).GPU || 0) > 0,
    stranded: (n, f) => Number((f && f.stranded_gpus) || 0) > 0,
    off: (n) => n.cordoned || n.state === "draining" };
  const show = SHOW[ctx.query.get("show")] ? ctx.query.get("show") : "all";
  // built once, not per refresh: an open drop-down is not closed under the reader by a tick
  const picker = el("select", { dataset: { testid: "filter-show" }, onchange: (ev) => ctx.navigate(
    ev.target.value === "all" ? "#/gpus" : `#/gpus?show=${ev.target.value}`) },
  [["all", "all nodes"], ["free", "with free GPUs"], ["stranded", "with stranded GPUs"], ["off", "cordoned or draining"]]
    .map(([v, t]) => el("option", { value: v, selected: v === show }, t)));
  // the grid's card stays; only its table is redrawn (the picker keeps its state under a refresh)
  const gridTitle = el("h2", {}, "Nodes and their GPUs"), tableBox = el("div");
  const gridBox = el("section", { class: "card" }, gridTitle, el("div", { class: "filters" }, picker), legend(), tableBox);
  const statsBox = el("div"), poolBox = el("div"), eventBox = el("div"), msgBox = el("div");

  async function act(ev, nodeId, what) {
    ev.target.disabled = true;
    let failed = null;
    try {
      await api(`/admin/v1/infrastructure/nodes/${encodeURIComponent(nodeId)}/${what}`, { method: "POST", body: {} });
    } catch (e) {
      failed = e;
    }
    await load();
    if (failed) msgBox.append(errorBox(failed));  // after the reload, which redraws the messages
  }

  async function load() {
    let nodes, frag, health, evs;
    try {
      [nodes, frag, health, evs] = await Promise.all([
        api("/admin/v1/infrastructure/nodes?include_ended=false"),
        // without it the cells come from each node's free count, and stranded is unknown
        api("/admin/v1/infrastructure/fragmentation").catch((e) => ({ error: e, nodes: [], summary: {} })),
        api("/admin/v1/infrastructure/health").catch(() => null),  // pools are extra: the grid stands without them
        api(`/admin/v1/scaling/events?limit=${EVENTS}`).catch((e) => ({ error: e })),
      ]);
    } catch (e) {
      tableBox.replaceChildren(errorBox(e));
      ready("gpus");
      return;
    }
    msgBox.replaceChildren(frag.error ? errorBox(`fragmentation unavailable (${frag.error.message}): GPU cells drawn from free counts, stranded unknown`) : "");
    const fragBy = new Map((frag.nodes || []).map((f) => [f.node_id, f]));
    const items = nodes.items || [];
    const sum = frag.summary || {};
    const gpus = items.reduce((s, n) => s + ((n.resources || {}).GPU || 0), 0);
    const free = items.reduce((s, n) => s + ((n.free || {}).GPU || 0), 0);
    const off = items.filter((n) => n.cordoned || n.state === "draining").length;
    statsBox.replaceChildren(el("div", { class: "stats" },
      el("div", { class: "stat" }, el("b", { dataset: { testid: "node-count" } }, String(items.length)), " nodes"),
      el("div", { class: "stat" }, el("b", { dataset: { testid: "gpu-free-total" } }, fmt.num(free)), ` of ${fmt.num(gpus)} GPUs free`),
      el("div", { class: "stat" }, el("b", {}, fmt.num(sum.stranded_gpus || 0)), " stranded",
        sum.stranded_pct_of_free ? el("span", { class: "muted" }, ` (${fmt.num(sum.stranded_pct_of_free, 1)} % of free)`) : ""),
      el("div", { class: "stat" }, el("b", {}, String(off)), " cordoned or draining")));
    const shown = items.filter((n) => SHOW[show](n, fragBy.get(n.node_id)));
    gridTitle.textContent = `Nodes and their GPUs (${shown.length} of ${items.length})`;
    tableBox.replaceChildren(shown.length
      ? el("table", { class: "grid gpu-grid", dataset: { testid: "gpu-grid" } },
        el("thead", {}, el("tr", {}, ["node", "pool", "state", "free GPUs", "stranded", "GPUs", "work", ""].map((t) =>
          el("th", {}, t)))),
        el("tbody", {}, shown.map((n) => nodeRow(n, fragBy.get(n.node_id), act))))
      : el("p", { class: "muted" }, "No nodes to show."));
    poolBox.replaceChildren(section("Pools", pools(items, health && health.autoscaler)));
    eventBox.replaceChildren(section("Recent scaling events",
      evs.error ? errorBox(evs.error) : events(evs.items || [])));
    ready("gpus");
  }

  root.append(el("h1", {}, "GPUs"), msgBox, statsBox, gridBox, poolBox, eventBox);
  // node state changes come with ticks; workload changes move GPUs too, but a 100-node grid
  // need not be redrawn more than every couple of seconds
  const refresh = refresher(load, 2000);
  await load();
  return {
    refresh: (event) => { if (event === "workloads" || event === "tick") refresh(); },
    unmount: () => refresh.cancel(),
  };
}
