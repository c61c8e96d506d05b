"""``GET /api/orch/status/{submission_id}/items``: a map node's items, one page at a time (issue
16's per-item listing). Tenant-scoped as the status is (another tenant's run is a 404), read from
the store where this replica has it, else through the scheduler."""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Path, Query, Request

from ..errors import NotFound
from ..pipelines import runs_store
from ..pipelines.progress import ITEM_STATES, MAX_PAGE, items_body
from .auth import Principal

SUBMISSION_PATH = Path(..., min_length=1, max_length=200)


def install_pipeline_items(
    app: FastAPI,
    principal: Callable[..., Any],
    backend_of: Callable[[Request], Any],
    access_of: Optional[Callable[[Request], Any]] = None,
) -> None:
    """Add ``GET /api/orch/status/{submission_id}/items``."""

    @app.get("/api/orch/status/{submission_id}/items", tags=["pipelines"])
    async def pipeline_items(
        request: Request,
        submission_id: str = SUBMISSION_PATH,
        node: str = Query(..., min_length=1, max_length=64, description="the map node's id"),
        after: int = Query(-1, ge=-1, le=2**31, description="list the items above this index"),
        limit: int = Query(100, ge=1, le=MAX_PAGE),
        state: Optional[str] = Query(
            None, description="only the items in this state: " + ", ".join(ITEM_STATES)
        ),
        p: Principal = Depends(principal),
    ):
        """A page of a map node's items in index order: index, state, attempt, workload id, error;
        the node's task counters; ``next_after`` for the next page (null on the last)."""
        a = access_of(request) if access_of is not None else None
        if a is not None:
            run = runs_store.find_run(a.reader, submission_id, p.tenant_id)
            if run is None:
                raise NotFound(f"no pipeline run {submission_id[:128]!r}")
            return items_body(a.reader, run, node, after=after, limit=limit, state=state)
        return await backend_of(request).pipeline_items(submission_id, node, after, limit, state, p.tenant_id)
