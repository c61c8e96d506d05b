"""The pipeline operations routes (issue 16; docs/pipelines-operations.md): retry a run from its
failed nodes, a node's logs, the run's OpenLineage events, and the workers view.

Tenancy as for ``/api/orch/status``: a tenant reaches its own runs only (another tenant's is a
404); an admin any run. Retry goes to the scheduler (the store's writer). Logs and lineage are
read from the store where this replica has it (a running job's logs are live: the scheduler reads
them from Ray), else asked of the scheduler. ``/api/v1/workers`` is the admin's: a worker's tasks
belong to every tenant, so a tenant key gets a 403.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Path, Query, Request

from ..errors import Forbidden, NotFound
from ..pipelines import lineage, node_logs, runs_store
from .auth import Principal

SUBMISSION_PATH = Path(..., min_length=1, max_length=200)
NODE_QUERY = Query(
    ..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="the node's id"
)


def install_pipeline_ops(
    app: FastAPI,
    principal: Callable[..., Any],
    backend_of: Callable[[Request], Any],
    access_of: Optional[Callable[[Request], Any]] = None,
) -> None:
    """Add ``POST /api/orch/retry/{id}``, ``GET /api/orch/logs/{id}``, ``GET /api/orch/lineage/{id}``
    and ``GET /api/v1/workers``."""

    def who(p: Principal) -> str:
        return "admin" if p.is_admin else str(p.tenant_id)

    def access(request: Request) -> Any:
        return access_of(request) if access_of is not None else None

    @app.post("/api/orch/retry/{submission_id}", status_code=202, tags=["pipelines"])
    async def pipeline_retry(
        request: Request, submission_id: str = SUBMISSION_PATH, p: Principal = Depends(principal)
    ):
        """Run a failed or cancelled run again from its failed nodes: succeeded nodes keep their
        outputs; failed, cancelled and skipped ones run again as new attempts. 409 for a run
        that is running or succeeded."""
        return await backend_of(request).pipeline_retry(submission_id, p.tenant_id, who(p))

    @app.get("/api/orch/logs/{submission_id}", tags=["pipelines"])
    async def pipeline_logs(
        request: Request,
        submission_id: str = SUBMISSION_PATH,
        node: str = NODE_QUERY,
        attempt: Optional[int] = Query(None, ge=1, le=1_000_000),
        p: Principal = Depends(principal),
    ):
        """A node's logs: its current or last attempt's, or ``attempt``'s (the tail, ≤ 1 MiB)."""
        a = access(request)
        if a is None:
            return await backend_of(request).pipeline_logs(submission_id, node, attempt, p.tenant_id)
        run = _run(a.reader, submission_id, p.tenant_id)
        n, w = node_logs.node_workload(a.reader, run, node, attempt)
        text = a.stored_logs(w)
        if text is None:  # a running job's logs are live: the scheduler reads them from Ray
            text = await backend_of(request).logs(w.workload_id, run.tenant_id)
        return node_logs.logs_body(run, n, w, text)

    @app.get("/api/orch/lineage/{submission_id}", tags=["pipelines"])
    async def pipeline_lineage(
        request: Request, submission_id: str = SUBMISSION_PATH, p: Principal = Depends(principal)
    ):
        """The run's OpenLineage RunEvents: a START and a COMPLETE/FAIL/ABORT for the run and
        for each node that ran, with the parent-run facet and the nodes' input/output datasets."""
        a = access(request)
        if a is None:
            return await backend_of(request).pipeline_lineage(submission_id, p.tenant_id)
        run = _run(a.reader, submission_id, p.tenant_id)
        return lineage.lineage_body(run, runs_store.node_runs(a.reader, run.run_id))

    @app.get("/api/v1/workers", tags=["operations"])
    async def workers(request: Request, p: Principal = Depends(principal)):
        """Each Ray node with its current tasks (workload ids; pipeline node if any), tasks
        completed, resources reserved and in use, and last activity (admin)."""
        if not p.is_admin:
            raise Forbidden("the workers view shows every tenant's tasks: it needs an admin key")
        return await backend_of(request).workers()


def _run(reader: Any, submission_id: str, tenant_id: Optional[str]) -> Any:
    run = runs_store.find_run(reader, submission_id, tenant_id)
    if run is None:
        raise NotFound(f"no pipeline run {submission_id[:128]!r}")
    return run
