"""A pipeline submission at the door: parse, check that every node can run as a workload for this
tenant, and make the run record. Pure (the caller writes it: ``runs_store.create_run``).

Each node is built once as the workload of its first attempt (its inputs as placeholders) and
passed through the same checks as a REST workload submission (``check``: the task-function
denylist, priority grants, the runtime_env allowlist…), so what would fail at launch is a 422 or a
403 now, naming the node.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Optional

from ..errors import OrionError, ValidationError
from ..models import WorkloadSpec
from . import image_kind, kinds
from .records import RUNNING, PipelineRun
from .spec import MAX_NODES, Submission, parse_submission
from .workloads import node_spec


def accept(
    body: Any,
    *,
    tenant_id: str,
    now: float,
    check: Optional[Callable[[WorkloadSpec], None]] = None,
    max_nodes: int = MAX_NODES,
    container_runtime: bool = False,
) -> tuple[PipelineRun, list[str]]:
    """The run to store and its node ids, or the error (422 naming the field; 403 from ``check``
    for what the tenant was not granted). ``container_runtime``: whether ``image`` nodes can run."""
    sub = parse_submission(body, max_nodes=max_nodes)
    problems = kinds.runnable_problems(sub) + image_kind.node_problems(
        sub, container_runtime=container_runtime
    )
    if problems:
        raise ValidationError(problems[0]["problem"], problems)
    run_id = f"pl-{uuid.uuid4().hex[:16]}"
    submission_id = sub.runtime_params.submission_id or run_id
    for node in sub.dag_spec.nodes:
        spec = node_spec(
            sub,
            node,
            submission_id=submission_id,
            attempt=1,
            inputs={port: None for port in node.ins},
            tenant_id=tenant_id,
        )
        if check is not None:
            try:
                check(spec)
            except OrionError as exc:
                exc.details = [
                    {**d, "field": f"dag_spec.nodes.{node.id}.{d.get('field', '')}".rstrip(".")}
                    for d in exc.details
                ] or [{"field": f"dag_spec.nodes.{node.id}", "problem": exc.message}]
                raise
    run = PipelineRun(
        run_id=run_id,
        tenant_id=tenant_id,
        submission_id=submission_id,
        status=RUNNING,
        body=stored_body(sub),
        created_at=now,
        updated_at=now,
    )
    return run, [n.id for n in sub.dag_spec.nodes]


def stored_body(sub: Submission) -> dict[str, Any]:
    """The submission as stored: JSON that validates back to the same submission."""
    return sub.model_dump(mode="json", by_alias=True, exclude_none=True)
