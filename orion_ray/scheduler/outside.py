"""Work Orion does not launch itself, in Orion's one account: serving replicas' GPUs counted against
their tenants' quotas, and room made for new replicas by preempting lower-class batch work.

The room made is *claimed* (node → resources, with an expiry) so the batch queue does not take it
back before the replica lands; once Ray shows the replica's usage, the claim only repeats it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ValidationError
from ..models import Priority
from ..policy.admission import Candidate, choose_victims
from ..policy.quota import QuotaBook, demand_of
from . import policy_bridge as bridge

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("orion.scheduler")


async def refresh_serving_usage(sched: "Scheduler") -> None:
    """GPUs each tenant's serving replicas hold (from the serving manager), for quotas."""
    try:
        got = await sched.runtime.serving_gpu_usage()
    except Exception:  # serving is optional and may be restarting: keep the last answer
        log.debug("serving usage not refreshed", exc_info=True)
        return
    usage = {t: {"gpu": float(g)} for t, g in (got.get("by_tenant") or {}).items() if t != "shared" and g}
    if usage != sched.serving_usage:  # quotas changed: waiting work must be looked at again
        sched.serving_usage = usage
        sched.planner.invalidate()


def live_claims(sched: "Scheduler") -> dict[str, dict[str, float]]:
    """Unexpired claims, summed per node (expired ones are dropped)."""
    now = sched.clock()
    sched.claims = [c for c in sched.claims if c[0] > now]
    out: dict[str, dict[str, float]] = {}
    for _, node, res in sched.claims:
        mine = out.setdefault(node, {})
        for k, v in res.items():
            mine[k] = mine.get(k, 0.0) + v
    return out


def make_room(
    sched: "Scheduler",
    bundles: list[dict[str, float]],
    *,
    tenant_id: Optional[str] = None,
    priority: str = "high",
    who: str = "serving",
    hold_s: float = 120.0,
) -> dict[str, Any]:
    """Make room for work Orion does not launch itself (a Serve replica per bundle): where a
    bundle does not fit, preempt lower-class batch work exactly as for a queued workload of
    ``priority``, and keep the freed capacity from batch work for ``hold_s`` (until Ray shows
    it used). Returns the bundles that already fit, the victims, and what cannot be made."""
    try:
        rank = Priority(priority).rank
    except ValueError:
        raise ValidationError(
            "unknown priority class",
            [{"field": "priority", "problem": f"{priority!r} is not a priority class"}],
        ) from None
    now = sched.clock()
    placer = sched.placer()
    running = bridge.running_items(sched.book, now)
    pool = [r for r in running if not r.stopping]
    quota = QuotaBook(sched.policy.tenants, {})
    fits = preempted = unplaceable = 0
    victims_all: list[str] = []
    for i, bundle in enumerate(bundles):
        b = {k: float(v) for k, v in bundle.items() if v}
        placed = placer.place([b], [None], "PACK")
        if placed is None:
            c = Candidate(
                f"room-{i}", tenant_id or "default", rank, 0, [b], [None], "PACK", demand_of([b], [None]), now
            )
            victims = choose_victims(placer, c, pool, quota, sched.policy, now)
            if not victims:
                unplaceable += 1
                continue
            for v in victims:
                placer.release(v.held)
                victim = sched.book.active[v.workload_id]
                # the victim's tenant reads this reason: another tenant's name stays out of it
                owner = tenant_id or "shared"
                if tenant_id is not None and tenant_id != victim.tenant_id:
                    owner = "another tenant"
                sched.driver.preempt(victim, f"{who} ({owner})")
                victims_all.append(v.workload_id)
            ids = {v.workload_id for v in victims}
            pool = [r for r in pool if r.workload_id not in ids]
            placed = placer.place([b], [None], "PACK")
            if placed is None:
                unplaceable += 1
                continue
            preempted += 1
            sched.claims.append((now + hold_s, placed[0].node_id, dict(b)))
        else:
            fits += 1
        placer.commit(placed)
    if victims_all:
        sched.store.audit(who, "make_room", None, {"tenant_id": tenant_id, "victims": victims_all}, now)
    return {"fit": fits, "made_room": preempted, "unplaceable": unplaceable, "preempted": victims_all}
