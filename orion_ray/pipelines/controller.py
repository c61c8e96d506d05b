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

Between sweeps a reconcile reads only what moved: the controller keeps each run's node rows as it
last read or wrote them (it is their only writer) and the last state seen of each node workload,
and reads again just the workloads the change feed names (``snapshot``) plus any it has not seen.
A sweep reads every node row and every submitted workload from the store again, and a restart
starts with one, so the store stays the truth: the kept rows only spare re-reading it. A run with a
``map`` node is read and planned whole at every reconcile (its items are settled by
``map_reconcile.MapWork`` from the feed), as before these shortcuts.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ..errors import OrionError
from ..input_limits import cap_text
from ..models import new_workload
from . import engine, run_spans, runs_store, snapshot
from .artifacts import ArtifactUnavailable
from .dataflow import DataFlow
from .map_reconcile import MapWork
from .mapspec import MAP
from .ops_metrics import Observed
from .records import FAILED, SUBMITTED, NodeRun, PipelineRun
from .workloads import node_spec

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
        self.busy_s = 0.0  # time spent in ``tick`` (transitions / busy_s: the controller's speed)
        self.cpu_s = 0.0  # of which on the CPU (a shared machine's other work left out)
        self.reconciles = 0
        self.ticks = 0
        self.observed = Observed()  # what the metrics take from each reconcile (ops_metrics.py)
        self.dirty: set[str] = set()  # run ids to reconcile at the next tick (submitted, cancelled)
        self._due: dict[str, float] = {}  # run id → its earliest retry backoff end
        self._cursor: Optional[int] = None  # the last transition id seen (None: sweep first)
        self._swept_at = float("-inf")
        # run id → its parsed submission and engine shape, kept while the run lasts
        self._shapes: dict[str, tuple[Any, engine.Shape]] = {}
        # run id → its node rows as last read or written; → the states of its node workloads seen
        self._nodes: dict[str, dict[str, NodeRun]] = {}
        self._seen: dict[str, dict[str, Optional[snapshot.WorkloadState]]] = {}

    def touch(self, run_id: str) -> None:
        """Reconcile ``run_id`` at the next tick (a run was submitted or a cancel asked), from
        the store: whoever writes a run's rows outside the controller calls this, so the rows the
        controller kept are read again."""
        self.dirty.add(run_id)
        self._nodes.pop(run_id, None)
        self._seen.pop(run_id, None)

    def tick(self) -> list[str]:
        """Reconcile the runs that may have something to do: those whose node workloads moved
        since the last tick (the store's transitions), those touched (submitted, cancelled),
        those whose retry backoff has ended, and every unfinished run once per ``sweep_s``
        (level-triggered: a missed change costs one sweep, and a restart starts with one). A
        failing run is logged and skipped: one bad run never stops the others. Returns the
        workload ids to cancel."""
        started, cpu = time.perf_counter(), time.thread_time()  # stopwatches, not scheduling clocks
        self.ticks += 1
        try:
            return self._tick()
        finally:
            self.busy_s += time.perf_counter() - started
            self.cpu_s += time.thread_time() - cpu

    def _tick(self) -> list[str]:
        now = self.clock()
        head = self.store.last_transition_id()  # read first: a transition after it is seen next tick
        self._feed_after = None
        moved: dict[str, Optional[set[str]]] = {}  # run id → its workloads that moved (None: all)
        wanted: set[str] = set()  # runs to plan whatever moved (touched, a backoff ended)
        if self._cursor is None or now - self._swept_at >= self.sweep_s:
            self._swept_at, self._due = now, {}
            runs = self._all_active()
            live = {r.run_id for r in runs}
            for cache in (self._shapes, self._nodes, self._seen):  # runs that ended elsewhere
                for rid in [k for k in cache if k not in live]:
                    del cache[rid]
            moved = dict.fromkeys(live)
        else:
            moved = {rid: wids for rid, wids in snapshot.changes_since(self.store, self._cursor).items()}
            self._feed_after = self._cursor  # map items: only those with a transition since
            wanted = self.dirty | {r for r, t in self._due.items() if t <= now}
            for rid in wanted - moved.keys():
                moved[rid] = set()
            runs = [r for r in (self._run(rid) for rid in sorted(moved)) if r is not None]
        self._cursor = head
        self.dirty.clear()
        cancels: list[str] = []
        for run in runs:
            if run.terminal:
                continue
            try:
                cancels += self.reconcile(
                    run, moved=moved.get(run.run_id), only_if_ended=run.run_id not in wanted
                )
            except Exception:
                log.exception("pipeline run %s: reconcile failed (tried again at the next sweep)", run.run_id)
        self._feed_after = None
        return cancels

    def _run(self, run_id: str) -> Optional[PipelineRun]:
        """The run's row; its body only when its submission is not kept parsed already."""
        return runs_store.get_run(self.store, run_id, body=run_id not in self._shapes)

    @property
    def next_due(self) -> Optional[float]:
        """The earliest retry backoff end among the runs seen (None: none waits)."""
        return min(self._due.values(), default=None)

    def _all_active(self) -> list[PipelineRun]:
        out: list[PipelineRun] = []
        after = 0
        while True:
            page = runs_store.active_runs(self.store, limit=self.batch, after_seq=after, body=False)
            out += [r if r.run_id in self._shapes else (self._run(r.run_id) or r) for r in page]
            if len(page) < self.batch:
                return out
            after = page[-1].seq

    def reconcile(
        self, run: PipelineRun, *, moved: Optional[set[str]] = None, only_if_ended: bool = False
    ) -> list[str]:
        """One reconcile of ``run``: plan, build the launches, commit in one transaction. Returns
        the workload ids to cancel. ``moved``: the node workloads with new transitions since the
        last reconcile (the kept rows and states serve for the rest); None reads the run's node
        rows and every submitted workload from the store. ``only_if_ended``: plan only when one
        of them ended (a workload that was admitted or started changes no node: most of the
        feed), unless the run is stopping."""
        now = self.clock()
        self.reconciles += 1
        cached = self._shapes.get(run.run_id)
        if cached is None:
            if not run.body:  # read without its body, and no longer kept: read it whole
                run = runs_store.get_run(self.store, run.run_id) or run
            cached = self._shapes[run.run_id] = (run.submission, engine.shape_of(run))
        run._parsed = cached[0]  # parsed once per run, not at every reconcile
        has_map = any(n.kind == MAP for n in cached[1].nodes.values())
        if has_map:  # read and planned whole: map items are not in the kept rows (see above)
            moved, only_if_ended = None, False
        kept = self._nodes.get(run.run_id)
        if moved is None or kept is None:
            kept = self._nodes[run.run_id] = {
                n.node_id: n for n in runs_store.node_runs(self.store, run.run_id)
            }
            seen = self._seen[run.run_id] = {}
            moved = None
        else:
            seen = self._seen.setdefault(run.run_id, {})
        stopping = engine.stop_reason(run, now)
        if has_map:  # a fail_fast run stops its map items too (from the reconcile after the failure)
            stopping = stopping or engine.fail_fast_reason(run, kept)
        maps = MapWork(run, cached[1], now, stopping, feed_after=self._feed_after)
        nodes = list(kept.values())
        if has_map:
            if self.data is not None:
                data = self.data
                maps.resolve = lambda inputs: data.resolve(run, inputs)
                maps.externalize = lambda n, outs, result: data.externalize(run, n, outs, result)
            nodes = maps.settle(self.store, nodes)  # map nodes in flight: their items (map_reconcile.py)
        live = {n.workload_id: n.node_id for n in nodes if n.status == SUBMITTED and n.workload_id}
        for wid in [w for w in seen if w not in live]:  # settled: no longer needed
            del seen[wid]
        stale = live.keys() if moved is None else (live.keys() & moved) | (live.keys() - seen.keys())
        if stale:
            seen.update(snapshot.workload_states(self.store, stale))
        workloads: dict[str, Any] = {wid: seen.get(wid) for wid in live}
        focus = None
        if only_if_ended and moved is not None and engine.stop_reason(run, now) is None:
            # only nodes whose workload ended can change, and what is downstream of them
            focus = [live[w] for w in stale if (st := seen.get(w)) is None or st.status.terminal]
            if not focus:
                return []  # the plan would be idle: nothing it depends on changed
        if self.data is not None:  # large outs written to the artifact store as the node settles
            outs_of = {k: v.outs for k, v in cached[1].nodes.items()}
            ended = nodes if focus is None else [kept[nid] for nid in focus]
            workloads = self.data.settle_view(run, ended, workloads, outs_of)
        plan = engine.plan(run, nodes, workloads, now, cached[1], focus=focus)
        plan.changed += maps.ended
        plan.cancels += maps.cancels
        if focus is None:  # a whole plan: the earliest backoff end among all nodes
            self._due.pop(run.run_id, None)
        for due in (plan.next_due, maps.next_due):
            if due is not None:
                self._due[run.run_id] = min(due, self._due.get(run.run_id, due))
        if plan.idle and maps.idle:
            return []
        sub = run.submission
        launches = []
        again = bool(plan.cancels) or has_map  # cancels asked again until they end; maps as before
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
                again = True
                continue
            except OrionError as exc:  # e.g. an upstream value over a bound: this node fails
                node.status, node.finished_at, node.error = FAILED, now, cap_text(exc.message)
                node.user_failures += 1
                plan.changed.append(node)
                again = True  # its downstream nodes are skipped by the next plan
                continue
            with run_spans.within_node(run, node.node_id):  # its workload's spans nest in the node's
                launches.append((node, new_workload(spec, run.tenant_id, now)))
        if plan.status is not None:
            run.status, run.error, run.finished_at = plan.status, plan.error, now
            self._shapes.pop(run.run_id, None)
        run.updated_at = now
        limit = self.tenant_limit(run.tenant_id)
        try:
            stored = runs_store.commit_reconcile(
                self.store,
                run,
                nodes=plan.changed,
                launches=launches,
                max_queue_size=self.max_queue_size,
                tenant_limit=limit,
                extra=lambda: maps.write(self.store, max_queue_size=self.max_queue_size, tenant_limit=limit),
            )
        except Exception:  # nothing written: forget the kept rows; the next tick reads the store
            self._nodes.pop(run.run_id, None)
            self._seen.pop(run.run_id, None)
            self.dirty.add(run.run_id)
            raise
        run_spans.ended(run, plan.changed, now)  # stored: the spans of what ended now
        if run.terminal:
            self._nodes.pop(run.run_id, None)
            self._seen.pop(run.run_id, None)
        else:
            for node in [*plan.changed, *(n for n, _ in launches)]:
                kept[node.node_id] = node
            new = {w.workload_id for w in stored}
            # a launch left pending (no room in the queue) or answered by a workload already in
            # the store (whose transitions may be older than the feed's cursor): look again
            if again or any(n.workload_id not in new for n, _ in launches):
                self.dirty.add(run.run_id)
        self.transitions += len(plan.changed) + len(launches) + maps.item_transitions
        self.item_transitions += maps.item_transitions
        self.observed.add(run, plan)
        return plan.cancels
