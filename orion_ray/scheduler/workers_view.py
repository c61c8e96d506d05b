"""``GET /api/v1/workers`` (admin): each Ray node as a worker of Orion's, with its current tasks,
the tasks it completed, the resources in use and its last activity.

Built from what the scheduler already samples for the node and autoscaler views (``node_ops``:
Ray's alive nodes through the placer, the node book's lifecycle, the reservations held per node)
and, for the tasks completed, one grouped read of the workloads that ended within ``WINDOW_S``
(an index range, so the read stays small however much the store keeps). Resources are given
twice: ``reserved`` is Orion's account (what its workloads hold), ``in_use`` Ray's (total less
what Ray reports available: Orion's and anyone else's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..models import Workload, iso
from .node_ops import full_placer, work_by_node

if TYPE_CHECKING:
    from .core import Scheduler

WINDOW_S = 86_400.0  # tasks completed, and the last activity, over the last day


def task_view(w: Workload) -> dict[str, Any]:
    """One current task of a worker: the workload and, for a pipeline node, which one."""
    labels = w.spec.metadata.labels or {}
    pipeline = None
    if "orion.pipeline.submission" in labels:
        pipeline = {
            "pipeline_id": labels.get("orion.pipeline"),
            "submission_id": labels.get("orion.pipeline.submission"),
            "node_id": labels.get("orion.pipeline.node"),
        }
    return {
        "workload_id": w.workload_id,
        "tenant_id": w.tenant_id,
        "workload_type": w.spec.workload_type,
        "status": w.status.value,
        "started_at": iso(w.started_at),
        "pipeline": pipeline,
    }


def completed_by_node(store: Any, since: float) -> dict[str, tuple[int, Optional[float]]]:
    """Workloads ended since ``since``, per node they ran on: (completed count, last end). The
    range is on the ended-workloads index (``workloads_ended``, schema 3)."""
    if not hasattr(store, "_query"):
        return {}
    rows = store._query(
        "SELECT json_extract(state, '$.worker_id'), "
        "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
        "MAX(json_extract(state, '$.finished_at')) FROM workloads INDEXED BY workloads_ended "
        "WHERE status IN ('completed', 'failed', 'cancelled') "
        "AND json_extract(state, '$.finished_at') >= ? "
        "AND json_extract(state, '$.worker_id') IS NOT NULL GROUP BY 1",
        (since,),
    )
    return {r[0]: (int(r[1] or 0), r[2]) for r in rows}


def _used(total: dict[str, float], left: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
    if left is None:
        return None
    return {k: round(max(0.0, v - left.get(k, 0.0)), 6) for k, v in total.items()}


def workers(sched: "Scheduler") -> dict[str, Any]:
    """Every alive node: state, pool, resources (total, reserved by Orion, in use per Ray), its
    current tasks, how many tasks it completed within ``WINDOW_S``, and its last activity (a
    task's start or end)."""
    placer = full_placer(sched)
    work = work_by_node(sched)
    done = completed_by_node(sched.store, sched.clock() - WINDOW_S)
    items = []
    for n in sorted(placer.nodes, key=lambda n: n.node_id):
        rec = sched.nodebook.get(n.node_id)
        tasks = [
            sched.book.active[wid] for wid in sorted(work.get(n.node_id, [])) if wid in sched.book.active
        ]
        count, last_end = done.get(n.node_id, (0, None))
        times = [t for t in [last_end, *(w.started_at for w in tasks)] if t is not None]
        items.append(
            {
                "node_id": n.node_id,
                "pool": rec.pool if rec is not None else None,
                "state": rec.state if rec is not None else None,
                "resources": dict(n.total),
                "reserved": _used(dict(n.total), dict(n.free)),
                "in_use": _used(dict(n.total), dict(n.available) if n.available is not None else None),
                "tasks": [task_view(w) for w in tasks],
                "running_tasks": len(tasks),
                "tasks_completed": count,
                "last_activity": iso(max(times)) if times else None,
            }
        )
    return {"items": items, "count": len(items), "window_s": WINDOW_S}
