// Serving: models, their versions and replicas, the release (phase, live weights, per-version error
// rate and latency) and recent serving events; the admin can roll a release back.
//
// Every /internal route is the admin's (a tenant key gets 403), so a tenant's page reads only
// /v1/models: the models its key may call (its own and the shared ones) and their versions.
import { api, badge, el, errorBox, fmt, ready, refresher, section, table } from "../lib.js";

const EVENTS = 30;

const ms = (s) => (s === null || s === undefined ? "—" : `${fmt.num(s * 1000, 0)} ms`);
const when = (epoch) => fmt.time(new Date(epoch * 1000).toISOString());

// A deployment's replica target as its spec asks: a fixed count, or autoscaling's bounds.
function target(spec) {
  if (spec.autoscaling) return `${spec.autoscaling.min_replicas}–${spec.autoscaling.max_replicas}`;
  return String(spec.replicas ?? 1);
}

// The versions in reading order: the release's stable one, its candidate, then the rest by name.
function order(versions, rel) {
  const first = rel ? [rel.spec.stable, rel.spec.candidate].filter(Boolean) : [];
  return [...new Set([...first.filter((v) => versions.includes(v)), ...[...versions].sort()])];
}

// The live weights as one stacked bar (a colour per version, as in the legend under it).
function weightsBar(versions, weights) {
  const total = versions.reduce((s, v) => s + (weights[v] || 0), 0) || 1;
  return el("div", {},
    // a version without traffic has no segment (its colour stays its own: by position in the list)
    el("div", { class: "weights", dataset: { testid: "weights" } }, versions.map((v, i) => !(weights[v] > 0) ? null :
      el("div", {
        class: `w${i % 4}`, title: `${v}: ${fmt.num(weights[v] || 0)} %`,
        style: `width:${(((weights[v] || 0) / total) * 100).toFixed(2)}%`,
        dataset: { testid: "weight", version: v },
      }, `${v} ${fmt.num(weights[v])} %`))),
    el("div", { class: "legend" }, versions.map((v, i) => el("span", {},
      el("span", { class: `swatch w${i % 4}` }), ` ${v} `,
      el("b", { dataset: { testid: "weight-value", version: v } }, fmt.num(weights[v] || 0)), " %"))));
}

function criteria(spec) {
  const c = spec.success_criteria;
  if (!c || !spec.candidate) return null;
  const parts = [`error rate over ${fmt.pct(c.error_rate, 1)}`];
  if (c.latency_p95 !== null && c.latency_p95 !== undefined) parts.push(`p95 over ${ms(c.latency_p95)}`);
  return `Rolls back on ${parts.join(" or ")}, judged after ${c.min_requests} answers from ${spec.candidate}.`;
}

function releaseHead(rel) {
  const spec = rel.spec;
  const steps = spec.steps && spec.steps.length && rel.phase === "running" ? ` · step ${rel.step + 1} of ${spec.steps.length}` : "";
  return el("div", { class: "release-head" },
    el("span", { dataset: { testid: "strategy" } }, spec.strategy || "weighted"), " ",
    el("span", { dataset: { testid: "phase", phase: rel.phase } }, badge(rel.phase)), el("span", { class: "muted" }, steps),
    spec.shadow ? el("span", { class: "muted" }, ` · shadow ${spec.shadow.percent} % to ${spec.shadow.version}`) : null,
    rel.window && spec.candidate ? el("span", { class: "muted" }, ` · current window since ${when(rel.window.since)}`) : null);
}

// The rollback control: a button, then an in-page confirm step, then the answer of the route.
function rollbackBox(model, rel, ui, act) {
  const result = ui.results[model];
  const out = result ? el("div", { class: result.ok ? "ok-box" : "error", dataset: { testid: "rollback-result" } }, result.text) : null;
  if (ui.confirming === model) {
    return el("div", { class: "rollback" },
      el("span", {}, `Send all of ${model}'s traffic back to ${rel.spec.stable}?`), " ",
      el("button", { class: "danger", dataset: { testid: "rollback-confirm" }, disabled: ui.busy, onclick: () => act.confirm(model) }, "Roll back"), " ",
      el("button", { dataset: { testid: "rollback-cancel" }, disabled: ui.busy, onclick: () => act.cancel() }, "Cancel"), out);
  }
  // nothing to roll back once every bit of traffic is on the stable version
  const off = Object.entries(rel.weights).some(([v, w]) => v !== rel.spec.stable && w > 0);
  if (!off) return el("div", { class: "rollback muted" }, `All traffic on ${rel.spec.stable}.`, out);
  return el("div", { class: "rollback" },
    el("button", { dataset: { testid: "rollback" }, onclick: () => act.ask(model) }, "Rollback…"),
    el("span", { class: "muted" }, ` sends all traffic to ${rel.spec.stable}`), out);
}

