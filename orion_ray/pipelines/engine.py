"""The pipeline engine: given a run, its node runs and the statuses of their workloads, what to do
next. Pure (no Ray, no store): it takes ``now`` and never mutates what it is given.

Level-triggered: the plan depends only on the snapshot, so planning again after a crash, or twice
for the same snapshot, asks for the same things; the controller makes each launch idempotent
(``request_id`` = ``submission/node/attempt``) and writes the plan in one transaction.

Per node, in topological order:

- ``submitted``: its workload still going → nothing (or cancel it when the run is stopping);
  ``completed`` → ``succeeded`` with its named ``outs`` taken from the returned dict (all of them
  must be there, strict JSON, at most ``MAX_OUTPUT_CHARS``); ``failed`` → another attempt after
  ``retry.backoff_sec`` while attempts remain (``slo.retry``, or the node's own ``retry``), else
  ``failed``; ``cancelled`` (by someone else) → ``cancelled``; its workload gone → a failed attempt.
- ``pending``: an upstream node that failed, was cancelled or skipped → ``skipped``; every upstream
  node succeeded and the backoff is over → launch the next attempt with the upstream outputs as
  keyword arguments named after the ``ins``.

The run ends when every node has: ``succeeded`` if all did, ``cancelled`` if it was cancelled,
else ``failed`` (naming the nodes). A run past ``slo.max_runtime`` (counted from its creation, or
from its last retry) stops like a cancel and fails. Independent branches go on after a node fails,
unless the run is ``fail_fast``: then the first node failed for good cancels the running nodes
and skips the pending ones. A failed attempt is the node's own (``user``: uses one of
``max_attempts``) or the platform's (``system``: retried apart, up to ``max_system_failures``);
the rules are in ``failures.py``.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field, replace
from typing import Any, Collection, Iterator, Mapping, Optional, Protocol

from ..status import Status
from . import failures, graph
from .records import (
    CANCELLED,
    CANCELLING,
    FAILED,
    MAX_OUTPUT_CHARS,
    NODE_TERMINAL,
    PENDING,
    SKIPPED,
    SUBMITTED,
    SUCCEEDED,
    NodeRun,
    PipelineRun,
)

_NOT_OK = (FAILED, CANCELLED, SKIPPED)


class WorkloadView(Protocol):
    """What the engine reads of a node's workload: a ``Workload``, or the controller's lighter
    ``snapshot.WorkloadState`` (status, attempt, and result and error once it ended)."""

    @property
    def status(self) -> Status: ...

    @property
    def attempt(self) -> int: ...

    @property
    def result(self) -> Any: ...

    @property
    def error(self) -> Optional[str]: ...


@dataclass
class Plan:
    """What one reconcile of a run decided."""

    changed: list[NodeRun] = field(default_factory=list)  # nodes whose row changes (not launches)
    launches: list[tuple[NodeRun, dict[str, Any]]] = field(default_factory=list)  # node, its inputs
    cancels: list[str] = field(default_factory=list)  # workload ids to stop
    status: Optional[str] = None  # the run's new state, if it changes
    error: Optional[str] = None
    next_due: Optional[float] = None  # the earliest backoff end among waiting nodes
    retries: list[tuple[str, str]] = field(default_factory=list)  # (node id, user|system) retried

    @property
    def idle(self) -> bool:
        return not (self.changed or self.launches or self.cancels or self.status)


def outputs_of(result: Any, outs: list[str]) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The node's named outputs from its function's return value, or why they cannot be taken."""
    if not outs:
        return {}, None
    if not isinstance(result, dict):
        return (
            None,
            f"the function must return a dict with {', '.join(outs)}; it returned {type(result).__name__}",
        )
    missing = [o for o in outs if o not in result]
    if missing:
        return None, f"the function's result lacks the output(s) {', '.join(missing)}"
    taken = {o: result[o] for o in outs}
    try:
        size = len(json.dumps(taken, allow_nan=False))
    except (TypeError, ValueError) as exc:
        return None, f"outputs are not strict JSON ({exc})"
    if size > MAX_OUTPUT_CHARS:
        return None, (
            f"outputs are {size} characters of JSON, over the inline limit of {MAX_OUTPUT_CHARS} "
            "(large outputs go to the artifact store: pipelines.artifacts)"
        )
    return taken, None


def stop_reason(run: PipelineRun, now: float) -> Optional[str]:
    """Why the run is stopping (a cancel, or ``slo.max_runtime`` passed), or None."""
    if run.status == CANCELLING:
        return "cancelled"
    limit = run.submission.dag_spec.slo.max_runtime
    since = run.retried_at if run.retried_at is not None else run.created_at
    if limit is not None and now >= since + limit:
        return f"slo.max_runtime ({limit:g} s) exceeded"
    return None


