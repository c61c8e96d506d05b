"""The pipeline controller: reconciles every unfinished run from the store. No Ray here; the host
(the scheduler's loop, see ``scheduler/core.py``) calls ``tick`` and carries out the cancels.

Each reconcile of a run reads its node runs and their workloads from the store, asks the engine
for a plan, turns each launch into an ordinary workload (``workloads.node_spec``) and writes the
workloads, the node rows and the run row in one transaction (``runs_store.commit_reconcile``),
the workloads through the same in-transaction submission as a REST one (queue limits, idempotency
by ``request_id``). So a crash at any point leaves either the whole reconcile or none of it, and
a repeated reconcile finds the workload already there under its ``request_id``: nothing is lost
and nothing runs twice. Cancels are carried out after the commit and asked again at every sweep
while their run is cancelling (cancel is idempotent), so a crash in between loses none.

A tick reconciles only the runs that may have something to do (their workloads moved, they were
submitted or cancelled, a backoff ended), and every unfinished run once per ``SWEEP_S``: so idle
runs cost nothing between sweeps, and a change the feed missed costs one sweep.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ..errors import OrionError
from ..input_limits import cap_text
from . import engine, runs_store
from .artifacts import ArtifactUnavailable
from .dataflow import DataFlow
from .map_reconcile import MapWork
from .mapspec import MAP
from .ops_metrics import Observed
from .records import FAILED, SUBMITTED, PipelineRun
from .workloads import new_workload, node_spec

log = logging.getLogger("orion.pipelines")
SWEEP_S = 2.0  # every unfinished run reconciled at least this often, changed or not


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
        sweep_s: float = SWEEP_S,
        data: Optional[DataFlow] = None,
    ):
        self.store = store
        self.clock = clock
        self.max_queue_size = max_queue_size
        self.tenant_limit = tenant_limit or (lambda tenant_id: None)
        self.batch = batch  # runs reconciled per page of a sweep
        self.sweep_s = sweep_s
        self.data = data  # large outputs to an artifact store (None: inline values only)
        self.transitions = 0  # node and map item state changes written (metrics, benchmarks)
        self.item_transitions = 0  # of which map items
        self._feed_after: Optional[int] = None  # this tick's feed start (None: read every map item in flight)
        self.observed = Observed()  # what the metrics take from each reconcile (ops_metrics.py)
        self.dirty: set[str] = set()  # run ids to reconcile at the next tick (submitted, cancelled)
        self._due: dict[str, float] = {}  # run id → its earliest retry backoff end
        self._cursor: Optional[int] = None  # the last transition id seen (None: sweep first)
        self._swept_at = float("-inf")
        # run id → its parsed submission and engine shape, kept while the run lasts
        self._shapes: dict[str, tuple[Any, engine.Shape]] = {}

    def touch(self, run_id: str) -> None:
        """Reconcile ``run_id`` at the next tick (a run was submitted or a cancel asked)."""
        self.dirty.add(run_id)

    def tick(self) -> list[str]:
        """Reconcile the runs that may have something to do: those whose node workloads moved
        since the last tick (the store's transitions), those touched (submitted, cancelled),
        those whose retry backoff has ended, and every unfinished run once per ``sweep_s``
        (level-triggered: a missed change costs one sweep, and a restart starts with one). A
        failing run is logged and skipped: one bad run never stops the others. Returns the
        workload ids to cancel."""
        now = self.clock()
        head = self.store.last_transition_id()  # read first: a transition after it is seen next tick
        self._feed_after = None
        if self._cursor is None or now - self._swept_at >= self.sweep_s:
            self._swept_at, self._due = now, {}
            runs = self._all_active()
            live = {r.run_id for r in runs}
            self._shapes = {k: v for k, v in self._shapes.items() if k in live}  # ended elsewhere
        else:
            runs = runs_store.runs_touched_since(self.store, self._cursor, limit=100_000)
            self._feed_after = self._cursor  # map items: only those with a transition since
            seen = {r.run_id for r in runs}
            wanted = {rid for rid in self.dirty | {r for r, t in self._due.items() if t <= now}} - seen
            runs += [r for r in (runs_store.get_run(self.store, rid) for rid in sorted(wanted)) if r]
        self._cursor = head
        self.dirty.clear()
        cancels: list[str] = []
        for run in runs:
            if run.terminal:
                continue
            try:
                cancels += self.reconcile(run)
            except Exception:
                log.exception("pipeline run %s: reconcile failed (tried again at the next sweep)", run.run_id)
        self._feed_after = None
        return cancels

    @property
    def next_due(self) -> Optional[float]:
        """The earliest retry backoff end among the runs seen (None: none waits)."""
        return min(self._due.values(), default=None)

    def _all_active(self) -> list[PipelineRun]:
        out: list[PipelineRun] = []
        after = 0
        while True:
            page = runs_store.active_runs(self.store, limit=self.batch, after_seq=after)
            out += page
            if len(page) < self.batch:
                return out
            after = page[-1].seq

    def reconcile(self, run: PipelineRun) -> list[str]:
        """One reconcile of ``run``: plan, build the launches, commit in one transaction. Returns
        the workload ids to cancel."""
        now = self.clock()
        cached = self._shapes.get(run.run_id)
        if cached is None:
            cached = self._shapes[run.run_id] = (run.submission, engine.shape_of(run))
        run._parsed = cached[0]  # parsed once per run, not at every reconcile
        nodes = runs_store.node_runs(self.store, run.run_id)
        # a fail_fast run stops its map items too (from the reconcile after the failure)
        stopping = engine.stop_reason(run, now) or engine.fail_fast_reason(run, {n.node_id: n for n in nodes})
        maps = MapWork(run, cached[1], now, stopping, feed_after=self._feed_after)
        if self.data is not None:
            data = self.data
            maps.resolve = lambda inputs: data.resolve(run, inputs)
            maps.externalize = lambda n, outs, result: data.externalize(run, n, outs, result)
        nodes = maps.settle(self.store, nodes)  # map nodes in flight: their items (map_reconcile.py)
        workloads = {
            n.workload_id: self.store.get(n.workload_id)
            for n in nodes
            if n.status == SUBMITTED and n.workload_id
        }
        if self.data is not None:  # large outs written to the artifact store as the node settles
            outs_of = {k: v.outs for k, v in cached[1].nodes.items()}
            workloads = self.data.settle_view(run, nodes, workloads, outs_of)
        plan = engine.plan(run, nodes, workloads, now, cached[1])
        plan.changed += maps.ended
        plan.cancels += maps.cancels
        self._due.pop(run.run_id, None)
        due = [t for t in (plan.next_due, maps.next_due) if t is not None]
        if due:
            self._due[run.run_id] = min(due)
        if plan.idle and maps.idle:
            return []
        self.dirty.add(run.run_id)  # what it launched or ended may let more happen: look again
        sub = run.submission
        launches = []
        for node, inputs in plan.launches:
            try:
                if self.data is not None:  # inputs kept as artifacts are read back: values
                    inputs = self.data.resolve(run, inputs)
                if cached[1].nodes[node.node_id].kind == MAP:  # its items are its workloads
                    plan.changed.append(maps.expand(self.store, node, inputs))
                    continue
                spec = node_spec(
                    sub,
                    cached[1].nodes[node.node_id],
                    submission_id=run.submission_id,
                    attempt=node.attempt,
                    inputs=inputs,
                    tenant_id=run.tenant_id,
                )
            except ArtifactUnavailable:  # the row stays pending: launched at a later reconcile
                log.warning("run %s node %s: artifact store unavailable", run.run_id, node.node_id)
                continue
            except OrionError as exc:  # e.g. an upstream value over a bound: this node fails
                node.status, node.finished_at, node.error = FAILED, now, cap_text(exc.message)
                node.user_failures += 1
                plan.changed.append(node)
                continue
            launches.append((node, new_workload(spec, run.tenant_id, now)))
        if plan.status is not None:
            run.status, run.error, run.finished_at = plan.status, plan.error, now
            self._shapes.pop(run.run_id, None)
        run.updated_at = now
        limit = self.tenant_limit(run.tenant_id)
        runs_store.commit_reconcile(
            self.store,
            run,
            nodes=plan.changed,
            launches=launches,
            max_queue_size=self.max_queue_size,
            tenant_limit=limit,
            extra=lambda: maps.write(self.store, max_queue_size=self.max_queue_size, tenant_limit=limit),
        )
        self.transitions += len(plan.changed) + len(launches) + maps.item_transitions
        self.item_transitions += maps.item_transitions
        self.observed.add(run, plan)
        return plan.cancels
