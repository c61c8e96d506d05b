"""A workload's spans, made from its status changes (``WorkloadBook._apply`` calls ``transition``).

Each span is emitted when its phase is over, with the phase's own start and end times, under the
``traceparent`` the workload was submitted with (kept in its lifecycle JSON). So a scheduler that
restarted in between still links them, and nothing is held open in memory:

- ``orion.admission``: queued → starting (or cancelled/failed in the queue), with the policy's
  decision, the reasons it last waited for and the victims it preempted;
- ``orion.placement``: starting → running (or back to the queue), with the nodes and bundles;
- ``orion.run``: running → its end, with the outcome. Its span id is derived from the workload and
  the attempt (``run_traceparent``), so the process that runs it gets it as ``TRACEPARENT``
  before the span exists.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import tracing
from ..models import Workload
from ..status import Status


def run_traceparent(w: Workload, attempt: Optional[int] = None) -> Optional[str]:
    """The ``traceparent`` of the run span of ``w``'s attempt (None when it is not traced)."""
    return tracing.derive(w.traceparent, w.workload_id, attempt or w.attempt, "run")


def transition(
    w: Workload,
    new: Status,
    at: float,
    note: str,
    after: dict[str, Any],
    *,
    waits: Optional[list[dict]] = None,
    victims: Optional[set[str]] = None,
) -> None:
    """The spans a change of ``w`` (still as it was) to ``new`` at ``at`` ends; ``after`` are its
    fields after the change. Never raises: tracing must not stop a status change."""
    if not tracing.enabled() or w.traceparent is None:
        return
    try:
        _emit(w, new, at, note, after, waits or [], victims or set())
    except Exception:  # a bad attribute must never fail the scheduler's write path
        tracing.log.debug("span of %s not emitted", w.workload_id, exc_info=True)


def _emit(
    w: Workload, new: Status, at: float, note: str, after: dict, waits: list[dict], victims: set[str]
) -> None:
    was, since = w.status, w.updated_at if w.updated_at is not None else w.submitted_at
    common = dict(workload_id=w.workload_id, tenant_id=w.tenant_id, attempt=w.attempt)
    common["workload_type"] = w.spec.workload_type
    if was == Status.QUEUED and new != Status.QUEUED:
        tracing.record(
            "orion.admission",
            parent=w.traceparent,
            start=since,
            end=at,
            decision="admitted" if new == Status.STARTING else new.value,
            reasons=[f"{r.get('code')}: {r.get('message')}" for r in waits],
            reason_codes=sorted({str(r.get("code")) for r in waits}),
            note=note,
            priority=w.spec.priority.value,
            preempted=sorted(victims),
            requeues=w.requeues,
            error=after.get("error") if new == Status.FAILED else None,
            **common,
        )
    elif was == Status.STARTING:
        placement = after.get("placement") or w.placement or []
        tracing.record(
            "orion.placement",
            parent=w.traceparent,
            start=since,
            end=at,
            outcome="placed" if new == Status.RUNNING else new.value,
            nodes=[str(p.get("node_id")) for p in placement if isinstance(p, dict)],
            bundles=len(w.spec.gang()),
            placement=placement or None,
            strategy=w.spec.placement.value,
            note=note,
            error=None if new == Status.RUNNING else (after.get("error") or note),
            **common,
        )
    elif was == Status.RUNNING:
        started = w.started_at if w.started_at is not None else since
        failed = new in (Status.FAILED, Status.QUEUED) and bool(after.get("error"))
        tracing.record(
            "orion.run",
            parent=w.traceparent,
            own=run_traceparent(w),
            start=started,
            end=at,
            outcome=new.value,
            worker_id=w.worker_id,
            note=note,
            error=after.get("error") if failed else None,
            **common,
        )