def fail_fast_reason(run: PipelineRun, nodes: Mapping[str, NodeRun]) -> Optional[str]:
    """Why a ``fail_fast`` run stops (a node of it failed for good), or None."""
    if not failures.fail_fast_of(run.submission):
        return None
    failed = [n.node_id for n in nodes.values() if n.status == FAILED]
    return f"fail_fast: node {failed[0]} failed" if failed else None


@dataclass(frozen=True)
class Shape:
    """What the engine derives from a run's spec, once per run (a controller keeps it while the
    run lasts: planning a 1,000-node run must not walk its graph again at every reconcile)."""

    order: list[str]  # topological
    upstream: dict[str, list[str]]
    binding: dict[str, dict[str, str]]  # node → input → producing node
    nodes: dict[str, Any]  # id → spec.Node
    retry: dict[str, Any]  # id → its Retry
    downstream: dict[str, list[str]] = field(default_factory=dict)  # for a plan with a focus
    index: dict[str, int] = field(default_factory=dict)  # id → its place in ``order``


def shape_of(run: PipelineRun) -> Shape:
    """The run's ``Shape``."""
    sub = run.submission
    spec = sub.dag_spec
    order, upstream = graph.topological(spec), spec.upstream()
    downstream: dict[str, list[str]] = {n: [] for n in order}
    for node_id, ups in upstream.items():
        for u in ups:
            downstream[u].append(node_id)
    return Shape(
        order=order,
        upstream=upstream,
        binding=graph.binding(spec),
        nodes={n.id: n for n in spec.nodes},
        retry={n.id: sub.retry_of(n) for n in spec.nodes},
        downstream=downstream,
        index={n: i for i, n in enumerate(order)},
    )


def _walk(shape: Shape, focus: Optional[Collection[str]], copied: Mapping[str, None]) -> Iterator[str]:
    """The nodes a plan looks at, in topological order: all of them, or the ``focus`` and the
    nodes downstream of any node the plan changes (``copied``, read after each one is done)."""
    if focus is None or not shape.index:
        yield from shape.order
        return
    heap = list({shape.index[n] for n in focus if n in shape.index})
    heapq.heapify(heap)
    queued = set(heap)
    while heap:
        node_id = shape.order[heapq.heappop(heap)]
        yield node_id
        if node_id in copied:  # it changed: the nodes after it may change too
            for d in shape.downstream.get(node_id, ()):
                i = shape.index[d]
                if i not in queued:
                    queued.add(i)
                    heapq.heappush(heap, i)


