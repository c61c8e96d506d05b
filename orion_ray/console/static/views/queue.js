// Queue: per tenant usage against quota, borrowing and fair share; queue depth by priority class;
// the reservation in effect; the workloads, filtered by tenant, status and class.
import { api, badge, bar, el, errorBox, fmt, link, ready, refresher, section, table } from "../lib.js";

const CLASSES = ["critical", "high", "normal", "low", "best_effort"];
const STATUSES = ["", "queued", "starting", "running", "preempted", "completed", "failed", "cancelled"];
const PAGE = 200; // rows per page: the rest come with "more", newest first

function resources(t) {
  // the resources to draw: quota keys first, then whatever is in use
  const keys = new Set([...Object.keys(t.quota || {}), ...Object.keys(t.usage || {})]);
  return [...keys].sort();
}

function tenantRow(t) {
  const res = resources(t);
  return el("div", { class: "tenant", dataset: { testid: "tenant-row", tenant: t.tenant_id } },
    el("div", { class: "tenant-head" },
      el("strong", {}, t.tenant_id),
      el("span", { class: "muted" }, ` weight ${fmt.num(t.weight)}`),
      Object.keys(t.borrowing || {}).length
        ? badge("borrowing " + Object.entries(t.borrowing).map(([k, v]) => `${fmt.num(v)} ${k}`).join(", "), "warn")
        : null),
    el("div", { class: "kv" },
      el("span", {}, "fair share"),
      bar(t.fair_share, 1, { label: fmt.pct(t.fair_share, 1), cls: "share", testid: "fair-share" }),
      el("span", { class: "num", dataset: { testid: "fair-share-value" } }, fmt.num(t.fair_share, 4))),
    res.map((k) => {
      const used = (t.usage || {})[k] || 0, quota = (t.quota || {})[k];
      const max = Math.max(used, quota || 0) || 1;
      return el("div", { class: "kv" },
        el("span", {}, k),
        quota === undefined
          ? el("span", { class: "muted" }, `${fmt.num(used)} in use (no quota)`)
          : bar(used, max, { mark: quota, cls: used > quota ? "over" : "", label: `${fmt.num(used)} of ${fmt.num(quota)}` }),
        el("span", { class: "num", dataset: { testid: `usage-${k}` } }, fmt.num(used)));
    }),
    el("div", { class: "counts" },
      el("span", { dataset: { testid: "queued" } }, `${t.queued} queued`), " · ",
      el("span", { dataset: { testid: "running" } }, `${t.running} running`), " · ",
      CLASSES.filter((c) => (t.queued_by_priority || {})[c]).map((c) => badge(`${c} ${t.queued_by_priority[c]}`, "class"))));
}

function depthByClass(tenants) {
  const depth = Object.fromEntries(CLASSES.map((c) => [c, 0]));
  for (const t of tenants) for (const [c, n] of Object.entries(t.queued_by_priority || {})) depth[c] = (depth[c] || 0) + n;
  const max = Math.max(1, ...Object.values(depth));
  return el("div", { class: "depth" }, Object.entries(depth).map(([c, n]) =>
    el("div", { class: "kv", dataset: { testid: "depth", class: c } },
      el("span", {}, c), bar(n, max, { cls: "depth-bar" }), el("span", { class: "num" }, String(n)))));
}

function reservation(r) {
  if (!r) return el("p", { class: "muted", dataset: { testid: "reservation" } }, "No reservation: nothing large waits for capacity to be held back.");
  const who = r.workload_id ? link(`#/w/${encodeURIComponent(r.workload_id)}`, r.workload_id) : "a workload of another tenant";
  return el("p", { dataset: { testid: "reservation" } }, "Capacity held for ", who,
    ` on ${(r.nodes || []).length} node(s)`,
    r.expected_at ? `, expected free ${fmt.ago(new Date(r.expected_at * 1000).toISOString())}` : "");
}

