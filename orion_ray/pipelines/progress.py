"""Task counters (issue 16's progress): ``total_tasks``, ``completed_tasks``, ``failed_tasks``,
``running_tasks`` (and ``cancelled_tasks``, ``pending_tasks``) on each node and summed on the run,
as ``GET /api/orch/status/{submission_id}`` shows them. An ordinary node is one task; a map node
is one task per item, from its counters row (never a count over its items). A map node that has
not started yet shows the items of its ``with_items``, or none while its list is still upstream.
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import ValidationError
from . import map_store, runs_store
from .fanout import Counters
from .mapspec import MAP
from .records import CANCELLED, FAILED, SKIPPED, SUBMITTED, SUCCEEDED, NodeRun, PipelineRun

KEYS = ("total_tasks", "completed_tasks", "failed_tasks", "running_tasks", "cancelled_tasks", "pending_tasks")
_ONE = {SUCCEEDED: "completed_tasks", FAILED: "failed_tasks", SUBMITTED: "running_tasks"}


def node_tasks(n: NodeRun, spec_node: Any, counters: Optional[Counters]) -> dict[str, int]:
    """One node's task counters."""
    if counters is not None:
        return counters.public()
    if spec_node is not None and spec_node.kind == MAP:
        items = spec_node.map.with_items if spec_node.map is not None else None
        total = len(items) if items is not None and not n.terminal else 0
        return {**dict.fromkeys(KEYS, 0), "total_tasks": total, "pending_tasks": total}
    out = {**dict.fromkeys(KEYS, 0), "total_tasks": 1}
    key = _ONE.get(n.status) or ("cancelled_tasks" if n.status in (CANCELLED, SKIPPED) else "pending_tasks")
    out[key] = 1
    return out


def tasks_of(
    run: PipelineRun, nodes: list[NodeRun], counters: dict[str, Counters]
) -> dict[str, dict[str, int]]:
    """Every node's task counters, by node id."""
    spec = {n.id: n for n in run.submission.dag_spec.nodes}
    return {n.node_id: node_tasks(n, spec.get(n.node_id), counters.get(n.node_id)) for n in nodes}


def totals(per_node: dict[str, dict[str, int]]) -> dict[str, int]:
    """The run's task counters: the sum over its nodes."""
    return {k: sum(t[k] for t in per_node.values()) for k in KEYS}


def status_body(store: Any, run: PipelineRun) -> dict[str, Any]:
    """``GET /api/orch/status/{submission_id}`` read from ``store``: the run, its nodes and the
    task counters (two small reads beyond the run: its node rows and its map counters)."""
    nodes = runs_store.node_runs(store, run.run_id)
    return run.public(nodes, tasks_of(run, nodes, map_store.run_counters(store, run.run_id)))


MAX_PAGE = 1_000  # items per page of the listing
ITEM_STATES = ("pending", "submitted", "succeeded", "failed", "cancelled")


def items_body(
    store: Any,
    run: PipelineRun,
    node_id: str,
    *,
    after: int = -1,
    limit: int = 100,
    state: Optional[str] = None,
) -> dict[str, Any]:
    """``GET /api/orch/status/{submission_id}/items``: one page of a map node's items in index
    order (those above ``after``; ``state``: only those in it), with the node's task counters and
    ``next_after`` (the ``after`` of the next page; None on the last one). A key range, never a
    walk over all items."""
    node = next((n for n in run.submission.dag_spec.nodes if n.id == node_id), None)
    if node is None:
        raise ValidationError(
            f"no node {node_id[:64]!r} in this run",
            [{"field": "node", "problem": "no such node in this run"}],
        )
    if node.kind != MAP:
        raise ValidationError(
            f"node {node_id!r} is not a map node",
            [
                {
                    "field": "node",
                    "problem": f"a {node.kind} node has no items (its workload is in the status)",
                }
            ],
        )
    problems = []
    if not 1 <= limit <= MAX_PAGE:
        problems.append({"field": "limit", "problem": f"from 1 to {MAX_PAGE}"})
    if after < -1:
        problems.append({"field": "after", "problem": "an item index, or -1 for the first page"})
    if state is not None and state not in ITEM_STATES:
        problems.append({"field": "state", "problem": "one of " + ", ".join(ITEM_STATES)})
    if problems:
        raise ValidationError(problems[0]["problem"], problems)
    counters = map_store.counters(store, run.run_id, node_id)
    rows = runs_store.node_runs(store, run.run_id)
    n = next(r for r in rows if r.node_id == node_id)
    page = (
        map_store.items_page(store, run.run_id, node_id, after=after, limit=limit, state=state)
        if counters is not None
        else []
    )
    return {
        "submission_id": run.submission_id,
        "node_id": node_id,
        "state": n.status,
        **node_tasks(n, node, counters),
        "items": [i.public() for i in page],
        "next_after": page[-1].idx if len(page) == limit else None,
    }
