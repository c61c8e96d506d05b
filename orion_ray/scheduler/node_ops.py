"""Nodes in the scheduler: lifecycle tracking, cordon, drain, lost nodes, and the infrastructure views.

The state machine is pure (``policy/node_lifecycle.py``); this module applies its transitions to the
running scheduler: a *lost* node's workloads go back to the queue as a new attempt (the run's
infrastructure failed, not the workload), an *overdue* drain preempts what is left on the node, and
every change is a ``node`` event in the store's scaling events. Cordons and drains are persisted so
a restarted scheduler keeps honouring them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Optional

from ..errors import Conflict, NotFound, ValidationError
from ..models import iso
from ..policy.live_placement import LivePlacer, stranded_gpus
from ..policy.node_lifecycle import NodeBook, NodeRecord, Transition
from ..status import Status

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("orion.scheduler")

OPS_SETTING = "node_ops"
NODE_CHECK_S = 1.0
DEFAULT_DRAIN_DEADLINE_S = 300.0
MAX_DRAIN_DEADLINE_S = 7 * 86400.0


def load_book(store) -> NodeBook:
    """The node book with the persisted cordons and drains."""
    return NodeBook(store.get_setting(OPS_SETTING, None))


def work_by_node(sched: "Scheduler") -> dict[str, list[str]]:
    """Orion workloads holding bundles on each node (reserved, starting, running or stopping)."""
    out: dict[str, list[str]] = defaultdict(list)
    for wid, held in sched.book.reservations.items():
        for node in {h.node_id for h in held}:
            out[node].append(wid)
    return out


def check_nodes(sched: "Scheduler") -> list[Transition]:
    """Observe Ray's nodes; requeue the work of lost nodes; finish or enforce drains."""
    now = sched.clock()
    work = work_by_node(sched)
    alive = sched.runtime.nodes()
    if not alive and sched.nodebook.nodes:
        # the scheduler runs on a node, so "no node" is a bad read, not every node lost
        log.warning("Ray reported no alive node; skipping this node check")
        return []
    deaths = sched.runtime.node_deaths()
    changes = sched.nodebook.observe(alive, {n: len(w) for n, w in work.items()}, now, deaths)
    for t in changes:
        record(sched, t)
        if t.after == "lost":
            for wid in work.get(t.node_id, []):
                _requeue_lost(sched, wid, t.node_id)
    for node in sched.nodebook.overdue(now):
        for wid in work.get(node, []):
            w = sched.book.active.get(wid)
            if w is not None and w.status in (Status.STARTING, Status.RUNNING):
                sched.driver.preempt(w, f"drain of node {node}")
    if changes:
        sched.metrics.set_nodes(sched.nodebook.counts())
        sched.wake()
    return changes


def _requeue_lost(sched: "Scheduler", wid: str, node: str) -> None:
    """The node under ``wid`` is gone: its run cannot finish. Back to the queue as a new attempt,
    not counted as a failure of the workload (like Kubernetes' disruption condition)."""
    w = sched.book.active.get(wid)
    if w is None or w.status.terminal or w.status == Status.QUEUED:
        return
    # stored first: when the store refuses, the run keeps its driver, which sees it lost in Ray
    sched.book.requeue(w, f"node {node} lost", new_attempt=True, backoff=False)
    sched.driver.abandon(w)
    sched.store.audit("scheduler", "node_lost_requeue", wid, {"node_id": node}, sched.clock())


def record(sched: "Scheduler", t: Transition, who: str = "scheduler") -> None:
    """A node change as a ``node`` scaling event (and in the log)."""
    log.info("node %s: %s -> %s (%s)", t.node_id, t.before, t.after, t.reason)
    try:
        sched.store.add_scaling_event(
            {
                "at": t.at,
                "kind": "node",
                "pool": t.pool,
                "node_id": t.node_id,
                "trigger": who,
                "reason": t.reason,
                "outcome": t.after,
                "from": t.before,
            }
        )
    except Exception:  # an event is a record, never a reason to stop observing
        log.warning("could not record node event", exc_info=True)


def _persist(sched: "Scheduler") -> None:
    sched.store.put_setting(OPS_SETTING, sched.nodebook.ops())


def _record_of(sched: "Scheduler", node_id: str) -> NodeRecord:
    check_nodes(sched)  # a node that joined a moment ago is known
    rec = sched.nodebook.get(node_id)
    if rec is None:
        raise NotFound(f"no node {node_id!r}")
    return rec


def _op(sched: "Scheduler", node_id: str, fn, *args) -> Transition:
    _record_of(sched, node_id)
    try:
        return fn(node_id, sched.clock(), *args)
    except LookupError as exc:  # terminated or lost: nothing to operate on
        raise Conflict(str(exc).strip("'")) from None


def cordon(sched: "Scheduler", node_id: str, who: str, reason: Optional[str] = None) -> dict:
    """No new placements on the node; its running work is left alone."""
    t = _op(sched, node_id, sched.nodebook.cordon, reason or f"cordoned by {who}")
    _persist(sched)
    record(sched, t, who)
    sched.store.audit(who, "cordon", node_id, {"reason": reason}, sched.clock())
    sched.wake()
    return node_view(sched, sched.nodebook.get(node_id))


