"""Read-only views over the scheduler's state: explain, the queue, tenant usage.

They answer "why is my job pending?" from what the cycle recorded (each queued workload keeps the
reason it was not admitted) and from the queue order itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Optional

from ..models import Workload, iso
from ..policy.live_placement import fragmentation_summary, stranded_gpus
from ..status import Status
from . import capacity_signal, estimates
from .policy_bridge import allocated, capacity, running_items

if TYPE_CHECKING:
    from .core import Scheduler


def usage_by_tenant(sched: "Scheduler") -> dict[str, dict[str, float]]:
    """Resources held right now (starting, running and stopping workloads) per tenant, in quota
    units (``cpu``, ``gpu``, ``memory``, ``gpu:<type>``)."""
    usage = allocated(running_items(sched.book, sched.clock()))
    for t, u in sched.serving_usage.items():  # serving replicas count against the same quotas
        for k, v in u.items():
            usage[t][k] += v
    return {t: {k: round(v, 6) for k, v in u.items()} for t, u in usage.items()}


def explain(sched: "Scheduler", w: Workload, now: float) -> dict[str, Any]:
    """Where the workload stands, every reason it is not running, and when it is expected to."""
    reasons: list[dict[str, str]] = []
    position: dict[str, Optional[int]] = {"tenant": None, "overall": None}
    start = end = None
    if w.status == Status.QUEUED:
        order = [c for c in estimates.ordered(sched)]
        ids = [c.workload_id for c in order]
        mine = [c.workload_id for c in order if c.tenant == w.tenant_id]
        position = {"overall": ids.index(w.workload_id) + 1, "tenant": mine.index(w.workload_id) + 1}
        ahead = order[: position["overall"] - 1]
        reasons = queued_reasons(
            w,
            now,
            sched.book.wait_reasons.get(w.workload_id, []),
            higher=sum(1 for c in ahead if c.rank < w.priority.rank),
            same=sum(1 for c in ahead if c.rank == w.priority.rank),
            scaling=capacity_signal.waiting_reason(sched, w),
        )  # what the autoscaler does about it
        if not reasons:
            reasons.append(
                {"code": "next_cycle", "message": "eligible: the next scheduling cycle will consider it"}
            )
        start, end = estimates.estimates(sched).get(w.workload_id, (None, None))
        if start is None:
            reasons.append(
                {
                    "code": "no_estimate",
                    "message": "no estimate: nothing expected to end frees enough for it, or it is "
                    f"beyond the first {estimates.HORIZON} in the queue",
                }
            )
    else:
        reasons.append(state_reason(w))
    return explain_body(w, position, reasons, start, end)


def queued_reasons(
    w: Workload,
    now: float,
    stored: list[dict[str, Any]],
    *,
    higher: int,
    same: int,
    scaling: Optional[dict[str, Any]] = None,
) -> list[dict[str, Any]]:
    """The reasons a queued workload waits that need no forecast: its backoff, the last cycle's
    reasons (``stored``), what the autoscaler does about it (``scaling``, live only) and what is
    ahead of it; the scheduler and the API replica both use it."""
    reasons: list[dict[str, Any]] = []
    if w.not_before > now:
        reasons.append(
            {
                "code": "backoff",
                "message": f"backing off until {iso(w.not_before)} ({w.reason or 'requeued'})",
            }
        )
    reasons += [dict(r) for r in stored]
    if scaling is not None:
        reasons.append(scaling)
    if higher:
        reasons.append(
            {"code": "priority", "message": f"{higher} workload(s) of a higher priority class are ahead"}
        )
    if same:
        reasons.append(
            {
                "code": "order",
                "message": f"{same} workload(s) of its class are ahead (deadlines first, then "
                "the tenant with the smallest weighted fair share)",
            }
        )
    return reasons


def state_reason(w: Workload) -> dict[str, str]:
    """Why a workload that is not queued is not running (or that it is, or has ended)."""
    if w.status == Status.STARTING:
        return {
            "code": "placement_pending",
            "message": "its placement group is requested; waiting for Ray to reserve it",
        }
    if w.status == Status.PREEMPTED:
        return {"code": "preempted", "message": w.reason or "preempted; stopping"}
    if w.status == Status.RUNNING:
        return {"code": "running", "message": "running"}
    return {"code": "finished", "message": f"finished: {w.status.value}"}


def explain_body(
    w: Workload,
    position: dict[str, Optional[int]],
    reasons: list[dict[str, Any]],
    start: Optional[float],
    end: Optional[float],
) -> dict[str, Any]:
    """The contract's explain answer."""
    return {
        "workload_id": w.workload_id,
        "status": w.status.value,
        "position": position,
        "reasons": reasons,
        "attempt": w.attempt,
        "estimated_start": iso(start),
        "estimated_completion": iso(end),
    }


