"""Retry a finished run from its failed nodes (``POST /api/orch/retry/{submission_id}``), in one
transaction of the store. Pure but for the store write.

A ``failed`` or ``cancelled`` run runs again: its ``succeeded`` nodes keep their outputs and are
not run again; its ``failed``, ``cancelled`` and ``skipped`` nodes go back to ``pending``, their
attempt numbers going on from where they were (so each new attempt has a new idempotency key
``submission/node/attempt``) and their retry budgets (``max_attempts``, ``max_system_failures``)
counted afresh from here; ``slo.max_runtime`` counts from the retry. A map node run again
resumes from its stored items: those that did not succeed run again (``map_store.reopen``). A
running (or cancelling) run is a 409, and so is a succeeded one (nothing to retry). Audited as
``pipeline_retry``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from . import map_store
from .mapspec import MAP
from .records import CANCELLED, FAILED, PENDING, RUNNING, SKIPPED, PipelineRun
from .runs_store import get_run

if TYPE_CHECKING:
    from ..store.sqlite import SQLiteStore

RETRYABLE = (FAILED, CANCELLED)
AGAIN = (FAILED, CANCELLED, SKIPPED)  # the node states that run again


def retry_run(store: "SQLiteStore", run: PipelineRun, *, who: str, now: float) -> PipelineRun:
    """Put ``run`` back to ``running`` with its failed, cancelled and skipped nodes pending (see
    the module's docstring); ``Conflict`` (409) unless it is failed or cancelled."""
    if run.status not in RETRYABLE:
        raise Conflict(
            f"pipeline run {run.submission_id!r} is {run.status}: only a failed or cancelled run is retried",
            [{"field": "submission_id", "problem": f"the run is {run.status}"}],
        )
    with store._lock, store._tx():
        db = store._db
        cur = db.execute(
            "UPDATE pipeline_runs SET status=?, updated_at=?, finished_at=NULL, error=NULL, "
            "retries=retries + 1, retried_at=? WHERE run_id=? AND status IN (?, ?)",
            (RUNNING, now, now, run.run_id, *RETRYABLE),
        )
        if not cur.rowcount:  # another retry (or a writer) got there first
            raise Conflict(
                f"pipeline run {run.submission_id!r} is no longer failed or cancelled",
                [{"field": "submission_id", "problem": "the run changed"}],
            )
        again = db.execute(
            "SELECT node_id FROM node_runs WHERE run_id=? AND status IN (?, ?, ?) ORDER BY position",
            (run.run_id, *AGAIN),
        ).fetchall()
        db.execute(
            "UPDATE node_runs SET status=?, workload_id=NULL, not_before=0, error=NULL, reason=?, "
            "started_at=NULL, finished_at=NULL, attempt_base=attempt, user_base=user_failures "
            "WHERE run_id=? AND status IN (?, ?, ?)",
            (PENDING, "retry of the run", run.run_id, *AGAIN),
        )
        maps = {n.id for n in run.submission.dag_spec.nodes if n.kind == MAP}
        for (node_id,) in again:
            if node_id in maps:  # its items that did not succeed run again; the others keep their outputs
                map_store.reopen(db, run.run_id, node_id)
        details: dict[str, Any] = {
            "tenant_id": run.tenant_id,
            "submission_id": run.submission_id,
            "nodes": [r[0] for r in again][:100],
        }
        db.execute(
            "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
            (now, who, "pipeline_retry", run.run_id, json.dumps(details)),
        )
    return get_run(store, run.run_id) or run