function modelCard(model, deps, rel, ui, act) {
  const byVersion = Object.fromEntries(deps.map((d) => [d.version, d]));
  const versions = order([...new Set([...Object.keys(byVersion), ...(rel ? Object.keys(rel.weights) : [])])], rel);
  const weights = rel ? rel.weights : { [deps.slice().sort((a, b) => a.since - b.since)[0].version]: 100 };
  const stats = (v) => (rel && rel.stats && rel.stats[v]) || null;
  const owner = deps[0].tenant_id;
  return el("section", { class: "card", dataset: { testid: "model", model } },
    el("h2", {}, model, " ", el("span", { class: "muted", dataset: { testid: "owner" } }, owner ? `tenant ${owner}` : "shared")),
    rel ? releaseHead(rel) : el("p", { class: "muted", dataset: { testid: "no-release" } }, "No release: all traffic to its first version."),
    weightsBar(versions, weights),
    table([
      { title: "version", render: (v) => el("b", {}, v) },
      { title: "status", render: (v) => (byVersion[v] ? badge(byVersion[v].status) : badge("not deployed")) },
      { title: "replicas ready / target", cls: "num", render: (v) => (byVersion[v]
        ? el("span", { dataset: { testid: "replicas" } }, `${byVersion[v].running_replicas} / ${target(byVersion[v].spec)}`) : "—") },
      { title: "engine", render: (v) => (byVersion[v] ? byVersion[v].engine : "—") },
      { title: "GPU / replica", cls: "num", render: (v) => (byVersion[v] ? fmt.num(byVersion[v].gpus_per_replica) : "—") },
      { title: "restarts", cls: "num", render: (v) => (byVersion[v] ? String(byVersion[v].restarts) : "—") },
      { title: "weight", cls: "num", render: (v) => `${fmt.num(weights[v] || 0)} %` },
      { title: "requests", cls: "num", render: (v) => el("span", { dataset: { testid: "requests" } }, stats(v) ? String(stats(v).requests) : "—") },
      { title: "error rate", cls: "num", render: (v) => el("span", { dataset: { testid: "error-rate" } }, stats(v) ? fmt.pct(stats(v).error_rate, 1) : "—") },
      { title: "p95 latency", cls: "num", render: (v) => el("span", { dataset: { testid: "latency" } }, stats(v) ? ms(stats(v).latency_p95) : "—") },
    ], versions, { rowProps: (v) => ({ dataset: { testid: "version", version: v } }) }),
    rel && rel.window && rel.spec.candidate && rel.window.stats[rel.spec.candidate]
      ? el("p", { class: "muted", dataset: { testid: "window" } },
        `This window, ${rel.spec.candidate}: ${rel.window.stats[rel.spec.candidate].requests} answers, `
        + `${fmt.pct(rel.window.stats[rel.spec.candidate].error_rate, 1)} errors, p95 ${ms(rel.window.stats[rel.spec.candidate].latency_p95)}. `,
        criteria(rel.spec) || "")
      : null,
    rel && ui.admin ? rollbackBox(model, rel, ui, act) : null);
}

function eventsTable(events) {
  return table([
    { title: "when", render: (e) => when(e.at) },
    { title: "model", render: (e) => e.model_id },
    { title: "event", render: (e) => badge(e.kind) },
    { title: "what", render: (e) => e.message },
  ], events, { empty: "No serving events yet.", rowProps: (e) => ({ dataset: { testid: "event", kind: e.kind, model: e.model_id } }) });
}

