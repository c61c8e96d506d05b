"""A pipeline run's spans: one per run, a child per node, and the node's workloads under it.

Nothing is stored for them: a run's trace and span ids are hashes of its run id (and of how often
it was retried, so a retried run's second pass is a span of its own), a node's span id a hash of
the run's and the node's. The controller, in any process and after any restart, computes the same
ids; a node's workloads are made under the node's context (``within``), so their admission,
placement and run spans nest under the node. Each span is emitted when its part is over, with
its own start and end.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import tracing
from .records import NodeRun, PipelineRun


def run_traceparent(run: PipelineRun) -> Optional[str]:
    """The run span's ``traceparent`` (None when tracing is off)."""
    return tracing.root("pipeline", run.run_id, run.retries)


def node_traceparent(run: PipelineRun, node_id: str) -> Optional[str]:
    """The span of ``node_id`` in this pass of ``run``."""
    return tracing.derive(run_traceparent(run), "node", node_id)


def trace_id(run: PipelineRun) -> Optional[str]:
    """The trace id a run's status shows (None when tracing is off)."""
    return tracing.trace_id(run_traceparent(run))


def within_node(run: PipelineRun, node_id: str) -> Any:
    """The context a node's workload is made in (its spans are then the node's children)."""
    return tracing.within(node_traceparent(run, node_id))


def ended(run: PipelineRun, nodes: list[NodeRun], now: float) -> None:
    """Emit the spans of the nodes that ended in this reconcile and, if it ended, of the run.
    Never raises (tracing must not fail a reconcile)."""
    if not tracing.enabled():
        return
    try:
        run_tp = run_traceparent(run)
        common = dict(pipeline_run_id=run.run_id, submission_id=run.submission_id, tenant_id=run.tenant_id)
        for n in nodes:
            if not n.terminal:
                continue
            tracing.record(
                "orion.pipeline.node",
                parent=run_tp,
                own=node_traceparent(run, n.node_id),
                start=n.started_at if n.started_at is not None else (n.finished_at or now),
                end=n.finished_at or now,
                node=n.node_id,
                outcome=n.status,
                node_attempts=n.attempt,
                workload_id=n.workload_id,
                error=n.error if n.status == "failed" else None,
                **common,
            )
        if run.terminal:
            tracing.record(
                "orion.pipeline.run",
                parent=None,
                own=run_tp,
                start=run.retried_at or run.created_at,
                end=run.finished_at or now,
                outcome=run.status,
                pipeline_id=run.submission.dag_spec.pipeline_id,
                retries=run.retries,
                error=run.error if run.status == "failed" else None,
                **common,
            )
    except Exception:
        tracing.log.debug("spans of run %s not emitted", run.run_id, exc_info=True)
