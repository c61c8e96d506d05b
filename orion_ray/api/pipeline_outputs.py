"""``GET /api/orch/outputs/{submission_id}?node=&name=``: one output of a pipeline run (issue 16).

The body is the output's value as JSON, whether it is kept inline in the store or as an artifact
(then ``X-Orion-Artifact-Uri`` names it), at most ``max_bytes`` (413 past it). Tenant-scoped as the
status route is: another tenant's run is a 404. Answered by the scheduler, which holds the artifact
store's credentials (503 while it restarts).
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import Depends, FastAPI, Path, Query, Request, Response

from ..pipelines.outputs import DEFAULT_MAX_BYTES, MAX_MAX_BYTES
from .auth import Principal

NAME = r"^[A-Za-z0-9_.\-]+$"


def install_pipeline_outputs(
    app: FastAPI, principal: Callable[..., Any], backend_of: Callable[[Request], Any]
) -> None:
    """Add ``GET /api/orch/outputs/{submission_id}``."""

    @app.get("/api/orch/outputs/{submission_id}", tags=["pipelines"], response_class=Response)
    async def pipeline_output(
        request: Request,
        submission_id: str = Path(..., min_length=1, max_length=200),
        node: str = Query(..., min_length=1, max_length=64, pattern=NAME, description="the node's id"),
        name: str = Query(..., min_length=1, max_length=64, pattern=NAME, description="one of its outs"),
        max_bytes: int = Query(DEFAULT_MAX_BYTES, ge=1, le=MAX_MAX_BYTES, description="413 past this"),
        p: Principal = Depends(principal),
    ) -> Response:
        """The output's value as JSON (inline or read from the artifact store)."""
        got = await backend_of(request).pipeline_output(submission_id, node, name, p.tenant_id, max_bytes)
        headers = {"X-Orion-Artifact-Uri": got["uri"]} if got.get("uri") else {}
        return Response(content=got["data"], media_type="application/json", headers=headers)
