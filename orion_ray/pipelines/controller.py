"""The pipeline controller: reconciles every unfinished run from the store. No Ray here; the host
(the scheduler's loop, see ``scheduler/core.py``) calls ``tick`` and carries out the cancels.

Each reconcile of a run reads its node runs and their workloads from the store, asks the engine
for a plan, turns each launch into an ordinary workload (``workloads.node_spec``) and writes the
workloads, the node rows and the run row in one transaction (``runs_store.commit_reconcile``),
the workloads through the same in-transaction submission as a REST one (queue limits, idempotency
by ``request_id``). So a crash at any point leaves either the whole reconcile or none of it, and
a repeated reconcile finds the workload already there under its ``request_id``: nothing is lost
and nothing runs twice. Cancels are carried out after the commit and asked again at every tick
while their run is cancelling (cancel is idempotent), so a crash in between loses none.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ..errors import OrionError
from ..input_limits import cap_text
from . import engine, runs_store
from .records import FAILED, PipelineRun
from .workloads import new_workload, node_spec

log = logging.getLogger("orion.pipelines")


class PipelineController:
    """Level-triggered reconciliation of pipeline runs over ``store`` (a ``SQLiteStore``)."""

    def __init__(
        self,
        store: Any,
        *,
        clock: Callable[[], float] = time.time,
        max_queue_size: int = 10_000,
        tenant_limit: Optional[Callable[[str], Optional[int]]] = None,
        batch: int = 500,
    ):
        self.store = store
        self.clock = clock
        self.max_queue_size = max_queue_size
        self.tenant_limit = tenant_limit or (lambda tenant_id: None)
        self.batch = batch  # runs reconciled per page of the walk
        self.next_due: Optional[float] = None  # the earliest retry backoff end seen by the last tick
        self.transitions = 0  # node state changes written (metrics, benchmarks)

    def tick(self) -> list[str]:
        """Reconcile every unfinished run once (a failing run is logged and skipped: one bad run
        never stops the others). Returns the workload ids to cancel."""
        cancels: list[str] = []
        self.next_due = None
        after = 0
        while True:
            page = runs_store.active_runs(self.store, limit=self.batch, after_seq=after)
            for run in page:
                try:
                    cancels += self.reconcile(run)
                except Exception:
                    log.exception("pipeline run %s: reconcile failed", run.run_id)
            if len(page) < self.batch:
                return cancels
            after = page[-1].seq

    def reconcile(self, run: PipelineRun) -> list[str]:
        """One reconcile of ``run``: plan, build the launches, commit in one transaction. Returns
        the workload ids to cancel."""
        now = self.clock()
        nodes = runs_store.node_runs(self.store, run.run_id)
        workloads = {n.workload_id: self.store.get(n.workload_id) for n in nodes if n.workload_id}
        plan = engine.plan(run, nodes, workloads, now)
        if plan.next_due is not None:
            self.next_due = plan.next_due if self.next_due is None else min(self.next_due, plan.next_due)
        if plan.idle:
            return []
        sub = run.submission
        launches = []
        for node, inputs in plan.launches:
            try:
                spec = node_spec(
                    sub,
                    sub.dag_spec.node(node.node_id),
                    submission_id=run.submission_id,
                    attempt=node.attempt,
                    inputs=inputs,
                    tenant_id=run.tenant_id,
                )
            except OrionError as exc:  # e.g. an upstream value over a bound: this node fails
                node.status, node.finished_at, node.error = FAILED, now, cap_text(exc.message)
                plan.changed.append(node)
                continue
            launches.append((node, new_workload(spec, run.tenant_id, now)))
        if plan.status is not None:
            run.status, run.error, run.finished_at = plan.status, plan.error, now
        run.updated_at = now
        runs_store.commit_reconcile(
            self.store,
            run,
            nodes=plan.changed,
            launches=launches,
            max_queue_size=self.max_queue_size,
            tenant_limit=self.tenant_limit(run.tenant_id),
        )
        self.transitions += len(plan.changed) + len(launches)
        return plan.cancels
