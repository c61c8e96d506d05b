"""The control-plane role's REST routes (docs/regions.md): regions, heartbeat, status, dispatch, config.

Operators and the dispatcher use an admin key; a region uses its region-scoped key, which may only
heartbeat and report status for that one region. Bodies are pydantic models that forbid unknown
fields, so a typo is a 422 naming the field, never a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from fastapi import Depends, FastAPI, Header, Path
from pydantic import BaseModel, ConfigDict, Field

from .._version import __version__
from ..api.auth import KeyRing, Principal, hash_key
from ..api.errors import install_error_handlers
from ..errors import Forbidden
from ..policy.region_state import Heartbeat
from ..policy.regions import RunRequest
from .routes_views import install_region_views, region_extras
from .service import ControlPlane

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRegion(_Body):
    name: str = Field(pattern=NAME)


class StateBody(_Body):
    state: Literal["active", "draining", "inactive"]


class LaunchHealth(_Body):
    """The protocol's ``launch_health`` (docs/regions.md): recent launches' outcome and P95."""

    ok: bool = True
    failures_recent: int = Field(0, ge=0)
    p95_launch_s: Optional[float] = Field(None, ge=0, allow_inf_nan=False)


class HeartbeatBody(_Body):
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    free_gpus: dict[str, float] = Field(default_factory=dict, max_length=32)
    gpu_types: list[str] = Field(default_factory=list, max_length=32)
    free_cpus: float = Field(0.0, ge=0, allow_inf_nan=False)
    queue_depth: int = Field(0, ge=0)
    launch_failures: int = Field(0, ge=0)
    launch_health: Optional[LaunchHealth] = None
    # p95 of submit → running over recent starts (the agent's launch health; shown, not scored)
    launch_p95_s: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    applied_config_version: int = Field(0, ge=0)
    applied_config_sha256: str = Field("", max_length=64)
    status_seq: int = Field(0, ge=0)
    # (workload_id, generation) of the control plane's runs it holds, for fencing
    assigned: list[tuple[str, int]] = Field(default_factory=list, max_length=100_000)


class StatusChange(_Body):
    seq: int = Field(ge=1)
    workload_id: str = Field(min_length=1, max_length=128)
    generation: Optional[int] = Field(None, ge=1)
    status: Literal[
        "submitted", "queued", "starting", "running", "preempted", "completed", "failed", "cancelled"
    ]
    at: float = Field(allow_inf_nan=False)
    reason: str = Field("", max_length=2000)
    # the region's own id of the workload and its tenant (the control plane's view lists both)
    region_workload_id: Optional[str] = Field(None, max_length=128)
    tenant_id: Optional[str] = Field(None, max_length=128)
    # what the workload holds (gpu, gpu:<type>, cpu): a direct run's hold in the global quota
    demand: Optional[dict[str, Amount]] = Field(None, max_length=16)


class StatusBody(_Body):
    changes: list[StatusChange] = Field(max_length=10_000)


class ResyncItem(StatusChange):
    seq: int = Field(0, ge=0)  # a listing is as of ``through_seq``: an item's own is ignored


class ResyncBody(_Body):
    through_seq: int = Field(ge=1)
    items: list[ResyncItem] = Field(max_length=100_000)


class DispatchBody(_Body):
    run_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1, max_length=128)
    gpus: float = Field(0.0, ge=0, allow_inf_nan=False)
    gpu_type: Optional[str] = Field(None, max_length=64)
    cpus: float = Field(0.0, ge=0, allow_inf_nan=False)
    region: Optional[str] = Field(None, pattern=NAME)
    region_selector: dict[str, str] = Field(default_factory=dict, max_length=32)
    preference: list[str] = Field(default_factory=list, max_length=64)
    expected_gpu_hours: Optional[float] = Field(None, ge=0, allow_inf_nan=False)


class OutcomeBody(_Body):
    accepted: bool
    kind: Optional[Literal["refused", "throttled", "timeout", "launch_failed"]] = None
    gpu_type: Optional[str] = Field(None, max_length=64)
    detail: str = Field("", max_length=2000)


class ConfigBody(_Body):
    sections: dict[str, Any]


def _region_json(plane: ControlPlane, name: str) -> dict[str, Any]:
    r = plane.region(name)
    latest = plane.latest_snapshot()
    wanted = latest.version if latest else 0
    hb = r.heartbeat
    return {
        "name": r.name,
        "state": r.state,
        "operator_state": r.operator_state,
        "lost": r.lost,
        "last_heartbeat": r.last_heartbeat,
        "labels": dict(hb.labels),
        "free_gpus": dict(hb.free_gpus),
        "gpu_types": sorted(hb.gpu_types),  # offered: its nodes' and its launchable pools' types
        "free_cpus": hb.free_cpus,
        "queue_depth": hb.queue_depth,
        "launch_failures": hb.launch_failures,
        "applied_config_version": hb.applied_config_version,
        "wanted_config_version": wanted,
        "drift": hb.applied_config_version != wanted,
        "status_seq": r.status_seq,
        **region_extras(r, plane.clock()),  # heartbeat age, launch P95, applied hash
    }


def build_control_plane_app(plane: ControlPlane, keyring: KeyRing, region_keys: dict[str, str]) -> FastAPI:
    """The control plane's app: ``region_keys`` maps a key's sha256 to the one region it speaks for."""
    app = FastAPI(title="Orion control plane", version=__version__)
    install_error_handlers(app)

    def admin(authorization: Optional[str] = Header(None)) -> Principal:
        p = keyring.authenticate(authorization)
        if not p.is_admin:
            raise Forbidden("an admin key is required")
        return p

    def any_caller(authorization: Optional[str] = Header(None)) -> None:
        """A region's key or an admin key (both may read config snapshots)."""
        if authorization and authorization.lower().startswith("bearer "):
            if hash_key(authorization[7:].strip()) in region_keys:
                return
        admin(authorization)

    def region_caller(name: str = Path(pattern=NAME), authorization: Optional[str] = Header(None)) -> str:
        if authorization and authorization.lower().startswith("bearer "):
            owner = region_keys.get(hash_key(authorization[7:].strip()))
            if owner is not None:
                if owner != name:
                    raise Forbidden(f"this key speaks for region {owner}, not {name}")
                return name
        admin(authorization)
        return name

    @app.get("/api/v1/regions", tags=["regions"])
    def list_regions(p: Principal = Depends(admin)) -> dict[str, Any]:
        """Every region with its state, capacity, applied vs wanted config version (drift)."""
        return {"items": [_region_json(plane, n) for n in sorted(plane.regions)]}

    @app.post("/api/v1/regions", status_code=201, tags=["regions"])
    def add_region(body: NewRegion, p: Principal = Depends(admin)) -> dict[str, Any]:
        """Register a region (idempotent)."""
        plane.add_region(body.name)
        return _region_json(plane, body.name)

    @app.get("/api/v1/regions/{name}", tags=["regions"])
    def get_region(name: str = Path(pattern=NAME), p: Principal = Depends(admin)) -> dict[str, Any]:
        """One region."""
        return _region_json(plane, name)

    @app.post("/api/v1/regions/{name}/state", tags=["regions"])
    def region_state(
        body: StateBody, name: str = Path(pattern=NAME), p: Principal = Depends(admin)
    ) -> dict[str, Any]:
        """Drain, activate or deactivate a region."""
        plane.set_region_state(name, body.state)
        plane.store.audit("admin", "region_state", name, {"region": name, "state": body.state}, plane.clock())
        return _region_json(plane, name)

    @app.post("/api/v1/regions/{name}/heartbeat", tags=["regions"])
    def heartbeat(body: HeartbeatBody, name: str = Depends(region_caller)) -> dict[str, Any]:
        """A region's heartbeat; the answer carries its state, the wanted config and what to cancel."""
        hb = Heartbeat(
            labels=body.labels,
            free_gpus=body.free_gpus,
            gpu_types=frozenset(body.gpu_types),
            free_cpus=body.free_cpus,
            queue_depth=body.queue_depth,
            launch_failures=max(
                body.launch_failures, body.launch_health.failures_recent if body.launch_health else 0
            ),
            launch_p95_s=body.launch_health.p95_launch_s if body.launch_health else body.launch_p95_s,
            applied_config_version=body.applied_config_version,
            applied_config_sha256=body.applied_config_sha256,
            status_seq=body.status_seq,
        )
        return plane.heartbeat(name, hb, body.assigned)

    @app.post("/api/v1/regions/{name}/status", tags=["regions"])
    def status(body: StatusBody, name: str = Depends(region_caller)) -> dict[str, Any]:
        """Sequenced status changes; a resend is a no-op, a gap is a 409 naming ``resync_from``."""
        return plane.status(name, [c.model_dump() for c in body.changes])

    @app.post("/api/v1/regions/{name}/resync", tags=["regions"])
    def resync(body: ResyncBody, name: str = Depends(region_caller)) -> dict[str, Any]:
        """A full listing as of ``through_seq`` (the region's outbox overflowed): reconciled;
        a replay is a no-op."""
        items = [c.model_dump(exclude={"seq"}) for c in body.items]
        return plane.resync(name, body.through_seq, items)

    @app.post("/api/v1/dispatch", tags=["regions"])
    def dispatch(body: DispatchBody, p: Principal = Depends(admin)) -> dict[str, Any]:
        """Choose a region and reserve global quota; 429 with each region's reason when none can."""
        run = RunRequest(
            run_id=body.run_id,
            tenant_id=body.tenant_id,
            gpus=body.gpus,
            gpu_type=body.gpu_type,
            cpus=body.cpus,
            region=body.region,
            region_selector=body.region_selector,
            preference=tuple(body.preference),
        )
        expected = {"gpu": body.expected_gpu_hours} if body.expected_gpu_hours is not None else None
        d = plane.dispatch(run, expected_gpu_hours=expected)
        return {
            "run_id": body.run_id,
            "region": d.decision.region,
            "queued": d.decision.queued,
            "generation": d.assignment.generation,
            "idempotency_key": d.key,
            "ranked": [{"region": n, "score": s} for n, s in d.decision.ranked],
            "reasons": d.decision.reasons,
        }

    @app.post("/api/v1/dispatch/{run_id}/outcome", tags=["regions"])
    def outcome(
        body: OutcomeBody, run_id: str = Path(max_length=128), p: Principal = Depends(admin)
    ) -> dict[str, Any]:
        """The region's answer to a dispatch: commit the reservation, or release it and block."""
        a = plane.outcome(
            run_id, accepted=body.accepted, kind=body.kind, detail=body.detail, gpu_type=body.gpu_type
        )
        return {"run_id": run_id, "region": a.region, "generation": a.generation, "status": a.status}

    @app.put("/api/v1/config", tags=["config"])
    def publish(body: ConfigBody, p: Principal = Depends(admin)) -> dict[str, Any]:
        """Publish the configuration; the version goes up only when the content changed."""
        s = plane.publish(body.sections)
        plane.store.audit(
            "admin", "publish_config", None, {"version": s.version, "sha256": s.sha256}, plane.clock()
        )
        return {"version": s.version, "sha256": s.sha256}

    @app.get("/api/v1/config/snapshots/{version}", tags=["config"])
    def snapshot(version: int = Path(ge=1), _: None = Depends(any_caller)) -> dict[str, Any]:
        """One snapshot as canonical text with its hash (the region verifies before applying)."""
        s = plane.snapshot(version)
        return {"version": s.version, "sha256": s.sha256, "text": s.text()}

    install_region_views(app, plane, admin)  # GET /api/v1/config, /metrics, /api/v1/audit
    return app