// The tenant's page: what /v1/models gives its key, nothing else.
async function loadTenant(box, me) {
  const models = (await api("/v1/models")).data;
  box.replaceChildren(
    el("p", { class: "muted" }, "The models this key may call: its own and the shared ones. Replicas, releases and rollback are the admin's."),
    models.length ? el("div", {}, models.map((m) => el("section", { class: "card", dataset: { testid: "model", model: m.id } },
      el("h2", {}, m.id, " ", el("span", { class: "muted", dataset: { testid: "owner" } }, m.owned_by === "shared" ? "shared" : `tenant ${me.tenant_id}`)),
      el("div", {}, "versions ", m.versions.map((v) => [badge(v, "version"), " "]))))) : el("p", { class: "muted empty" }, "No models for this key."));
}

async function loadAdmin() {
  // four calls whatever the number of models (every release comes in one answer)
  const [deps, rels, events, gpus] = await Promise.all([
    api("/internal/deployments"), api("/internal/releases"), api(`/internal/events?limit=${EVENTS}`),
    api("/internal/serving/gpus")]);
  const byModel = new Map();
  for (const d of deps.items) {
    if (!byModel.has(d.model_id)) byModel.set(d.model_id, []);
    byModel.get(d.model_id).push(d);
  }
  const models = [...byModel.keys()].sort();
  const byRelease = new Map(rels.items.map((r) => [r.model_id, r]));
  const releases = models.map((m) => byRelease.get(m) || null); // none: the model has no release
  return { deps: deps.items, byModel, models, releases, events: events.items, gpus };
}

function renderAdmin(box, data, ui, act) {
  box.replaceChildren(
    el("div", { class: "stats" },
      el("div", { class: "stat" }, el("b", { dataset: { testid: "model-count" } }, String(data.models.length)), " models"),
      el("div", { class: "stat" }, el("b", {}, String(data.deps.length)), " versions deployed"),
      el("div", { class: "stat" }, el("b", {}, fmt.num(data.gpus.total)), " GPUs held by serving")),
    // replaceChildren takes nodes, not arrays: the cards go in one wrapper
    data.models.length ? el("div", {}, data.models.map((m, i) => modelCard(m, data.byModel.get(m), data.releases[i], ui, act)))
      : el("p", { class: "muted empty", dataset: { testid: "no-models" } }, "Nothing is deployed."),
    section("Recent serving events", eventsTable(data.events)));
}

export async function mount(root, ctx) {
  const box = el("div", {});
  const ui = { admin: ctx.me.admin, confirming: null, busy: false, results: {} };
  let last = null; // the admin's last answers: the confirm step redraws from them, no fetch
  const redraw = () => { if (last) renderAdmin(box, last, ui, act); };
  const act = {
    ask: (m) => { ui.confirming = m; delete ui.results[m]; redraw(); },
    cancel: () => { ui.confirming = null; redraw(); },
    confirm: async (m) => {
      ui.busy = true;
      redraw();
      try {
        const rel = await api(`/internal/models/${encodeURIComponent(m)}/rollback`, { method: "POST" });
        const w = Object.entries(rel.weights).map(([v, x]) => `${v} ${fmt.num(x)} %`).join(", ");
        ui.results[m] = { ok: true, text: `Rolled back: phase ${rel.phase}, weights ${w}.` };
      } catch (e) {
        ui.results[m] = { ok: false, text: `Rollback failed: ${e.status || ""} ${e.message}` };
      }
      ui.busy = false;
      ui.confirming = null;
      refresh(); // the release's new phase and weights, and the rollback's event
    },
  };

  async function load() {
    try {
      if (ctx.me.admin) {
        last = await loadAdmin();
        renderAdmin(box, last, ui, act);
      } else {
        await loadTenant(box, ctx.me);
      }
    } catch (e) {
      box.replaceChildren(errorBox(e));
    }
    ready("serving");
  }

  root.append(el("h1", {}, "Serving"), box);
  const refresh = refresher(load, 300);
  await load();
  return {
    // serving changes have no event of their own: the 5 s tick keeps phases and weights live
    refresh: (event) => { if (event === "tick") refresh(); },
    unmount: () => refresh.cancel(),
  };
}
