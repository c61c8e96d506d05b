"""Which workload holds a node's logs (``GET /api/orch/logs/{submission_id}?node=…&attempt=…``),
read from the store. Pure but for the store reads.

A node's attempt ``k`` is the workload whose ``request_id`` is ``<submission_id>/<node>/<k>``
(the run's tenant's); without ``attempt``, the node's current or last attempt. The logs are then
the workload's own, through the same path as ``/api/v1/workloads/{id}/logs`` (stored, or live
from Ray for a running job), capped to ``MAX_LOG_CHARS`` (their tail).
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import NotFound, ValidationError
from ..models import Workload
from .records import NodeRun, PipelineRun
from .runs_store import node_runs
from .workloads import request_id

MAX_LOG_CHARS = 1_048_576  # a node's logs answered at most (the tail: where a failure shows)


def node_of(reader: Any, run: PipelineRun, node_id: str) -> NodeRun:
    """The run's node ``node_id`` (404 naming it when the run has no such node)."""
    for n in node_runs(reader, run.run_id):
        if n.node_id == node_id:
            return n
    raise NotFound(f"pipeline run {run.submission_id!r} has no node {node_id[:64]!r}")


def node_workload(
    reader: Any, run: PipelineRun, node_id: str, attempt: Optional[int]
) -> tuple[NodeRun, Workload]:
    """The node and the workload of its attempt ``attempt`` (None: its current or last one);
    404 when the node has not run that attempt, 422 for an attempt below 1."""
    n = node_of(reader, run, node_id)
    if attempt is not None and attempt < 1:
        raise ValidationError("attempt must be 1 or more", [{"field": "attempt", "problem": "below 1"}])
    k = n.attempt if attempt is None else attempt
    if k < 1 or k > n.attempt:
        has = f"has run {n.attempt} attempt(s)" if n.attempt else "has not run yet"
        raise NotFound(f"node {node_id!r} {has}" + ("" if attempt is None else f"; no attempt {attempt}"))
    w = None
    if attempt is None and n.workload_id:
        w = reader.get(n.workload_id)
    if w is None:
        w = reader.find_by_request_id(run.tenant_id, request_id(run.submission_id, node_id, k))
    if w is None:
        raise NotFound(f"the workload of node {node_id!r} attempt {k} is gone (retention)")
    return n, w


def logs_body(run: PipelineRun, n: NodeRun, w: Workload, text: str) -> dict[str, Any]:
    """The route's answer: which attempt and workload, and the logs (their tail when long)."""
    cut = len(text) > MAX_LOG_CHARS
    return {
        "submission_id": run.submission_id,
        "node_id": n.node_id,
        "attempt": _attempt_of(run, n, w),
        "workload_id": w.workload_id,
        "status": w.status.value,
        "truncated": cut,
        "logs": text[-MAX_LOG_CHARS:] if cut else text,
    }


def _attempt_of(run: PipelineRun, n: NodeRun, w: Workload) -> int:
    rid = w.spec.metadata.request_id or ""
    tail = rid.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else n.attempt
