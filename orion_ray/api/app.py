"""The REST API (FastAPI). Served by Ray Serve in production; tests may serve it with any backend.

The backend is any object with the scheduler's async methods (``submit``, ``get``, ``list``,
``cancel``, ``logs``, ``health``, ``notify``, ``ack``): the scheduler itself, or ``ActorBackend``
over the actor. With a ``StoreAccess`` (``access``), reads are answered from the store and a
submission is written there, the scheduler only told (see ``store_access.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from .._version import __version__
from ..config import PolicyConfig, RateLimit, TenantConfig
from ..errors import Forbidden, SchedulerUnavailable, ValidationError
from ..metrics import CONTENT_TYPE, ApiMetricsMiddleware, OrionMetrics, merge_exposition
from ..models import WorkloadSpec
from ..service import SchedulerService
from ..serving.limits_gate import configure_from_ring as configure_serving_limits
from ..status import Status
from ..store.base import quarantined_count
from ..trust import runtime_env_problems
from .auth import KeyRing, Principal
from .errors import install_error_handlers
from .limits import BodySizeLimit, StrictJsonNumbers
from .rate_limit import RateLimiter
from .region_gate import check_dispatch_allowed
from .store_access import StoreAccess
from .tracing_middleware import TracingMiddleware, annotate_request


class SubmitAck(BaseModel):
    workload_id: str
    status: str
    queue_position: Optional[int] = None
    estimated_start: Optional[str] = None
    estimated_completion: Optional[str] = None


class ReloadBody(BaseModel):
    """The tenants section and the key hashes to run with (keys themselves never travel)."""

    model_config = ConfigDict(extra="forbid")
    tenants: list[TenantConfig]
    keys: dict[str, str] = Field(default_factory=dict, description="sha256 hex → tenant id")
    policy: Optional[PolicyConfig] = Field(None, description="orion.yaml's policy section")


log = logging.getLogger("orion.api")

KEYRING_TTL_S = 2.0


class _AppRequest:
    """The one thing the ring refresh reads of a request: its app (for calls made by handle)."""

    def __init__(self, app: FastAPI):
        self.app = app


MAX_CURSOR = 2**63 - 1  # a cursor is a SQLite row id: anything larger is refused (422), not a 500


class ErrorDetail(BaseModel):
    field: str
    problem: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    error: ErrorInfo


_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)}
# Errors stay JSON on a route whose success is text (its response class would make them text/plain).
_JSON_ERRORS = {
    code: {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for code in _ERRORS
}


class HealthBody(BaseModel):
    """``/health``: each part ``ok`` or ``down`` (503 when the scheduler or the store is down)."""

    model_config = ConfigDict(extra="allow")
    api: str
    scheduler: str
    store: str


def build_app(
    keyring: KeyRing,
    backend: SchedulerService | None = None,
    max_body_bytes: int = 1_048_576,
    backend_factory: Optional[Callable[[], Any]] = None,
    capacity_backend: Any = None,
    access: Optional[StoreAccess] = None,
    access_factory: Optional[Callable[[], StoreAccess]] = None,
    rate_limit: Optional[RateLimit] = None,
) -> FastAPI:
    """The Orion REST app over ``backend``, or over ``backend_factory()`` made on first use
    (Serve pickles the app into its replica, so the backend is made there, not here).
    ``capacity_backend`` (e.g. a ``ReservationManager``) adds ``/admin/v1/capacity/...``.
    ``access`` (or ``access_factory()``, made on first use) serves reads from the store and
    writes submissions there; without it every route goes to the backend. ``rate_limit`` is
    ``api.rate_limit``, each tenant's default request rate (None: only tenants with their own
    ``rate_limit`` are limited; see ``rate_limit.py``)."""
    app = FastAPI(
        title="Orion",
        version=__version__,
        responses=_ERRORS,
        description="Orchestration of AI workloads on Ray.",
    )
    app.state.backend = backend
    app.state.backend_factory = backend_factory
    app.state.access = access
    app.state.access_factory = access_factory
    app.state.keyring = keyring
    app.state.rate_limiter = RateLimiter(rate_limit)
    install_error_handlers(app)
    app.add_middleware(StrictJsonNumbers)  # inside the size limit: it reads a bounded body
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    # added last: the outermost middleware, so 413s and unhandled 500s are counted too
    app.state.metrics = OrionMetrics(ray_mirror=True)
    app.add_middleware(ApiMetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(TracingMiddleware)  # outermost: the request's server span (docs/tracing.md)

    def backend_or_none(request: Request):
        """The backend, made from the factory on first use (None when there is neither)."""
        state = request.app.state
        if state.backend is None and state.backend_factory is not None:
            state.backend = state.backend_factory()
        return state.backend

    def backend_of(request: Request):
        b = backend_or_none(request)
        if b is None:
            raise SchedulerUnavailable("the scheduler is not connected", retry_after=2)
        return b

    def access_of(request: Request) -> Optional[StoreAccess]:
        """The store access, made on first use; None (the backend answers) until it opens."""
        state = request.app.state
        if state.access is None and state.access_factory is not None:
            try:
                state.access = state.access_factory()
            except Exception as exc:  # e.g. the store is not created yet: ask the scheduler
                log.warning("store not readable from this replica yet: %s", exc)
        return state.access

    async def notify(request: Request) -> None:
        """Tell the scheduler new rows are in the store; never fails the request (the
        scheduler tails the store anyway)."""
        b = backend_or_none(request)
        if b is not None and hasattr(b, "notify"):
            try:
                await b.notify()
            except Exception:
                log.debug("notify failed; the scheduler's next tick takes the row", exc_info=True)

    app.state.bootstrap = keyring
    app.state.keyring_at = 0.0

    async def current_keyring(request: Request) -> KeyRing:
        """The key ring, refreshed from the scheduler every few seconds (so `orion reload`
        reaches every replica without a restart); the admin keys given at start always work."""
        state = request.app.state
        if time.monotonic() - state.keyring_at > KEYRING_TTL_S:
            state.keyring_at = time.monotonic()
            a, b = access_of(request), backend_or_none(request)
            if a is not None or (b is not None and hasattr(b, "keyring")):
                try:
                    ring = a.keyring() if a is not None else await b.keyring()
                    state.keyring = state.bootstrap.merged(
                        list(ring.get("admins", [])), dict(ring.get("keys", {}))
                    )
                    state.rate_limiter.set_overrides(
                        {t: RateLimit.model_validate(r) for t, r in ring.get("rate_limits", {}).items()}
                    )
                    configure_serving_limits(state, ring)  # /v1 and inference (serving/limits_gate.py)
                except Exception:  # keep the last ring; the scheduler may be restarting
                    pass
        return state.keyring

    async def key_principal(key_hash: str) -> Optional[Principal]:
        """Whose key hash this is (None: no key's), from the same ring requests are checked
        against: how a model replica's first hop verifies a key (``serving/first_hop.py``)."""
        return (await current_keyring(_AppRequest(app))).by_hash(key_hash)  # type: ignore[arg-type]

    app.state.key_principal = key_principal

    async def principal(
        request: Request, authorization: Optional[str] = Header(None, include_in_schema=False)
    ) -> Principal:
        """The caller, after its tenant's request rate (429 ``rate_limited`` when over it)."""
        p = (await current_keyring(request)).authenticate(authorization)
        annotate_request(p.tenant_id or "admin")  # the request's span and log lines
        if p.tenant_id is not None:
            request.app.state.rate_limiter.check(p.tenant_id)
        return p

    async def admin(p: Principal = Depends(principal)) -> Principal:
        if not p.is_admin:
            raise Forbidden("this route needs an admin key")
        return p

    def who(p: Principal) -> str:
        return "admin" if p.is_admin else p.tenant_id

    def scope(p: Principal) -> Optional[str]:
        """The tenant a caller is limited to (None for an admin)."""
        return p.tenant_id

    @app.post("/api/v1/workloads", status_code=202, response_model=SubmitAck, tags=["workloads"])
    async def submit(spec: WorkloadSpec, request: Request, p: Principal = Depends(principal)):
        """Submit a workload; answered once it is durably stored."""
        if p.tenant_id is not None and spec.metadata.tenant_id not in (None, p.tenant_id):
            raise Forbidden(f"this key submits for tenant {p.tenant_id!r} only")
        tenant = p.tenant_id or spec.metadata.tenant_id or "default"
        check_dispatch_allowed(access_of(request), spec.metadata.request_id)  # draining region
        if not p.is_admin:  # a tenant's runtime_env goes through the allowlist; the operator's does not
            problems = runtime_env_problems(spec.runtime_env)
            if problems:
                raise ValidationError("runtime_env is not allowed", problems)
        if spec.workload_type == "inference":  # the model must exist for this tenant (else 404)
            from ..serving.routes import inference_task

            task = await inference_task(request, spec, tenant)  # checks the model and the input
            # kept as an inference workload; the scheduler runs it as that task
            spec = spec.model_copy(update={"resources": task.resources, "metadata": task.metadata})
        a = access_of(request)
        if a is None or not a.writes_here(spec):
            return await backend_of(request).submit(spec.model_dump(mode="json"), tenant, who(p))
        w = await a.submit(spec, tenant, who(p))  # durable from here on: never a 5xx below
        await notify(request)
        b = backend_or_none(request)
        if b is not None and hasattr(b, "ack") and a.shallow():
            try:  # a short queue: the scheduler's own ack (policy order and forecast)
                return await b.ack(w.workload_id, tenant)
            except Exception:
                log.debug("no ack from the scheduler; answered from the store", exc_info=True)
        return a.ack(w)

    @app.get("/api/v1/workloads/{workload_id}", tags=["workloads"])
    async def get_workload(workload_id: str, request: Request, p: Principal = Depends(principal)):
        """One workload with its status history."""
        a = access_of(request)
        if a is not None:
            return a.get(workload_id, scope(p))
        return await backend_of(request).get(workload_id, scope(p))

    @app.get("/api/v1/workloads", tags=["workloads"])
    async def list_workloads(
        request: Request,
        p: Principal = Depends(principal),
        status: Optional[Status] = None,
        tenant_id: Optional[str] = Query(None, max_length=128),
        limit: int = Query(50, ge=1, le=1000),
        cursor: Optional[int] = Query(None, ge=0, le=MAX_CURSOR),
    ):
        """Workloads, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
        tenant = p.tenant_id or tenant_id
        a = access_of(request)
        if a is not None:
            return a.list(status.value if status else None, tenant, limit, cursor)
        return await backend_of(request).list(status.value if status else None, tenant, limit, cursor)

    @app.delete("/api/v1/workloads/{workload_id}", status_code=202, tags=["workloads"])
    async def cancel(workload_id: str, request: Request, p: Principal = Depends(principal)):
        """Cancel (idempotent: a finished workload answers its final status)."""
        return await backend_of(request).cancel(workload_id, scope(p), who(p))

    @app.get(
        "/api/v1/workloads/{workload_id}/logs",
        response_class=PlainTextResponse,
        responses=_JSON_ERRORS,
        tags=["workloads"],
    )
    async def logs(workload_id: str, request: Request, p: Principal = Depends(principal)):
        """stdout/stderr of the workload's latest run."""
        a = access_of(request)
        text = a.stored_logs(a.workload(workload_id, scope(p))) if a is not None else None
        if text is None:  # a running job's logs are live: the scheduler reads them from Ray
            text = await backend_of(request).logs(workload_id, scope(p))
        return PlainTextResponse(text)

    @app.get("/api/v1/workloads/{workload_id}/explain", tags=["workloads"])
    async def explain(workload_id: str, request: Request, p: Principal = Depends(principal)):
        """Why it is not running yet: its position, what it waits for (capacity, priority, quota,
        backoff) and, when known, when it is expected to start."""
        a = access_of(request)
        try:  # the forecast and the autoscaler's view are the scheduler's, live
            return await backend_of(request).explain(workload_id, scope(p))
        except SchedulerUnavailable:
            if a is None:
                raise
            return a.explain(workload_id, scope(p))  # its stored parts

    @app.get("/api/v1/queue", tags=["workloads"])
    async def queue(request: Request, p: Principal = Depends(principal)):
        """Queue depth and usage against quota per tenant (a tenant sees its own only)."""
        return await backend_of(request).queue(scope(p))

    @app.get("/api/v1/tenants", tags=["admin"])
    async def tenants(request: Request, p: Principal = Depends(admin)):
        """Every tenant with its weight, quota and current usage (admin)."""
        return await backend_of(request).tenant_list()

    @app.post("/admin/v1/reload", tags=["admin"])
    async def reload(body: ReloadBody, request: Request, p: Principal = Depends(admin)):
        """Replace the tenants and their key hashes; validated first, all or nothing (admin)."""
        result = await backend_of(request).configure_tenants(
            [t.model_dump(mode="json") for t in body.tenants],
            body.keys,
            None,
            who(p),
            body.policy.model_dump(mode="json") if body.policy else None,
        )
        request.app.state.keyring_at = 0.0  # pick the new keys up on the next request
        return result

    @app.get("/admin/v1/infrastructure/fragmentation", tags=["admin"])
    async def fragmentation(request: Request, p: Principal = Depends(admin)):
        """GPU fragmentation now: free and stranded GPUs per node and per GPU type (admin)."""
        return await backend_of(request).fragmentation()

    @app.get("/admin/v1/audit", tags=["admin"])
    async def audit(
        request: Request,
        p: Principal = Depends(admin),
        limit: int = Query(100, ge=1, le=1000),
        cursor: Optional[int] = Query(None, ge=0, le=MAX_CURSOR),
    ):
        """Who submitted, cancelled or reconfigured what, and when; newest first (admin)."""
        a = access_of(request)
        if a is not None:
            return a.audit_log(limit, cursor)
        return await backend_of(request).audit_log(limit, cursor)

    from .pipelines import install_pipelines  # /api/orch (issue 16)

    install_pipelines(app, principal, backend_of, access_of)
    from .pipeline_ops import install_pipeline_ops  # retry, logs, lineage, workers (issue 16)

    install_pipeline_ops(app, principal, backend_of, access_of)
    from .schedules import install_schedules  # /api/orch/schedules, triggers, events (issue 16)

    install_schedules(app, principal, backend_of, access_of)

    from .costs import install_costs  # /api/v1/costs (issue 18: docs/cost.md)

    install_costs(app, principal, access_of)

    from .infrastructure import install_infrastructure

    install_infrastructure(app, admin, backend_of)
    from .config_apply import install_config_apply  # a control plane's config snapshots (issue 17)

    install_config_apply(app, admin, backend_of)

    from .backups import install_backups  # /admin/v1/backups (issue 18: docs/backups.md)

    install_backups(app, admin)

    if capacity_backend is not None:
        from .capacity import install_capacity

        install_capacity(app, capacity_backend, admin)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics(request: Request):
        """Prometheus text: the API's request metrics and the scheduler's (no key needed)."""
        texts = [request.app.state.metrics.render()]
        b = backend_or_none(request)
        if b is not None and hasattr(b, "metrics_text"):
            try:
                texts.append(await b.metrics_text())
            except Exception:  # scheduler unreachable: orion_scheduler_up stays 0, which alerts
                pass
        extra = getattr(request.app.state, "metrics_extra", None)  # the backups' age
        if extra is not None:
            texts.append(extra())
        return PlainTextResponse(merge_exposition(*texts), media_type=CONTENT_TYPE)

    @app.get(
        "/health",
        tags=["operations"],
        responses={200: {"model": HealthBody}, 503: {"model": HealthBody, "description": "a part is down"}},
    )
    async def health(request: Request):
        """Liveness of the API, the scheduler and the store (503 when either is down, when the
        scheduler's loop has not completed a cycle for too long, or its recovery is stuck)."""
        body: dict[str, Any] = {"api": "ok", "scheduler": "down", "store": "unknown"}
        try:
            body.update(await backend_of(request).health())
        except Exception as exc:  # the scheduler is unreachable: say so, do not crash
            body["scheduler_error"] = str(exc)[:500]
        a = request.app.state.access
        if a is not None:  # rows this replica's reads skipped (the scheduler reports its own)
            body["quarantined_reads"] = quarantined_count(a.reader)
        ok = body.get("scheduler") == "ok" and body.get("store") == "ok"
        return JSONResponse(body, status_code=200 if ok else 503)

    from ..console import install_console  # /console, /api/v1/whoami, /api/v1/stream

    install_console(app, principal, access_of)

    from ..serving.routes import install_serving  # /v1 (OpenAI), /internal/deployments, scale

    install_serving(app, principal, admin)
    return app
