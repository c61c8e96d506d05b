// A workload: header, timeline (every transition with its reason), placement, explain, logs
// (followed while it runs), result or error once ended, and cancel with an in-page confirm step.
// Everything comes from the REST routes the tab's key may call; another tenant's workload is a
// 404 there, and this page then shows that message and nothing else.
import { api, badge, el, errorBox, fmt, link, ready, refresher, section, table } from "../lib.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function kv(label, value, testid) {
  return el("div", { class: "wl-kv" }, el("span", { class: "muted" }, label),
    el("span", { dataset: testid ? { testid } : undefined }, value));
}

function header(w, admin) {
  const labels = Object.entries(w.labels || {});
  return [
    el("h1", {}, "Workload ", el("span", { class: "mono", dataset: { testid: "wl-id" } }, w.workload_id), " ",
      el("span", { dataset: { testid: "wl-status", status: w.status } }, badge(w.status))),
    el("div", { class: "wl-head" },
      // the admin may jump to the tenant's queue; a tenant's queue is its own already
      kv("tenant", admin ? link(`#/queue?tenant=${encodeURIComponent(w.tenant_id)}`, w.tenant_id) : w.tenant_id, "wl-tenant"),
      kv("type", w.workload_type, "wl-type"),
      kv("class", w.priority, "wl-class"),
      kv("attempt", String(w.attempt), "wl-attempt"),
      kv("submitted", fmt.time(w.submitted_at)),
      kv("started", fmt.time(w.started_at)),
      kv("finished", fmt.time(w.finished_at)),
      w.execution_time_ms != null ? kv("ran", fmt.span(w.execution_time_ms / 1000)) : null,
      w.queue_position != null ? kv("queue position", String(w.queue_position)) : null),
    w.reason ? el("p", { class: "wl-reason" }, el("span", { class: "muted" }, "now: "),
      el("span", { dataset: { testid: "wl-reason" } }, w.reason)) : null,
    labels.length ? el("div", { class: "wl-labels", dataset: { testid: "wl-labels" } },
      labels.map(([k, v]) => el("span", { class: "badge" }, `${k}=${v}`))) : null,
  ];
}

function timeline(w) {
  const hist = w.history || [];
  if (!hist.length) return el("p", { class: "muted" }, "No transitions recorded.");
  return el("ol", { class: "timeline", dataset: { testid: "timeline" } }, hist.map((h) =>
    el("li", { dataset: { testid: "history-entry", status: h.status } },
      badge(h.status), " ",
      el("span", { class: "muted" }, fmt.time(h.at)), " ",
      el("span", { class: "muted" }, `attempt ${h.attempt}`),
      h.reason ? el("div", { class: "h-reason", dataset: { testid: "history-reason" } }, h.reason) : null)));
}

function placement(w) {
  const rows = Array.isArray(w.placement) ? w.placement : [];
  if (!rows.length) {
    return el("p", { class: "muted", dataset: { testid: "placement-none" } },
      TERMINAL.has(w.status) ? "Not placed (or no longer held)." : "Not placed yet.");
  }
  return table([
    { title: "bundle", render: (p) => String(p.bundle ?? "—"), cls: "num" },
    { title: "node", render: (p) => el("span", { class: "mono", dataset: { testid: "placement-node" } }, p.node_id || "—") },
    { title: "GPU indices", render: (p) => (p.gpu_indices && p.gpu_indices.length ? p.gpu_indices.join(", ") : "—") },
    // observed: read back from the worker; otherwise the indices Orion assigned
    { title: "source", render: (p) => (p.gpu_indices_observed ? "observed" : "assigned") },
  ], rows, { rowProps: (p) => ({ dataset: { testid: "placement-row", node: p.node_id || "" } }) });
}

function explainBox(x) {
  const pos = x.position || {};
  return el("div", {},
    el("div", { class: "wl-head" },
      kv("position overall", pos.overall == null ? "—" : String(pos.overall), "explain-overall"),
      kv("position in tenant", pos.tenant == null ? "—" : String(pos.tenant), "explain-tenant"),
      kv("estimated start", x.estimated_start ? `${fmt.time(x.estimated_start)} (${fmt.ago(x.estimated_start)})` : "—", "explain-start"),
      kv("estimated completion", x.estimated_completion ? `${fmt.time(x.estimated_completion)} (${fmt.ago(x.estimated_completion)})` : "—", "explain-completion")),
    el("ul", { class: "reasons" }, (x.reasons || []).map((r) =>
      el("li", { dataset: { testid: "explain-reason", code: r.code } },
        el("code", {}, r.code), " ", r.message))));
}

function outcome(w) {
  if (!TERMINAL.has(w.status)) return null;
  if (w.error) {
    return section("Error", el("pre", { class: "error", dataset: { testid: "wl-error" } },
      typeof w.error === "string" ? w.error : JSON.stringify(w.error, null, 2)));
  }
  if (w.result !== null && w.result !== undefined) {
    return section("Result", el("pre", { class: "result", dataset: { testid: "wl-result" } },
      typeof w.result === "string" ? w.result : JSON.stringify(w.result, null, 2)));
  }
  return section("Outcome", el("p", { class: "muted", dataset: { testid: "wl-result" } }, `Ended ${w.status}, no result.`));
}

