"""Serving routes on Orion's API app: the OpenAI ``/v1`` routes, and the admin routes that manage
deployments (``/internal/deployments…``), releases and scale (``/admin/v1/models/{id}/scale``)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Query, Request

from ..errors import ValidationError
from ..serving_specs import NAME_RE, DeploymentSpec, ReleaseSpec, ScaleRequest


def _manager(request: Request) -> Any:
    """The manager client, made on first use (Serve pickles the app into its replica)."""
    state = request.app.state
    if getattr(state, "serving", None) is None:
        from .actor import ManagerClient

        token = getattr(state, "control_token", None)  # the credential, or how to read it here
        state.serving = ManagerClient(control_token=token() if callable(token) else token)
    return state.serving


def report_outcomes(app: FastAPI, samples: list) -> None:
    """Outcomes from a model replica's first hop, to the manager (``OrionAPI.serving_report``)."""
    from types import SimpleNamespace

    _manager(SimpleNamespace(app=app)).report_nowait(samples)  # type: ignore[arg-type]


def report_usage(app: FastAPI, items: list) -> None:
    """Token counts from a model replica's first hop, to the manager (``OrionAPI.serving_usage``)."""
    from types import SimpleNamespace

    _manager(SimpleNamespace(app=app)).usage_nowait(items)  # type: ignore[arg-type]


def _router(request: Request) -> Any:
    state = request.app.state
    if getattr(state, "model_router", None) is None:
        from ray import serve

        from serve_apps.llm.replica import DEPLOYMENT_NAME

        from .caching import ModelCaches
        from .router import ModelRouter

        state.model_router = ModelRouter(
            _manager(request),
            lambda app: serve.get_deployment_handle(DEPLOYMENT_NAME, app),
            cache=ModelCaches(metrics=getattr(state, "metrics", None)),  # hit/miss/bytes on /metrics
        )
    return state.model_router


def _changed(request: Request) -> None:
    """A deployment or release changed: this replica's router reads the table again."""
    router = getattr(request.app.state, "model_router", None)
    if router is not None:
        router.refresh()


async def inference_task(request: Request, spec, tenant_id: str):
    """An inference workload as the task the scheduler runs, after checking that its model
    exists for the tenant (404 otherwise, as on ``/v1``) and the tenant's serving limits (429)."""
    from .inference import as_task
    from .limits_gate import admit

    await _router(request).entry(spec.model_id, tenant_id)
    task = as_task(spec, tenant_id)
    # the tenant's serving limits, charged at submission: the answer comes back in a task, so
    # its tokens are estimated as the prompt plus all of max_tokens (docs/serving-limits.md)
    body = task.kwargs.get("body") or {}
    admit(request.app.state, tenant_id, spec.model_id, body, extra_tokens=int(body.get("max_tokens") or 0))
    return task


def install_serving(app: FastAPI, principal: Callable, admin: Callable) -> None:
    """Add the serving routes to Orion's app (``principal``/``admin``: its auth dependencies)."""
    from .openai_routes import install_openai_routes

    install_openai_routes(app, principal, _router)

    @app.post("/internal/deployments/create", status_code=201, tags=["serving"])
    async def create(spec: DeploymentSpec, request: Request, p=Depends(admin)):
        """Deploy one version of a model (a Ray Serve application); 409 if it exists."""
        lb = spec.load_balancing
        if lb is not None and lb.strategy == "custom" and lb.router_class:
            from .routers import check_router_class

            check_router_class(lb.router_class)  # importable here, a RequestRouter (admin only)
        out = await _manager(request).call("create", spec.model_dump(mode="json"))
        _changed(request)
        return out

    @app.get("/internal/deployments", tags=["serving"])
    async def list_deployments(
        request: Request,
        p=Depends(admin),
        model_id: Optional[str] = Query(None, max_length=63),
        tenant_id: Optional[str] = Query(None, max_length=128),
        status: Optional[str] = Query(None, max_length=32),
    ):
        """Deployments, filtered by model, tenant or status."""
        return {"items": await _manager(request).call("list", model_id, tenant_id, status)}

    @app.get("/internal/deployments/{dep_id}/status", tags=["serving"])
    async def status(dep_id: str, request: Request, p=Depends(admin)):
        """One deployment: status, running replicas, restarts, spec, and each replica (id, node,
        GPUs, state, restarts, last health check)."""
        return await _manager(request).call("status", dep_id)

    @app.delete("/internal/deployments/{dep_id}", status_code=202, tags=["serving"])
    async def delete(dep_id: str, request: Request, p=Depends(admin)):
        """Undeploy a version (409 while its model's release sends it traffic)."""
        out = await _manager(request).call("delete", dep_id)
        _changed(request)
        return out

    @app.post("/internal/deployments/{dep_id}/restart", status_code=202, tags=["serving"])
    async def restart(dep_id: str, request: Request, p=Depends(admin)):
        """Replace every replica of a deployment."""
        return await _manager(request).call("restart", dep_id)

    @app.post("/admin/v1/models/{model_id}/scale", tags=["serving"])
    async def scale(model_id: str, body: ScaleRequest, request: Request, p=Depends(admin)):
        """Set a model's replicas (or autoscaling bounds; ``min_replicas: 0`` scales to zero)."""
        return {"items": await _manager(request).call("scale", model_id, body.model_dump(mode="json"))}

    @app.put("/internal/models/{model_id}/release", tags=["serving"])
    async def set_release(model_id: str, spec: ReleaseSpec, request: Request, p=Depends(admin)):
        """Apply a release: weighted, canary, rolling, blue-green or A/B, optionally a shadow."""
        if spec.model_id != model_id:
            raise ValidationError(
                "the body's model_id differs from the path's",
                [{"field": "model_id", "problem": f"expected {model_id!r}"}],
            )
        out = await _manager(request).call("set_release", spec.model_dump(mode="json"))
        _changed(request)
        return out

    @app.get("/internal/models/{model_id}/release", tags=["serving"])
    async def get_release(model_id: str, request: Request, p=Depends(admin)):
        """A release's phase, live weights and per-version outcome statistics."""
        return await _manager(request).call("release_view", model_id)

    @app.get("/internal/releases", tags=["serving"])
    async def list_releases(request: Request, p=Depends(admin)):
        """Every model's release, as ``GET /internal/models/{id}/release`` gives each (by model)."""
        return {"items": await _manager(request).call("list_releases")}

    @app.post("/internal/models/{model_id}/rollback", tags=["serving"])
    async def rollback(model_id: str, request: Request, p=Depends(admin)):
        """Send all of a model's traffic back to its stable version."""
        out = await _manager(request).call("rollback", model_id)
        _changed(request)
        return out

    @app.get("/internal/events", tags=["serving"])
    async def events(
        request: Request,
        p=Depends(admin),
        model_id: Optional[str] = Query(None, max_length=63, pattern=NAME_RE),
        limit: int = Query(100, ge=1, le=1000),
    ):
        """Deploys, scales, restarts, release steps and rollbacks, newest first."""
        return {"items": await _manager(request).call("list_events", model_id, limit)}

    @app.get("/internal/serving/gpus", tags=["serving"])
    async def gpus(request: Request, p=Depends(admin)):
        """GPUs held by serving replicas, per deployment and tenant (the scheduler's input)."""
        return await _manager(request).call("gpu_usage")
