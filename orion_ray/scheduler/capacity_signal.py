"""What the autoscaler reports, brought to the queue: why a workload waits on capacity, and
back-pressure (429) when the pool it needs cannot launch nodes.

The autoscaler's last report (``Scheduler.autoscaler_status``) says, per pool, its target, what is
provisioning and the last failed launch (from the Ray autoscaler, whose node provider — Orion's EC2
plugin in production — records why: ``InsufficientInstanceCapacity`` in every zone, a budget
spent…), and which queued workload waits on which pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..errors import CapacityUnavailable
from ..models import Workload, iso
from ..policy.autoscaling import PendingGang, PoolSpec, assign_pending

if TYPE_CHECKING:
    from .core import Scheduler

REPORT_FRESH_S = 30.0


def _report(sched: "Scheduler") -> dict[str, Any]:
    st = sched.autoscaler_status or {}
    at = st.get("received_at")
    return st if at is not None and sched.clock() - at <= REPORT_FRESH_S else {}


def _recent_failure(sched: "Scheduler", pool: dict) -> Optional[dict]:
    f = pool.get("last_failed_launch")
    if f and sched.clock() - float(f.get("at") or 0) <= sched.policy_config.launch_failure_window_s:
        return f
    return None


def waiting_reason(sched: "Scheduler", w: Workload) -> Optional[dict[str, str]]:
    """An explain reason for a queued workload the autoscaler is (or cannot be) growing for."""
    st = _report(sched)
    waiting = st.get("waiting") or {}
    if w.workload_id not in waiting:
        return None
    name = waiting[w.workload_id]
    if name == "":
        return {
            "code": "no_pool",
            "message": "no worker pool's node shape can hold this gang: "
            "the autoscaler cannot add capacity for it",
        }
    pool = next((p for p in st.get("pools", []) if p["pool"] == name), None)
    if pool is None:
        return None
    failed = _recent_failure(sched, pool)
    if failed:
        return {
            "code": "capacity_launch_failed",
            "message": f"pool {name}: the last launch failed at {iso(float(failed['at']))}: "
            f"{failed['details'] or 'no details'} (the autoscaler keeps asking; nodes "
            f"{pool['current']} → {pool['target']})",
        }
    if pool["target"] > pool["current"] or pool.get("provisioning"):
        return {
            "code": "scaling_up",
            "message": f"pool {name}: scaling up {pool['current']} → {pool['target']} node(s), "
            f"{pool.get('provisioning', 0)} provisioning",
        }
    if pool["held_by_cooldown"] or pool["target"] >= pool["spec"]["max_size"]:
        return {"code": "pool_at_limit", "message": f"pool {name}: {pool['reason']}"}
    return None


def check_backpressure(sched: "Scheduler", w: Workload) -> None:
    """Raise 429 ``capacity_unavailable`` when policy asks for it, the gang does not fit the
    cluster now, and the pool it needs has failed to launch recently."""
    if not sched.policy_config.reject_when_capacity_unavailable:
        return
    st = _report(sched)
    pools = [p for p in st.get("pools", []) if p.get("spec")]
    if not pools:
        return
    gang = w.spec.gang()  # not the book's shape: a refused workload must leave no cache entry
    bundles, types = [b.ray_bundle() for b in gang], [b.gpu_type for b in gang]
    strategy = w.spec.placement.ray_strategy
    if sched.placer().place(bundles, types, strategy) is not None:
        return  # it fits now: no need for new nodes
    specs = [
        PoolSpec(
            name=p["pool"],
            node_resources=p["spec"]["node_resources"],
            labels=p["spec"]["labels"],
            min_size=p["spec"]["min_size"],
            max_size=p["spec"]["max_size"],
        )
        for p in pools
    ]
    gang = PendingGang(
        bundles=tuple(bundles),
        strategy=strategy,
        pool=w.spec.metadata.labels.get("orion.io/pool"),
        gpu_type=next((t for t in types if t), None),
        source="orion",
    )
    home = next((name for name, gs in assign_pending(specs, [gang]).items() if gs), "")
    pool = next((p for p in pools if p["pool"] == home), None)
    failed = _recent_failure(sched, pool) if pool else None
    if failed:
        raise CapacityUnavailable(
            f"pool {home} cannot launch nodes now ({failed['details'] or 'launch failed'}); retry later",
            [
                {
                    "field": "resources",
                    "problem": f"needs new nodes of pool {home}, whose last launch failed at "
                    f"{iso(float(failed['at']))}",
                }
            ],
            retry_after=60,
        )