def uncordon(sched: "Scheduler", node_id: str, who: str) -> dict:
    """Placements allowed again (a drain under way is called off)."""
    t = _op(sched, node_id, sched.nodebook.uncordon)
    _persist(sched)
    record(sched, t, who)
    sched.store.audit(who, "uncordon", node_id, {}, sched.clock())
    sched.wake()
    return node_view(sched, sched.nodebook.get(node_id))


def drain(
    sched: "Scheduler",
    node_id: str,
    who: str,
    deadline_s: Optional[float] = None,
    reason: Optional[str] = None,
) -> dict:
    """Cordon; let running work end until the deadline; then preempt what is left back to the
    queue; the node is then *drained* and the autoscaler may release it."""
    deadline_s = DEFAULT_DRAIN_DEADLINE_S if deadline_s is None else float(deadline_s)
    if not 0 <= deadline_s <= MAX_DRAIN_DEADLINE_S:
        raise ValidationError(
            "invalid drain deadline",
            [{"field": "deadline_s", "problem": f"must be between 0 and {MAX_DRAIN_DEADLINE_S:g}"}],
        )
    busy = len(work_by_node(sched).get(node_id, []))
    t = _op(sched, node_id, sched.nodebook.drain, deadline_s, busy, reason or f"drain by {who}")
    _persist(sched)
    record(sched, t, who)
    sched.store.audit(who, "drain", node_id, {"deadline_s": deadline_s, "reason": reason}, sched.clock())
    check_nodes(sched)  # a zero deadline preempts now
    return node_view(sched, sched.nodebook.get(node_id))


# == views ========================================================================================
def full_placer(sched: "Scheduler") -> LivePlacer:
    """The placer over every alive node, cordoned ones included (for the infrastructure views)."""
    return sched.placer(sched.runtime.nodes())


def node_view(
    sched: "Scheduler",
    rec: Optional[NodeRecord],
    free: Optional[dict] = None,
    work: Optional[list[str]] = None,
) -> dict[str, Any]:
    if rec is None:
        return {}
    if work is None:
        work = work_by_node(sched).get(rec.node_id, [])
    return {
        "node_id": rec.node_id,
        "status": rec.status,
        "state": rec.state,
        "schedulable": rec.schedulable,
        "cordoned": rec.cordoned,
        "cordon_reason": rec.cordon_reason or None,
        "pool": rec.pool,
        "gpu_type": rec.gpu_type,
        "resources": rec.total,
        "free": {k: round(v, 6) for k, v in (free or {}).items()} if free is not None else None,
        "workloads": sorted(work),
        "registered_at": iso(rec.first_seen),
        "ready_at": iso(rec.ready_at),
        "last_seen": iso(rec.last_seen),
        "idle_since": iso(rec.idle_since),
        "drain_deadline": iso(rec.drain_deadline),
        "ended_at": iso(rec.ended_at),
        "labels": rec.labels,
        "history": [{"state": st, "at": iso(at), "reason": why} for st, at, why in rec.history[-20:]],
    }


def nodes(sched: "Scheduler", include_ended: bool = True) -> dict[str, Any]:
    """Every node with its lifecycle state, free capacity (Orion's account) and workloads."""
    check_nodes(sched)
    placer = full_placer(sched)
    free = {n.node_id: n.free for n in placer.nodes}
    work = work_by_node(sched)
    items = [
        node_view(sched, r, free.get(r.node_id), work.get(r.node_id, []))
        for r in sorted(sched.nodebook.nodes.values(), key=lambda r: (r.first_seen, r.node_id))
        if include_ended or r.state not in ("terminated", "lost")
    ]
    # nodes asked of the Ray autoscaler and not registered yet have no id: counted per pool
    provisioning = [
        {"pool": p["pool"], "nodes": p.get("provisioning", 0)}
        for p in (sched.autoscaler_status or {}).get("pools", [])
        if p.get("provisioning")
    ]
    return {"items": items, "counts": sched.nodebook.counts(), "provisioning": provisioning}


def node_samples(sched: "Scheduler") -> list[dict[str, Any]]:
    """What the autoscaler needs per live node: pool, totals, free, work, idleness, state and
    fragmentation (share of its free GPU capacity the engine counts as stranded)."""
    check_nodes(sched)
    placer = full_placer(sched)
    stranded = {r["node_id"]: r for r in stranded_gpus(placer.snapshot(), sched.placement_policy)}
    work = work_by_node(sched)
    out = []
    for n in placer.nodes:
        rec = sched.nodebook.get(n.node_id)
        if rec is None:
            continue
        st = stranded.get(n.node_id, {})
        free_gpu = float(st.get("free_gpus", 0.0) or 0.0)
        frag = float(st.get("stranded_gpus", 0.0) or 0.0) / free_gpu if free_gpu else 0.0
        state = rec.state if rec.state != "ready" else ("cordoned" if rec.cordoned else "ready")
        out.append(
            {
                "node_id": n.node_id,
                "pool": rec.pool,
                "total": dict(n.total),
                "free": {k: max(0.0, v) for k, v in n.free.items()},
                "running": len(work.get(n.node_id, [])),
                "state": state,
                "idle_since": rec.idle_since,
                "fragmentation": round(frag, 6),
                "labels": dict(n.labels),
                "available": n.available,
            }
        )
    return out


