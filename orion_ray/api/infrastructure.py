"""The infrastructure admin API: nodes and their lifecycle, GPU use, scaling events, health.

Every route needs the admin key (``build_app`` installs the routes behind it), except
``/internal/resources/available``, which is also admin-only: free capacity per node says a lot
about other tenants.
"""

from typing import Any, Callable, Optional

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

NODE_ID = r"^[A-Za-z0-9_.\-]{1,128}$"


class DrainBody(BaseModel):
    """How long running work may take to end before it is preempted back to the queue."""

    model_config = ConfigDict(extra="forbid")
    deadline_s: float = Field(300.0, ge=0, le=7 * 86400)
    reason: Optional[str] = Field(None, max_length=500)


class CordonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Optional[str] = Field(None, max_length=500)


def install_infrastructure(app: FastAPI, admin: Callable, backend_of: Callable[[Request], Any]) -> None:
    """The routes, on ``app`` itself behind the ``admin`` dependency (like the serving routes:
    an included router's dependencies did not survive Serve pickling the app)."""

    @app.get("/admin/v1/infrastructure/nodes", tags=["admin"])
    async def nodes(request: Request, p=Depends(admin), include_ended: bool = True):
        """Every node: lifecycle state (registered, ready, cordoned, draining, drained, terminated,
        lost), pool, GPU type, resources, free capacity and the workloads on it (admin)."""
        return await backend_of(request).nodes(include_ended)

    @app.get("/admin/v1/infrastructure/gpu-utilization", tags=["admin"])
    async def gpu_utilization(request: Request, p=Depends(admin)):
        """Per GPU node: allocated GPUs, and NVML device telemetry where a device exists
        (admin)."""
        return await backend_of(request).gpu_utilization()

    @app.post("/admin/v1/infrastructure/nodes/{node_id}/cordon", tags=["admin"])
    async def cordon(
        request: Request,
        p=Depends(admin),
        node_id: str = Path(pattern=NODE_ID),
        body: Optional[CordonBody] = Body(None),
    ):
        """No new placements on the node; running work continues (admin)."""
        return await backend_of(request).cordon(node_id, "admin", body.reason if body else None)

    @app.post("/admin/v1/infrastructure/nodes/{node_id}/uncordon", tags=["admin"])
    async def uncordon(request: Request, p=Depends(admin), node_id: str = Path(pattern=NODE_ID)):
        """Placements allowed again; a drain under way is called off (admin)."""
        return await backend_of(request).uncordon(node_id, "admin")

    @app.post("/admin/v1/infrastructure/nodes/{node_id}/drain", status_code=202, tags=["admin"])
    async def drain(
        request: Request,
        p=Depends(admin),
        node_id: str = Path(pattern=NODE_ID),
        body: Optional[DrainBody] = Body(None),
    ):
        """Cordon, let running work end until ``deadline_s``, then preempt what is left back to
        the queue; the node is then drained and may be released (admin)."""
        body = body or DrainBody()
        return await backend_of(request).drain(node_id, "admin", body.deadline_s, body.reason)

    @app.get("/admin/v1/scaling/events", tags=["admin"])
    async def scaling_events(
        request: Request,
        p=Depends(admin),
        limit: int = Query(100, ge=1, le=1000),
        cursor: Optional[int] = Query(None, ge=0, le=2**63 - 1),
        kind: Optional[str] = Query(None, pattern=r"^[a-z_]{1,32}$"),
        pool: Optional[str] = Query(None, max_length=64),
    ):
        """Scaling decisions (trigger, reason, before → after, outcome, duration), failed
        launches and node changes, newest first (admin)."""
        return await backend_of(request).scaling_events(limit, cursor, kind, pool)

    @app.get("/admin/v1/infrastructure/health", tags=["admin"])
    async def infrastructure_health(request: Request, p=Depends(admin)):
        """Nodes by state, nodes lost in the last hour, and the scheduler's and autoscaler's
        loops (admin)."""
        return await backend_of(request).infrastructure_health()

    @app.get("/internal/resources/available", tags=["admin"])
    async def resources_available(request: Request, p=Depends(admin)):
        """Free GPUs by type and by node, in Orion's account (admin)."""
        return await backend_of(request).resources_available()
