"""The control plane's read views over its regions (issue 17, docs/regions-config.md): the current
config with which regions applied it, aggregated metrics, and the audit trail of regions' status
changes. Installed by ``build_control_plane_app``; operators' region and config changes are
audited here too."""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse

from ..policy.region_state import RegionRecord
from .observability import (
    CONTENT_TYPE,
    audit_page,
    config_view,
    heartbeat_age,
    render_metrics,
)
from .service import ControlPlane

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_CURSOR = 2**62


def region_extras(r: RegionRecord, now: float) -> dict[str, Any]:
    """What ``GET /api/v1/regions`` adds for the CLI's table: heartbeat age, launch P95, hash."""
    age = heartbeat_age(r, now)
    return {
        "heartbeat_age_s": round(age, 3) if age is not None else None,
        "launch_p95_s": r.heartbeat.launch_p95_s,
        "applied_config_sha256": r.heartbeat.applied_config_sha256,
    }


def install_region_views(app: FastAPI, plane: ControlPlane, admin: Callable[..., Any]) -> None:
    """``GET /api/v1/config``, ``GET /metrics`` and ``GET /api/v1/audit`` on ``app``."""

    @app.get("/api/v1/config", tags=["config"])
    def current_config(p: Any = Depends(admin), body: bool = True) -> dict[str, Any]:
        """The current (wanted) snapshot: version, hash, body, and which regions applied it,
        which are behind and which never heartbeated (admin)."""
        return config_view(plane.latest_snapshot(), plane.regions.values(), include_body=body)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text: per-region state, capacity, queue, applied config, heartbeat age and
        launch P95 (no key needed, like a region's /metrics; no tenant's data is in it)."""
        latest = plane.latest_snapshot()
        text = render_metrics(
            list(plane.regions.values()), wanted_version=latest.version if latest else 0, now=plane.clock()
        )
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    @app.get("/api/v1/audit", tags=["regions"])
    def audit(
        p: Any = Depends(admin),
        region: Optional[str] = Query(None, pattern=NAME),
        workload_id: Optional[str] = Query(None, max_length=128),
        limit: int = Query(100, ge=1, le=1000),
        cursor: Optional[int] = Query(None, ge=0, le=MAX_CURSOR),
    ) -> dict[str, Any]:
        """Every region's status changes (with ``region``) and operators' actions, newest first
        (admin)."""
        return audit_page(plane.store, region=region, workload_id=workload_id, limit=limit, cursor=cursor)