export async function mount(root, ctx) {
  const id = ctx.args[0] || "";
  const path = `/api/v1/workloads/${encodeURIComponent(id)}`;
  const headBox = el("div", { class: "card" }), actBox = el("div", { class: "wl-actions" });
  const timelineBox = el("div"), placementBox = el("div"), explainCard = el("div"), outcomeBox = el("div");
  // The <pre> lives across refreshes so a reader's scroll position survives the next fetch.
  const logs = el("pre", { class: "logs", dataset: { testid: "logs" } }, "");
  const logsNote = el("p", { class: "muted" });
  let w = null, gone = false, confirming = false, logsFinal = false;

  function renderActions() {
    if (!w || TERMINAL.has(w.status)) return actBox.replaceChildren();
    if (!confirming) {
      return actBox.replaceChildren(el("button", {
        class: "danger", dataset: { testid: "cancel" },
        onclick: () => { confirming = true; renderActions(); },
      }, "Cancel workload…"));
    }
    // in-page confirm (window.confirm would block the page, and tests)
    actBox.replaceChildren(el("div", { class: "confirm", role: "alertdialog", dataset: { testid: "cancel-confirm-box" } },
      `Cancel ${w.workload_id}? A running workload is stopped; this cannot be undone. `,
      el("button", { class: "danger", dataset: { testid: "cancel-confirm" }, onclick: doCancel }, "Yes, cancel it"), " ",
      el("button", { dataset: { testid: "cancel-keep" }, onclick: () => { confirming = false; renderActions(); } }, "Keep it")));
  }

  async function doCancel(ev) {
    ev.target.disabled = true;
    try {
      const now = await api(path, { method: "DELETE" });
      confirming = false;
      if (now && now.workload_id) render(now);
    } catch (e) {
      ev.target.disabled = false;  // it may be tried again
      actBox.append(errorBox(e));
      return;
    }
    refresh();  // the history and final status follow (the stream refreshes it too)
  }

  function render(next) {
    w = next;
    headBox.replaceChildren(...header(w, ctx.me.admin).filter(Boolean), actBox);
    renderActions();
    timelineBox.replaceChildren(section(`Timeline (${(w.history || []).length})`, timeline(w)));
    placementBox.replaceChildren(section("Placement", placement(w)));
    outcomeBox.replaceChildren(outcome(w) || "");
    if (TERMINAL.has(w.status)) explainCard.replaceChildren();
  }

  async function loadLogs() {
    let text;
    try {
      text = await api(`${path}/logs`, { text: true });
    } catch (e) {
      logsNote.replaceChildren(errorBox(e));
      return;
    }
    const note = TERMINAL.has(w.status) ? "Final output." : "Following: refreshed as the workload changes and every few seconds.";
    logsNote.replaceChildren(text ? note : `No output yet. ${TERMINAL.has(w.status) ? "" : note}`);
    logs.hidden = !text;
    if (logs.textContent === text) return;
    // keep following the tail only if the reader was at the bottom (or it was empty)
    const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 8;
    logs.textContent = text || "";
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  }

  async function loadExplain() {
    try {
      const x = await api(`${path}/explain`);
      const title = x.status === "running" ? "Explain" : "Explain: why not running yet, and when";
      explainCard.replaceChildren(section(title, explainBox(x)));
    } catch (e) {
      explainCard.replaceChildren(section("Explain", errorBox(e)));
    }
  }

  async function load() {
    if (gone) return;
    let next;
    try {
      next = await api(path);
    } catch (e) {
      if (e.status === 404) {  // unknown, or another tenant's: the same answer, nothing of it shown
        gone = true;
        root.replaceChildren(el("h1", {}, "Workload"),
          el("div", { class: "error", role: "alert", dataset: { testid: "not-found" } },
            `404: no workload ${id} that this key may see.`));
        ready("workload");
        return;
      }
      headBox.replaceChildren(errorBox(e));
      ready("workload");
      return;
    }
    render(next);
    const ended = TERMINAL.has(next.status);
    await Promise.all([
      ended ? null : loadExplain(),
      ended && logsFinal ? null : loadLogs(),
    ]);
    if (ended) logsFinal = true;  // fetched once after the end: the output no longer changes
    ready("workload");
  }

  root.append(headBox,
    el("div", { class: "cols" }, timelineBox, el("div", {}, placementBox, explainCard)),
    outcomeBox,
    section("Logs", logsNote, logs));
  const refresh = refresher(load);
  await load();
  return {
    refresh: (event) => { if (event === "workloads" || event === "tick") refresh(); },
    unmount: () => { gone = true; refresh.cancel(); },
  };
}
