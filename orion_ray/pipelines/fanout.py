"""Fan-out: one reconcile of a ``map`` node's items. Pure (no Ray, no store): it takes ``now`` and
never mutates what it is given.

A map node is ``submitted`` while its items run. Each item is an ordinary workload (request id
``<submission>/<node>/<attempt>/<index>``, ``attempt`` the item's own); the node's ``retry`` (or
``slo.retry``) applies per item. A reconcile sees only the items whose workloads ended since the
last one (the store's transitions feed; a sweep looks at every item in flight), the items waiting
for a retry's backoff, and the node's counters, and decides:

- an item whose workload ``completed`` → ``succeeded`` with its ``outs`` taken from the returned
  dict (as a ``python_task``'s); ``failed`` (or gone, or outputs that cannot be taken) → another
  attempt after the backoff while attempts remain, else ``failed``; ``cancelled`` → ``cancelled``;
- then up to ``concurrency`` items in flight: due retries first (lowest index first), then new
  items in index order;
- when more items failed or were cancelled than ``min_success_ratio`` allows, or the run stops
  (cancel, ``slo.max_runtime``): no item starts any more, the ones in flight are cancelled, and
  the node ends (``failed``, or ``cancelled`` for a stopping run) once none is in flight;
- when every item ended: the node succeeds and its outputs are gathered in index order (the
  controller reads them once: ``fan_in``), an item that did not succeed giving ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from ..models import Workload
from ..status import Status
from .engine import outputs_of
from .mapspec import MapSpec
from .records import CANCELLED, FAILED, PENDING, SUBMITTED, SUCCEEDED


@dataclass
class Counters:
    """A map node's items by state (its row in ``map_nodes``); ``next_idx``: items below it were
    started at least once."""

    total: int
    next_idx: int = 0
    running: int = 0  # in flight: their workloads are queued or running
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    retrying: int = 0  # waiting for a retry's backoff (counted as pending)

    @property
    def ended(self) -> int:
        return self.completed + self.failed + self.cancelled

    def public(self) -> dict[str, int]:
        """The node's task counters as ``GET /api/orch/status`` shows them."""
        return {
            "total_tasks": self.total,
            "completed_tasks": self.completed,
            "failed_tasks": self.failed,
            "running_tasks": self.running,
            "cancelled_tasks": self.cancelled,
            "pending_tasks": self.total - self.ended - self.running,
        }


