"""The pipeline routes (issue 16), ``/api/orch/...``: submit a DAG, read a run's state, cancel it.

A tenant submits for itself and sees and cancels its own runs only (another tenant's run is a 404,
as a workload is); an admin submits for any tenant (``?tenant_id=``, else ``default``) and reads any
run. Submit and cancel go to the scheduler, which hosts the pipeline controller and writes the
runs; a status is read from the store where this replica has it (``access``), as a workload's GET
is, so it answers while the scheduler restarts.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Body, Depends, FastAPI, Path, Query, Request

from ..errors import Forbidden, NotFound
from ..pipelines import runs_store
from ..pipelines.progress import status_body
from .auth import Principal
from .pipeline_outputs import install_pipeline_outputs

SUBMISSION_PATH = Path(..., min_length=1, max_length=200)


def install_pipelines(
    app: FastAPI,
    principal: Callable[..., Any],
    backend_of: Callable[[Request], Any],
    access_of: Optional[Callable[[Request], Any]] = None,
) -> None:
    """Add ``/api/orch/submit``, ``/api/orch/status/{id}`` and ``/api/orch/cancel/{id}``."""

    def who(p: Principal) -> str:
        return "admin" if p.is_admin else str(p.tenant_id)

    @app.post("/api/orch/submit", status_code=202, tags=["pipelines"])
    async def pipeline_submit(
        request: Request,
        body: dict[str, Any] = Body(
            ...,
            description="{dag_spec (YAML text or an object), runtime_params, refs}",
            examples=[{"dag_spec": "version: 1\npipeline_id: p\nnodes: [...]", "runtime_params": {}}],
        ),
        tenant_id: Optional[str] = Query(None, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$"),
        p: Principal = Depends(principal),
    ):
        """Submit a pipeline run; answered once the run is durably stored: ``{submission_id, state}``."""
        if p.tenant_id is not None and tenant_id not in (None, p.tenant_id):
            raise Forbidden(f"this key submits for tenant {p.tenant_id!r} only")
        tenant = p.tenant_id or tenant_id or "default"
        return await backend_of(request).pipeline_submit(body, tenant, who(p))

    @app.get("/api/orch/status/{submission_id}", tags=["pipelines"])
    async def pipeline_status(
        request: Request, submission_id: str = SUBMISSION_PATH, p: Principal = Depends(principal)
    ):
        """The run's state and every node's state, attempt, workload id and outputs (names)."""
        a = access_of(request) if access_of is not None else None
        if a is not None:
            return status_from_store(a.reader, submission_id, p.tenant_id)
        return await backend_of(request).pipeline_status(submission_id, p.tenant_id)

    from .pipeline_items import install_pipeline_items  # a map node's items, paged

    install_pipeline_items(app, principal, backend_of, access_of)

    @app.post("/api/orch/cancel/{submission_id}", status_code=202, tags=["pipelines"])
    async def pipeline_cancel(
        request: Request, submission_id: str = SUBMISSION_PATH, p: Principal = Depends(principal)
    ):
        """Cancel the run (idempotent): running nodes are cancelled, pending ones never start."""
        return await backend_of(request).pipeline_cancel(submission_id, p.tenant_id, who(p))

    install_pipeline_outputs(app, principal, backend_of)  # GET /api/orch/outputs/{id} (data between nodes)


def status_from_store(reader: Any, submission_id: str, tenant_id: Optional[str]) -> dict[str, Any]:
    """``GET /api/orch/status`` read from the store (404 outside the caller's tenant)."""
    run = runs_store.find_run(reader, submission_id, tenant_id)
    if run is None:
        raise NotFound(f"no pipeline run {submission_id[:128]!r}")
    return status_body(reader, run)