def pending_gangs(sched: "Scheduler") -> list[dict[str, Any]]:
    """Queued gangs waiting for capacity (not for quota): the autoscaler's demand from Orion."""
    out = []
    for w in sched.book.queued():
        codes = {r.get("code") for r in sched.book.wait_reasons.get(w.workload_id, [])}
        if "quota" in codes:
            continue  # more nodes would not let it start
        bundles, types, strategy, _ = sched.book.shape(w)
        out.append(
            {
                "workload_id": w.workload_id,
                "tenant_id": w.tenant_id,
                "priority": w.priority.value,
                "bundles": bundles,
                "gpu_types": types,
                "strategy": strategy,
                "queued_since": w.submitted_at,
                "pool": w.spec.metadata.labels.get("orion.io/pool"),
            }
        )
    return out


def resources_available(sched: "Scheduler") -> dict[str, Any]:
    """Free GPUs (Orion's account: minus Orion's holds and others' usage) by type and by node;
    cordoned and draining nodes are listed but not counted as available."""
    placer = full_placer(sched)
    unsched = sched.nodebook.unschedulable()
    by_type: dict[str, float] = defaultdict(float)
    per_node = []
    for n in placer.nodes:
        gpus = max(0.0, n.free.get("GPU", 0.0))
        gtype = n.labels.get("ray.io/accelerator-type") or "unknown"
        ok = n.node_id not in unsched
        if ok and n.total.get("GPU"):
            by_type[gtype] += gpus
        per_node.append(
            {
                "node_id": n.node_id,
                "gpu_type": gtype if n.total.get("GPU") else None,
                "gpus_total": n.total.get("GPU", 0.0),
                "gpus_free": round(gpus, 6),
                "cpus_free": round(max(0.0, n.free.get("CPU", 0.0)), 6),
                "schedulable": ok,
            }
        )
    return {
        "gpus_free_by_type": {k: round(v, 6) for k, v in by_type.items()},
        "gpus_free": round(sum(by_type.values()), 6),
        "nodes": per_node,
    }


AUTOSCALER_STALE_S = 30.0


def gpu_utilization(sched: "Scheduler", autoscaler: dict) -> dict[str, Any]:
    """Per GPU node: GPUs allocated (Orion's holds and others' usage) and NVML telemetry as the
    autoscaler last read it — on a node without an NVIDIA device, that status says so."""
    placer = full_placer(sched)
    telemetry = autoscaler.get("gpu_telemetry") or {}
    items, total, used = [], 0.0, 0.0
    for n in placer.nodes:
        gpus = n.total.get("GPU", 0.0)
        if not gpus:
            continue
        alloc = gpus - max(0.0, n.free.get("GPU", 0.0))
        total, used = total + gpus, used + alloc
        tel = telemetry.get(n.node_id) or {
            "status": "unknown",
            "reason": "not read yet (the autoscaler reads NVML every 15 s)",
        }
        items.append(
            {
                "node_id": n.node_id,
                "gpu_type": n.labels.get("ray.io/accelerator-type"),
                "gpus": gpus,
                "allocated": round(alloc, 6),
                "allocation_pct": round(100 * alloc / gpus, 2),
                "device": tel,
            }
        )
    return {
        "nodes": items,
        "gpus": total,
        "allocated": round(used, 6),
        "allocation_pct": round(100 * used / total, 2) if total else 0.0,
    }


def infrastructure_health(sched: "Scheduler", autoscaler: dict, scheduler_health: dict) -> dict[str, Any]:
    """Is the infrastructure side healthy: nodes by state, lost nodes in the last hour, the
    scheduler's loop, and the autoscaler's loop (from its last report)."""
    check_nodes(sched)
    now = sched.clock()
    lost = [
        node_view(sched, r, work=[])
        for r in sched.nodebook.nodes.values()
        if r.state == "lost" and r.ended_at and now - r.ended_at < 3600
    ]
    at = autoscaler.get("received_at")
    if not at:
        auto = "not_running"
    elif now - at > AUTOSCALER_STALE_S:
        auto = "stale"
    else:
        auto = autoscaler.get("loop", "ok")
    counts = sched.nodebook.counts()
    ok = scheduler_health.get("scheduler") == "ok" and auto in ("ok", "not_running") and not lost
    return {
        "status": "ok" if ok else "degraded",
        "nodes": counts,
        "lost_last_hour": [
            {"node_id": r["node_id"], "ended_at": r["ended_at"], "pool": r["pool"]} for r in lost
        ],
        "scheduler": scheduler_health.get("scheduler"),
        "store": scheduler_health.get("store"),
        "autoscaler": {
            "status": auto,
            "last_report": iso(at) if at else None,
            "ray_autoscaler": autoscaler.get("ray_autoscaler"),
            "last_error": autoscaler.get("last_error"),
            "pools": autoscaler.get("pools", []),
        },
    }