@dataclass
class Item:
    """One item of a map node (its row in ``map_items``)."""

    idx: int
    status: str = PENDING
    attempt: int = 0  # attempts started; the current one's workload is ``workload_id``
    workload_id: Optional[str] = None
    not_before: float = 0.0
    output: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None

    def public(self) -> dict[str, Any]:
        """One entry of the per-item listing."""
        return {
            "index": self.idx,
            "state": self.status,
            "attempt": self.attempt,
            "workload_id": self.workload_id,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass
class ItemPlan:
    """What one reconcile of a map node decided."""

    counters: Counters
    settled: list[Item] = field(default_factory=list)  # items leaving ``submitted``
    launches: list[tuple[Item, int]] = field(default_factory=list)  # item (attempt set), previous attempt
    cancel_inflight: bool = False  # cancel the workloads of the items still in flight
    cancel_rest: Optional[str] = None  # every item not started is cancelled, for this reason
    node_status: Optional[str] = None  # the node's ending, when it ends
    node_error: Optional[str] = None
    fan_in: bool = False  # the node succeeds: gather the items' outputs
    next_due: Optional[float] = None  # the earliest backoff end among waiting items
    build_errors: dict[int, str] = field(default_factory=dict)  # launches whose workload cannot be built


def plan_items(
    m: MapSpec,
    *,
    outs: list[str],
    retry: Any,
    counters: Counters,
    moved: list[tuple[Item, Optional[Workload]]],
    waiting: list[Item],
    now: float,
    stopping: Optional[str],
) -> ItemPlan:
    """The next step of a map node (see the module's docstring). ``moved``: items in flight
    with their workloads (None: gone from the store); ``waiting``: items waiting for a retry."""
    c = replace(counters)
    out = ItemPlan(counters=c)
    ready = [replace(w) for w in waiting]
    for item, w in moved:
        if item.status != SUBMITTED or (w is not None and not w.status.terminal):
            continue
        it = replace(item, finished_at=now)
        c.running -= 1
        out.settled.append(it)
        if w is not None and w.status == Status.COMPLETED:
            outputs, problem = outputs_of(w.result, outs)
            if problem is None:
                it.status, it.output, it.error = SUCCEEDED, outputs, None
                c.completed += 1
                continue
            error = problem
        elif w is not None and w.status == Status.CANCELLED:
            it.status, it.error = CANCELLED, stopping or w.error or "its workload was cancelled"
            c.cancelled += 1
            continue
        else:
            error = (w.error if w is not None else None) or (
                "its workload failed" if w is not None else "its workload is gone from the store"
            )
        if stopping or it.attempt >= retry.max_attempts:
            it.status, it.error = FAILED, f"attempt {it.attempt}: {error}"
            c.failed += 1
            continue
        it.status, it.finished_at = PENDING, None  # workload_id kept: the row it leaves
        it.not_before, it.error = now + retry.backoff_sec, f"attempt {it.attempt}: {error}"
        c.retrying += 1
        ready.append(it)
    allowed = m.allowed_failures(c.total)
    doomed = None
    if c.failed + c.cancelled > allowed:
        doomed = (
            f"{c.failed} of {c.total} items failed"
            + (f", {c.cancelled} cancelled" if c.cancelled else "")
            + f"; min_success_ratio {m.min_success_ratio:g} allows at most {allowed} not to succeed"
        )
    halt = stopping or doomed
    if halt:
        out.cancel_inflight = c.running > 0
        not_started = c.total - c.next_idx + c.retrying
        if not_started:
            out.cancel_rest = halt
            c.cancelled += not_started
            c.next_idx, c.retrying = c.total, 0
        if c.running == 0:
            out.node_status = CANCELLED if stopping else FAILED
            out.node_error = halt
        return out
    room = m.concurrency - c.running
    due = sorted((r for r in ready if r.not_before <= now), key=lambda r: r.idx)[: max(room, 0)]
    for r in due:
        out.launches.append((replace(r, status=SUBMITTED, attempt=r.attempt + 1, started_at=now), r.attempt))
        c.retrying -= 1
    c.running += len(due)
    fresh = max(0, min(m.concurrency - c.running, c.total - c.next_idx))
    for idx in range(c.next_idx, c.next_idx + fresh):
        out.launches.append((Item(idx, SUBMITTED, 1, started_at=now), 0))
    c.next_idx += fresh
    c.running += fresh
    later = [r.not_before for r in ready if r not in due and r.not_before > now]
    out.next_due = min(later, default=None)
    if c.ended == c.total:
        out.node_status, out.fan_in = SUCCEEDED, True
    return out


def fan_in(
    outs: list[str],
    rows: list[tuple[int, str, Optional[dict[str, Any]]]],
    total: int,
    externalize: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None,
) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The map node's outputs: for each name in ``outs``, the items' values in index order, an
    item that did not succeed giving None; or why they cannot be kept inline. ``rows``: (index,
    state, outputs) of every item. ``externalize`` (the artifact store's, when there is one)
    replaces lists too large to keep inline by references before the inline cap is checked."""
    lists: dict[str, Any] = {o: [None] * total for o in outs}
    for idx, status, output in rows:
        if status == SUCCEEDED and output and 0 <= idx < total:
            for o in outs:
                lists[o][idx] = output.get(o)
    if externalize is not None:
        lists = externalize(lists)
    taken, problem = outputs_of(lists, outs)  # the same inline cap (and seam) as a node's outputs
    if problem is not None:
        return None, f"fan-in of {total} items: {problem}"
    return taken, None