def plan(
    run: PipelineRun,
    nodes: list[NodeRun],
    workloads: Mapping[str, Optional[WorkloadView]],
    now: float,
    shape: Optional[Shape] = None,
    focus: Optional[Collection[str]] = None,
) -> Plan:
    """The next step of ``run`` (see the module's docstring). ``workloads`` maps the workload id of
    every ``submitted`` node to its workload (None: not found); ``shape`` is ``shape_of(run)``
    (computed here when not given). ``focus``: the only nodes that may have something to do
    (those whose workload ended since the last plan); the plan then looks at them and at what
    is downstream of what it changes, not at every node, and asks the same as a whole plan as
    long as every other node is as a plan left it (no backoff ended, no stop: plan whole then;
    a stopping or fail_fast run is always planned whole). ``next_due`` then covers the nodes
    looked at only."""
    shape = shape or shape_of(run)
    before = {n.node_id: n for n in nodes}
    cur = dict(before)  # copy on write: a node is copied only when this plan may change it
    copied: dict[str, None] = {}  # (ordered: the changes come out in topological order)

    def mine(node_id: str) -> NodeRun:
        if node_id not in copied:
            cur[node_id] = replace(cur[node_id])
            copied[node_id] = None
        return cur[node_id]

    up, bind = shape.upstream, shape.binding
    stopping = stop_reason(run, now) or fail_fast_reason(run, cur)
    if stopping is not None or not shape.index:
        focus = None  # a stopping run: every node has something to do
    out = Plan()
    launched: set[str] = set()
    unfinished = False  # a node left neither succeeded, failed, cancelled nor skipped
    # first every submitted node takes its workload's news, so a node failed for good in this
    # pass stops a fail_fast run before anything else is launched
    settling = shape.order if focus is None else sorted(set(focus) & cur.keys(), key=shape.index.__getitem__)
    for node_id in settling:
        n = cur[node_id]
        if n.status != SUBMITTED or shape.nodes[node_id].kind == "map":  # a map: map_reconcile.py
            continue
        w = workloads.get(n.workload_id or "")
        if w is not None and not w.status.terminal:  # still going: the common case, no copy
            if stopping and n.workload_id:
                out.cancels.append(n.workload_id)
            continue
        _settle(mine(node_id), shape.nodes[node_id], shape.retry[node_id], workloads, now, stopping, out)
    if stopping is None:
        stopping = fail_fast_reason(run, cur)
        if stopping is not None:
            focus = None  # every pending node is skipped, every running one cancelled
            out.cancels += [n.workload_id for n in cur.values() if n.status == SUBMITTED and n.workload_id]
            out.retries = [r for r in out.retries if cur[r[0]].status != PENDING]
    fast = stopping is not None and stopping.startswith("fail_fast")
    for node_id in _walk(shape, focus, copied):
        n = cur[node_id]
        if n.status != PENDING:
            unfinished = unfinished or n.status not in NODE_TERMINAL
            continue
        if fast:
            n = mine(node_id)
            n.status, n.finished_at, n.reason = SKIPPED, now, None
            n.error = stopping
            continue
        if stopping:
            n = mine(node_id)
            n.status, n.finished_at, n.reason = CANCELLED, now, stopping
            continue
        bad, waiting = [], False  # one pass over the upstream nodes, no list built when waiting
        for u in up[node_id]:
            status = cur[u].status
            if status in _NOT_OK:
                bad.append(u)
            elif status != SUCCEEDED:
                waiting = True
        if bad:
            n = mine(node_id)
            n.status, n.finished_at = SKIPPED, now
            n.error = f"upstream node(s) {', '.join(bad)} did not succeed"
            continue
        unfinished = True
        if waiting:
            continue
        if now < n.not_before:
            out.next_due = n.not_before if out.next_due is None else min(out.next_due, n.not_before)
            continue
        n = mine(node_id)
        inputs = {port: (cur[src].outputs or {}).get(port) for port, src in bind[node_id].items()}
        n.attempt += 1
        n.status, n.reason, n.error = SUBMITTED, None, None
        n.started_at = n.started_at if n.started_at is not None else now
        out.launches.append((n, inputs))
        launched.add(node_id)
    out.changed = [cur[nid] for nid in copied if nid not in launched and cur[nid] != before[nid]]
    if focus is not None and not unfinished:  # only some nodes were looked at: ask every one
        unfinished = any(n.status not in NODE_TERMINAL for n in cur.values())
    if not unfinished:
        failed = [n.node_id for n in cur.values() if n.status != SUCCEEDED]
        if not failed:
            out.status = SUCCEEDED
        elif run.status == CANCELLING:
            out.status, out.error = CANCELLED, "cancelled"
        else:
            out.status = FAILED
            out.error = stopping or "node(s) did not succeed: " + ", ".join(failed)
    return out


def _settle(
    n: NodeRun,
    node: Any,
    retry: Any,
    workloads: Mapping[str, Optional[WorkloadView]],
    now: float,
    stopping: Optional[str],
    out: Plan,
) -> None:
    """A submitted node after its workload's latest status (changes ``n`` in place: a copy)."""
    w = workloads.get(n.workload_id or "")
    if w is not None and not w.status.terminal:
        if stopping and n.workload_id:
            out.cancels.append(n.workload_id)
        return
    n.system_failures += failures.restarts(w)  # preemptions, lost nodes: absorbed by the scheduler
    if w is not None and w.status == Status.COMPLETED:
        outputs, problem = outputs_of(w.result, node.outs)
        if problem is None:
            n.status, n.outputs, n.finished_at, n.error = SUCCEEDED, outputs, now, None
            return
        error = problem
    elif w is not None and w.status == Status.CANCELLED:
        n.status, n.finished_at, n.error = (
            CANCELLED,
            now,
            stopping or (w.error or "its workload was cancelled"),
        )
        return
    else:
        error = (w.error if w is not None else None) or (
            "its workload failed" if w is not None else failures.GONE
        )
    kind = failures.classify(w)
    if kind == failures.USER:
        n.user_failures += 1
        spent = n.user_failures - n.user_base >= retry.max_attempts
        left = f"attempt {n.user_failures - n.user_base + 1} of {retry.max_attempts}"
    else:
        n.system_failures += 1
        # attempts since the run (re)started that ended in a system failure, this one included
        system = (n.attempt - n.attempt_base) - (n.user_failures - n.user_base)
        # a workload gone from the store may have run: its outcome unknown, it is not run again
        spent = system > retry.max_system_failures or w is None
        left = f"after a system failure, {system} of {retry.max_system_failures} allowed"
    if stopping or spent:
        n.status, n.finished_at, n.error = FAILED, now, f"attempt {n.attempt}: {error}"
        return
    n.status, n.workload_id = PENDING, None
    n.not_before = now + retry.backoff_sec
    n.error = f"attempt {n.attempt}: {error}"
    n.reason = f"retrying ({left}) after {retry.backoff_sec:g} s"
    out.retries.append((n.node_id, kind))
