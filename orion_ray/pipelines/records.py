"""A pipeline run and its node runs as the store keeps them and the engine reads them. Pure.

Node states: ``pending`` (waiting for its upstream nodes, a retry's backoff, or room in the
queue), ``submitted`` (the workload of attempt ``attempt`` exists: its status says the rest),
then ``succeeded``, ``failed``, ``cancelled`` or ``skipped`` (an upstream node did not succeed).
Run states: ``running``, ``cancelling`` (a cancel was asked: running nodes are being stopped),
then ``succeeded``, ``failed`` or ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .refs import artifact_uris
from .spec import Submission

PENDING, SUBMITTED, SUCCEEDED, FAILED, CANCELLED, SKIPPED = (
    "pending",
    "submitted",
    "succeeded",
    "failed",
    "cancelled",
    "skipped",
)
NODE_TERMINAL = (SUCCEEDED, FAILED, CANCELLED, SKIPPED)
RUNNING, CANCELLING = "running", "cancelling"
RUN_ACTIVE = (RUNNING, CANCELLING)
RUN_TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
MAX_OUTPUT_CHARS = 65_536  # one node's outputs, inline JSON (larger values: artifacts, dataflow.py)


@dataclass
class NodeRun:
    """One node of one run."""

    node_id: str
    status: str = PENDING
    attempt: int = 0  # attempts started so far; the current one's workload is ``workload_id``
    workload_id: Optional[str] = None
    not_before: float = 0.0  # a retry waits for its backoff until then
    outputs: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    reason: Optional[str] = None  # why a pending node is not submitted yet
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    # failures counted apart (failures.py); the bases are the counts when the run was last
    # retried, so a retried run gives each node its retry budget afresh
    user_failures: int = 0
    system_failures: int = 0
    attempt_base: int = 0
    user_base: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in NODE_TERMINAL

    def public(self, tasks: Optional[dict[str, int]] = None) -> dict[str, Any]:
        """What ``GET /api/orch/status`` shows of the node (outputs summarised: their names;
        ``tasks``: its task counters, see ``progress.py``)."""
        return {
            "node_id": self.node_id,
            "state": self.status,
            "attempt": self.attempt,
            "workload_id": self.workload_id,
            "outputs": sorted(self.outputs) if self.outputs else [],
            "artifacts": artifact_uris(self.outputs),  # out → URI, for outputs kept as artifacts
            "error": self.error,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "user_failures": self.user_failures,
            "system_failures": self.system_failures,
            **(tasks or {}),
        }


@dataclass
class PipelineRun:
    """One submission of a pipeline."""

    run_id: str
    tenant_id: str
    submission_id: str
    status: str
    body: dict[str, Any]  # the validated submission, as JSON
    created_at: float
    updated_at: float
    finished_at: Optional[float] = None
    error: Optional[str] = None
    seq: int = 0
    retries: int = 0  # times the run was retried from its failed nodes
    retried_at: Optional[float] = None  # the last of them (slo.max_runtime counts from here)
    _parsed: Optional[Submission] = field(default=None, repr=False, compare=False)

    @property
    def submission(self) -> Submission:
        """The submission (validated when it was accepted: not checked again)."""
        if self._parsed is None:
            self._parsed = Submission.model_validate(self.body)
        return self._parsed

    @property
    def terminal(self) -> bool:
        return self.status in RUN_TERMINAL

    def public(
        self, nodes: list[NodeRun], tasks: Optional[dict[str, dict[str, int]]] = None
    ) -> dict[str, Any]:
        """``GET /api/orch/status/{submission_id}``; ``tasks``: each node's task counters, summed
        into ``progress`` too (``progress.py``)."""
        from .run_spans import trace_id as run_trace_id  # run_spans imports this module

        counts: dict[str, int] = {}
        for n in nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        tasks = tasks or {}
        for per in tasks.values():
            for k, v in per.items():
                counts[k] = counts.get(k, 0) + v
        return {
            "submission_id": self.submission_id,
            "pipeline_id": self.submission.dag_spec.pipeline_id,
            "state": self.status,
            "tenant_id": self.tenant_id,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "retries": self.retries,
            "trace_id": run_trace_id(self),  # None unless tracing is on (docs/tracing.md)
            "nodes": [n.public(tasks.get(n.node_id)) for n in nodes],
            "progress": {"total": len(nodes), **counts},
        }