export async function mount(root, ctx) {
  const q = ctx.query;
  const filters = { tenant: q.get("tenant") || "", status: q.get("status") || "", klass: q.get("class") || "" };
  const summaryBox = el("div", {}), tableBox = el("div", {});
  let tenantsSeen = [];

  const select = (name, options, value) => el("select", {
    name, dataset: { testid: `filter-${name}` },
    onchange: (ev) => {
      const p = new URLSearchParams({ tenant: filters.tenant, status: filters.status, class: filters.klass });
      p.set(name === "class" ? "class" : name, ev.target.value);
      for (const [k, v] of [...p.entries()]) if (!v) p.delete(k);
      ctx.navigate(`#/queue${p.toString() ? "?" + p : ""}`);
    },
  }, options.map((o) => el("option", { value: o, selected: o === value }, o || `any ${name}`)));

  const filterBar = el("div", { class: "filters" });

  let pages = 1; // how many pages the user has asked to see

  async function fetchRows() {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (filters.status) params.set("status", filters.status);
    if (filters.tenant) params.set("tenant_id", filters.tenant);
    let items = [], cursor = null;
    for (let i = 0; i < pages; i++) {
      if (cursor !== null) params.set("cursor", String(cursor));
      const page = await api(`/api/v1/workloads?${params}`);
      items = items.concat(page.items);
      cursor = page.next_cursor;
      if (cursor === null || cursor === undefined) break;
    }
    return { items, more: cursor !== null && cursor !== undefined };
  }

  function rowsTable(list) {
    const items = list.items.filter((w) => !filters.klass || w.priority === filters.klass);
    return section(`Workloads (${items.length}${list.more ? "+" : ""}, newest first)`,
      table([
        { title: "workload", render: (w) => link(`#/w/${encodeURIComponent(w.workload_id)}`, w.workload_id) },
        { title: "tenant", render: (w) => w.tenant_id },
        { title: "status", render: (w) => badge(w.status) },
        { title: "class", render: (w) => w.priority },
        { title: "type", render: (w) => w.workload_type },
        { title: "attempt", render: (w) => String(w.attempt), cls: "num" },
        { title: "submitted", render: (w) => fmt.ago(w.submitted_at) },
        { title: "started", render: (w) => fmt.ago(w.started_at) },
      ], items, { empty: "No workloads match.", rowProps: (w) => ({ dataset: { testid: "wl-row", id: w.workload_id, status: w.status } }) }),
      list.more ? el("button", {
        dataset: { testid: "more" },
        onclick: () => { pages += 1; refresh(); },
      }, `Show ${PAGE} more`) : null);
  }

  async function load() {
    let queue, list;
    try {
      [queue, list] = await Promise.all([api("/api/v1/queue"), fetchRows()]);
    } catch (e) {
      summaryBox.replaceChildren(errorBox(e));
      return;
    }
    tenantsSeen = queue.tenants.map((t) => t.tenant_id);
    filterBar.replaceChildren(
      ctx.me.admin ? select("tenant", ["", ...tenantsSeen], filters.tenant) : null,
      select("status", STATUSES, filters.status),
      select("class", ["", ...CLASSES], filters.klass));
    const shown = queue.tenants.filter((t) => !filters.tenant || t.tenant_id === filters.tenant);
    summaryBox.replaceChildren(
      el("div", { class: "stats" },
        el("div", { class: "stat" }, el("b", { dataset: { testid: "total-queued" } }, String(queue.total_queued)), " queued"),
        el("div", { class: "stat" }, el("b", { dataset: { testid: "total-running" } }, String(queue.total_running)), " running"),
        queue.fragmentation ? el("div", { class: "stat" },
          el("b", {}, fmt.num(queue.fragmentation.stranded_gpus)), " of ", fmt.num(queue.fragmentation.free_gpus), " free GPUs stranded") : null),
      section("Tenants: usage, quota (the mark), borrowing and fair share",
        shown.length ? shown.map(tenantRow) : el("p", { class: "muted" }, "No tenant has work running or queued, or a quota.")),
      section("Queue depth by priority class", depthByClass(shown)),
      section("Reservation", reservation(queue.reservation)));
    tableBox.replaceChildren(rowsTable(list));
    ready("queue");
  }

  root.append(el("h1", {}, "Queue"), filterBar, summaryBox, tableBox);
  const refresh = refresher(load);  // declared before load() runs: "more" calls it
  await load();
  return {
    // every change the queue shows is a workload changing (usage and depth included)
    refresh: (event) => { if (event === "workloads") refresh(); },
    unmount: () => refresh.cancel(),
  };
}