def queue_summary(sched: "Scheduler", tenant_id: Optional[str]) -> dict[str, Any]:
    """Queue depth by priority, running count and usage against quota, per tenant."""
    depth: dict[str, Counter] = defaultdict(Counter)
    running: Counter = Counter()
    for w in sched.book.active.values():
        if tenant_id is not None and w.tenant_id != tenant_id:
            continue
        if w.status == Status.QUEUED:
            depth[w.tenant_id][w.priority.value] += 1
        elif w.status in (Status.STARTING, Status.RUNNING):
            running[w.tenant_id] += 1
    usage = usage_by_tenant(sched)
    cap = capacity(sched.schedulable_nodes())
    names = set(depth) | set(running) | set(usage)
    if tenant_id is None:
        names |= set(sched.tenants.tenants)
    else:
        names = {tenant_id}
    tenants = []
    for name in sorted(names):
        cfg = sched.tenants.get(name)
        used = usage.get(name, {})
        quota = cfg.quota if cfg else {}
        tenants.append(
            {
                "tenant_id": name,
                "queued": sum(depth[name].values()),
                "queued_by_priority": dict(depth[name]),
                "running": running[name],
                "usage": used,
                "quota": quota,
                "borrowing": {
                    k: round(used.get(k, 0.0) - q, 6) for k, q in quota.items() if used.get(k, 0.0) > q
                },
                "weight": cfg.weight if cfg else 1.0,
                "fair_share": round(sched.fair.share(name, cfg.weight if cfg else 1.0, cap), 6),
            }
        )
    return {
        "tenants": tenants,
        "total_queued": sum(t["queued"] for t in tenants),
        "total_running": sum(t["running"] for t in tenants),
        "reservation": reservation_seen_by(sched, tenant_id),
        "fragmentation": fragmentation(sched)["summary"],
    }


def reservation_seen_by(sched: "Scheduler", tenant_id: Optional[str]) -> Optional[dict[str, Any]]:
    """The reservation in effect as ``tenant_id`` may see it: another tenant's workload id is
    left out (``workload_id: null``, ``of_another_tenant: true``); an admin (None) sees all."""
    r = sched.reservation
    if r is None or tenant_id is None:
        return r
    holder = sched.book.active.get(r.get("workload_id", ""))
    if holder is not None and holder.tenant_id == tenant_id:
        return r
    return {**r, "workload_id": None, "of_another_tenant": True}


def fragmentation(sched: "Scheduler") -> dict[str, Any]:
    """GPU fragmentation now: per node, and totals by GPU type (also set as gauges)."""
    per_node = stranded_gpus(sched.placer().snapshot(), sched.placement_policy)
    summary = fragmentation_summary(per_node)
    sched.metrics.set_fragmentation(summary["by_gpu_type"])
    return {"policy": sched.placement_policy.name, "summary": summary, "nodes": per_node}


def tenant_list(sched: "Scheduler") -> dict[str, Any]:
    """Every configured tenant (and any tenant with work) with its usage (admin view)."""
    summary = {t["tenant_id"]: t for t in queue_summary(sched, None)["tenants"]}
    items = []
    for name in sorted(set(summary) | set(sched.tenants.tenants)):
        cfg = sched.tenants.get(name)
        row = summary.get(name, {"queued": 0, "running": 0, "usage": {}})
        items.append(
            {
                "tenant_id": name,
                "configured": cfg is not None,
                "weight": cfg.weight if cfg else 1.0,
                "quota": cfg.quota if cfg else {},
                "borrowing_limit": cfg.borrowing_limit if cfg else {},
                "keys": sum(1 for t in sched.tenants.keys.values() if t == name),
                # what it may do to the others (None: not configured, the admin's own)
                "allowed_priorities": cfg.allowed_priorities if cfg else None,
                "may_disable_preemption": cfg.may_disable_preemption if cfg else None,
                "max_queued": sched.policy_config.tenant_queue_limit(cfg, sched.config.max_queue_size),
                "queued": row["queued"],
                "running": row["running"],
                "usage": row["usage"],
            }
        )
    return {"items": items, "version": sched.tenants.version}
