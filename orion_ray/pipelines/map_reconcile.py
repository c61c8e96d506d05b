"""The map (fan-out) part of one reconcile of a run: the controller asks it first to settle the map
nodes in flight (``MapWork.settle``: reads only the node's counters, the items whose workloads
ended — the transitions feed, or every item in flight on a sweep — and the items waiting for a
retry), then to expand the map nodes the engine launched (``MapWork.expand``), and writes what it
decided inside the reconcile's one transaction (``MapWork.write``). No Ray here.

An item's workload is the node's function called with the node's params, its other ins whole and
the item under ``map.item_arg``, as a ``python_task`` is (``workloads.node_spec``), with the
request id ``<submission>/<node>/<attempt>/<index>`` (``attempt``: the item's), so a repeated
reconcile finds each launch already stored and nothing runs twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from ..errors import OrionError
from ..models import Workload, new_workload
from . import fanout, map_store, mapspec, run_spans
from .engine import Shape
from .records import CANCELLED, FAILED, SUBMITTED, SUCCEEDED, NodeRun, PipelineRun
from .workloads import node_spec


def item_request_id(submission_id: str, node_id: str, attempt: int, idx: int) -> str:
    """The idempotency key of one attempt of one item of a map node."""
    return f"{submission_id}/{node_id}/{attempt}/{idx}"


@dataclass
class _NodeWork:
    node_id: str
    plan: fanout.ItemPlan
    workloads: dict[int, Workload]
    items: Optional[list[Any]] = None  # the items to store first (an expansion)


@dataclass
class MapWork:
    """The map nodes' share of one reconcile of ``run``."""

    run: PipelineRun
    shape: Shape
    now: float
    stopping: Optional[str]
    feed_after: Optional[int] = None  # the transitions feed's start (None: a sweep, read all in flight)
    ended: list[NodeRun] = field(default_factory=list)  # map nodes that end in this reconcile
    cancels: list[str] = field(default_factory=list)
    next_due: Optional[float] = None
    work: list[_NodeWork] = field(default_factory=list)
    item_transitions: int = 0  # item rows changed by ``write``
    # the artifact store's hooks, when there is one (dataflow.py): inputs kept as artifacts read
    # back as values for the items; a fan-in too large to keep inline written as an artifact
    resolve: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None
    externalize: Optional[Callable[[NodeRun, list[str], dict[str, Any]], dict[str, Any]]] = None

    @property
    def idle(self) -> bool:
        return not (self.ended or self.cancels or self.work)

    def settle(self, store: Any, nodes: list[NodeRun]) -> list[NodeRun]:
        """Settle every map node in flight; returns ``nodes`` with the ones that end replaced by
        their ended copies (so the engine plans what follows them in the same reconcile)."""
        out = []
        for n in nodes:
            node = self.shape.nodes[n.node_id]
            if n.status != SUBMITTED or node.kind != mapspec.MAP:
                out.append(n)
                continue
            out.append(self._settle_one(store, n, node, nodes))
        return out

    def _settle_one(self, store: Any, n: NodeRun, node: Any, nodes: list[NodeRun]) -> NodeRun:
        run_id = self.run.run_id
        counters = map_store.counters(store, run_id, n.node_id)
        if counters is None:  # stored with the node's row in one transaction: never, unless damaged
            done = replace(n, status=FAILED, finished_at=self.now, error="its items are not in the store")
            self.ended.append(done)
            return done
        moved = map_store.moved_items(store, run_id, n.node_id, self.feed_after)
        seen = {i.workload_id: store.get(i.workload_id) for i in moved if i.workload_id}
        waiting = map_store.waiting_items(store, run_id, n.node_id) if counters.retrying else []
        plan = fanout.plan_items(
            node.map,
            outs=node.outs,
            retry=self.shape.retry[n.node_id],
            counters=counters,
            moved=[(i, seen.get(i.workload_id or "")) for i in moved],
            waiting=waiting,
            now=self.now,
            stopping=self.stopping,
        )
        if plan.cancel_inflight:
            settled = {i.workload_id for i in plan.settled}
            self.cancels += [
                w for w in map_store.inflight_workloads(store, run_id, n.node_id) if w not in settled
            ]
        ended = self._ending(store, n, node, plan)
        self._due(plan.next_due)
        if _busy(plan):
            values = map_store.item_values(store, run_id, n.node_id, [it.idx for it, _ in plan.launches])
            try:
                built = self._build(node, plan, self._inputs(n.node_id, nodes), values)
            except OrionError as exc:  # an input kept as an artifact cannot be read: the items fail
                built = {}
                plan.build_errors.update({it.idx: exc.message for it, _ in plan.launches})
            self.work.append(_NodeWork(n.node_id, plan, built))
        return ended or n

    def expand(self, store: Any, n: NodeRun, inputs: dict[str, Any]) -> NodeRun:
        """A map node the engine launched: its items stored and the first ``concurrency`` of them
        launched; or the node ends at once (nothing to map over: succeeded with empty lists; a
        value that is not a list, or too many items: failed with the reason). A node whose items
        are already stored (launched again by a retry of the node, ``map_store.reopen``) resumes
        from them at the next reconcile."""
        node = self.shape.nodes[n.node_id]
        n = replace(n, workload_id=None)
        if map_store.counters(store, self.run.run_id, n.node_id) is not None:
            return n
        items, problem = mapspec.items_of(node, inputs)
        if items is None:
            n.status, n.finished_at, n.error = FAILED, self.now, problem
            return n
        plan = fanout.plan_items(
            node.map,
            outs=node.outs,
            retry=self.shape.retry[n.node_id],
            counters=fanout.Counters(total=len(items)),
            moved=[],
            waiting=[],
            now=self.now,
            stopping=self.stopping,
        )
        values = {it.idx: items[it.idx] for it, _ in plan.launches}
        self.work.append(_NodeWork(n.node_id, plan, self._build(node, plan, inputs, values), items))
        if not items:
            n.status, n.finished_at = SUCCEEDED, self.now
            n.outputs = {o: [] for o in node.outs}
        return n

    def write(self, store: Any, *, max_queue_size: int, tenant_limit: Optional[int]) -> None:
        """Everything decided, inside the reconcile's transaction (``commit_reconcile``'s
        ``extra``)."""
        for w in self.work:
            if w.items is not None:
                map_store.create_items(store._db, self.run.run_id, w.node_id, w.items)
            changed, stopped = map_store.write_plan(
                store,
                self.run.run_id,
                w.node_id,
                w.plan,
                w.workloads,
                now=self.now,
                max_queue_size=max_queue_size,
                tenant_limit=tenant_limit,
            )
            self.item_transitions += changed
            if w.plan.launches and w.plan.node_status is None:  # why no more items start, if so
                store._db.execute(
                    "UPDATE node_runs SET reason=? WHERE run_id=? AND node_id=?",
                    (stopped, self.run.run_id, w.node_id),
                )

    # -- helpers ---------------------------------------------------------------------------------
    def _ending(self, store: Any, n: NodeRun, node: Any, plan: fanout.ItemPlan) -> Optional[NodeRun]:
        if plan.node_status is None:
            return None
        done = replace(n, status=plan.node_status, finished_at=self.now, error=plan.node_error)
        if plan.fan_in:
            stored = map_store.outputs(store, self.run.run_id, n.node_id)
            rows = {idx: (idx, st, out) for idx, st, out in stored}
            for it in plan.settled:  # decided now, written with this reconcile
                rows[it.idx] = (it.idx, it.status, it.output)
            ext = self.externalize
            outputs, problem = fanout.fan_in(
                node.outs,
                list(rows.values()),
                plan.counters.total,
                externalize=(lambda lists: ext(done, node.outs, lists)) if ext is not None else None,
            )
            if problem is None:
                done.outputs, done.error = outputs, None
            else:
                done.status, done.error = FAILED, problem
        if done.status in (FAILED, CANCELLED) and done.error is None:
            done.error = "the map did not succeed"
        self.ended.append(done)
        return done

    def _inputs(self, node_id: str, nodes: list[NodeRun]) -> dict[str, Any]:
        by_id = {n.node_id: n for n in nodes}
        inputs = {
            port: ((by_id[src].outputs or {}) if src in by_id else {}).get(port)
            for port, src in self.shape.binding[node_id].items()
        }
        return self.resolve(inputs) if self.resolve is not None else inputs

    def _build(
        self, node: Any, plan: fanout.ItemPlan, inputs: dict[str, Any], values: dict[int, Any]
    ) -> dict[int, Workload]:
        run, out = self.run, {}
        for it, _prior in plan.launches:
            try:
                spec = node_spec(
                    run.submission,
                    node,
                    submission_id=run.submission_id,
                    attempt=it.attempt,
                    inputs=mapspec.item_inputs(node, inputs, values.get(it.idx)),
                    tenant_id=run.tenant_id,
                )
            except OrionError as exc:  # e.g. the item over a bound: this item fails
                plan.build_errors[it.idx] = exc.message
                continue
            spec.metadata.request_id = item_request_id(run.submission_id, node.id, it.attempt, it.idx)
            with run_spans.within_node(run, node.id):  # the items' spans nest in the map node's
                out[it.idx] = new_workload(spec, run.tenant_id, self.now)
        return out

    def _due(self, at: Optional[float]) -> None:
        if at is not None:
            self.next_due = at if self.next_due is None else min(self.next_due, at)


def _busy(plan: fanout.ItemPlan) -> bool:
    return bool(plan.settled or plan.launches or plan.cancel_rest or plan.node_status)
