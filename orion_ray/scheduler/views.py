"""Read-only views over the scheduler's state: explain, the queue, tenant usage.

They answer "why is my job pending?" from what the cycle recorded (each queued workload keeps the
reason it was not admitted) and from the queue order itself.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Optional

from ..models import Workload, iso
from ..status import Status

if TYPE_CHECKING:
    from .core import Scheduler

RESOURCE_NAMES = {"CPU": "cpu", "GPU": "gpu", "memory": "memory"}


def usage_by_tenant(s: "Scheduler") -> dict[str, dict[str, float]]:
    """Resources reserved right now (starting and running workloads), per tenant."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for wid, reserved in s.reservations.items():
        w = s.active.get(wid)
        if w is None:
            continue
        for _node, bundle in reserved:
            for k, v in bundle.items():
                out[w.tenant_id][RESOURCE_NAMES.get(k, k)] += v
    return {t: dict(u) for t, u in out.items()}


def _queued_in_order(s: "Scheduler") -> list[Workload]:
    queued = [w for w in s.active.values() if w.status == Status.QUEUED]
    return sorted(queued, key=lambda w: (w.priority.rank, w.seq))


def explain(s: "Scheduler", w: Workload, now: float) -> dict[str, Any]:
    """Where the workload stands and what it waits for."""
    reasons: list[dict[str, str]] = []
    position: dict[str, Optional[int]] = {"tenant": None, "overall": None}
    if w.status == Status.QUEUED:
        order = _queued_in_order(s)
        ids = [x.workload_id for x in order]
        mine = [x.workload_id for x in order if x.tenant_id == w.tenant_id]
        position = {"overall": ids.index(w.workload_id) + 1,
                    "tenant": mine.index(w.workload_id) + 1}
        ahead = order[: position["overall"] - 1]
        higher = sum(1 for x in ahead if x.priority.rank < w.priority.rank)
        if w.not_before > now:
            reasons.append({"code": "backoff", "message":
                            f"backing off until {iso(w.not_before)} ({w.reason or 'requeued'})"})
        if w.reason and w.reason.startswith("waiting for capacity"):
            reasons.append({"code": "capacity", "message":
                            "no node has the free resources for its bundles right now"})
        elif w.reason and "large enough" in w.reason:
            reasons.append({"code": "no_fit", "message":
                            "no node in the cluster could ever hold a bundle of this shape; "
                            "it waits for larger or differently labelled nodes"})
        if higher:
            reasons.append({"code": "priority",
                            "message": f"{higher} workload(s) of a higher priority class are ahead"})
        quota = _quota_note(s, w)
        if quota:
            reasons.append(quota)
        if not reasons:
            reasons.append({"code": "next_cycle",
                            "message": "eligible: the next scheduling cycle will consider it"})
    elif w.status == Status.STARTING:
        reasons.append({"code": "placement_pending", "message":
                        "its placement group is requested; waiting for Ray to reserve it"})
    elif w.status == Status.RUNNING:
        reasons.append({"code": "running", "message": "running"})
    else:
        reasons.append({"code": "finished", "message": f"finished: {w.status.value}"})
    return {"workload_id": w.workload_id, "status": w.status.value, "position": position,
            "reasons": reasons, "attempt": w.attempt, "estimated_start": None,
            "estimated_completion": None}


def _quota_note(s: "Scheduler", w: Workload) -> Optional[dict[str, str]]:
    """Informational until the multi-tenant policy enforces quotas: does this push past nominal?"""
    tenant = s.tenants.get(w.tenant_id)
    if tenant is None or not tenant.quota:
        return None
    used = usage_by_tenant(s).get(w.tenant_id, {})
    need: dict[str, float] = defaultdict(float)
    for b in w.spec.gang():
        for k, v in b.ray_bundle().items():
            need[RESOURCE_NAMES.get(k, k)] += v
    over = [k for k, q in tenant.quota.items() if used.get(k, 0.0) + need.get(k, 0.0) > q]
    if not over:
        return None
    return {"code": "quota", "message": f"over the tenant's nominal quota for {', '.join(over)} "
                                        "(it may still run on idle capacity)"}


def queue_summary(s: "Scheduler", tenant_id: Optional[str]) -> dict[str, Any]:
    """Queue depth by priority, running count and usage against quota, per tenant."""
    depth: dict[str, Counter] = defaultdict(Counter)
    running: Counter = Counter()
    for w in s.active.values():
        if tenant_id is not None and w.tenant_id != tenant_id:
            continue
        if w.status == Status.QUEUED:
            depth[w.tenant_id][w.priority.value] += 1
        elif w.status in (Status.STARTING, Status.RUNNING):
            running[w.tenant_id] += 1
    usage = usage_by_tenant(s)
    names = set(depth) | set(running) | set(usage)
    if tenant_id is None:
        names |= set(s.tenants.tenants)
    else:
        names = {tenant_id}
    tenants = []
    for name in sorted(names):
        cfg = s.tenants.get(name)
        tenants.append({"tenant_id": name, "queued": sum(depth[name].values()),
                        "queued_by_priority": dict(depth[name]), "running": running[name],
                        "usage": usage.get(name, {}), "quota": cfg.quota if cfg else {},
                        "weight": cfg.weight if cfg else 1.0})
    return {"tenants": tenants, "total_queued": sum(t["queued"] for t in tenants),
            "total_running": sum(t["running"] for t in tenants)}


def tenant_list(s: "Scheduler") -> dict[str, Any]:
    """Every configured tenant (and any tenant with work) with its usage (admin view)."""
    summary = {t["tenant_id"]: t for t in queue_summary(s, None)["tenants"]}
    items = []
    for name in sorted(set(summary) | set(s.tenants.tenants)):
        cfg = s.tenants.get(name)
        row = summary.get(name, {"queued": 0, "running": 0, "usage": {}})
        items.append({"tenant_id": name, "configured": cfg is not None,
                      "weight": cfg.weight if cfg else 1.0, "quota": cfg.quota if cfg else {},
                      "borrowing_limit": cfg.borrowing_limit if cfg else {},
                      "keys": sum(1 for t in s.tenants.keys.values() if t == name),
                      "queued": row["queued"], "running": row["running"], "usage": row["usage"]})
    return {"items": items, "version": s.tenants.version}
