"""The first hop wired to Ray Serve, inside a model replica: keys are verified by the ``orion-api``
replica (by hash, through a handle, then cached), the routing table comes from the serving
manager, outcomes go back through ``orion-api`` (which holds the manager's credential; the model
replica holds none), and this replica's own version is called in process.
"""

from __future__ import annotations

from typing import Any

from .gate import Answer, FirstHop, GateRouter, KeyCache, request_rate

API_APP = "orion-api"  # orion_ray.api.serve_app.APP_NAME (not imported: it pulls the whole API in)
API_DEPLOYMENT = "OrionAPI"


class LocalHandle:
    """This replica in the shape of a deployment handle (``.complete.remote(...)``,
    ``.options(stream=True).stream.remote(...)``), so the router calls its own version in
    process: the draw that lands here costs no hop at all."""

    def __init__(self, replica: Any):
        self.complete = _Method(replica.complete)
        self.stream = _Method(replica.stream)

    def options(self, **_: Any) -> "LocalHandle":
        return self


class _Method:
    def __init__(self, fn: Any):
        self.remote = fn


class ApiSource:
    """The routing table from the manager (an open method), outcomes through ``orion-api``."""

    def __init__(self, manager: Any, api: Any):
        self.manager, self.api = manager, api

    async def call(self, method: str, *args: Any) -> Any:
        return await self.manager.call(method, *args)

    def report_nowait(self, samples: list) -> None:
        """Fire and forget (a lost batch only thins a canary's evidence)."""
        try:
            self.api.serving_report.remote(samples)
        except Exception:
            pass

    def usage_nowait(self, items: list) -> None:
        """Answers' token counts, fire and forget (the bound of docs/serving-limits.md)."""
        try:
            self.api.serving_usage.remote(items)
        except Exception:
            pass


def key_cache(api: Any = None) -> KeyCache:
    """Keys verified by ``orion-api`` (by hash), cached in this replica (``KEY_TTL_S``)."""
    if api is None:
        from ray import serve

        api = serve.get_deployment_handle(API_DEPLOYMENT, API_APP)

    async def verify(h: str) -> dict:
        return await api.verify_key.remote(h)

    return KeyCache(verify)


def build_first_hop(replica: Any, model_id: str) -> FirstHop:
    """The gate of ``replica`` (an ``LLMReplica`` in a Serve replica) for ``model_id``."""
    from ray import serve

    from serve_apps.llm.replica import DEPLOYMENT_NAME

    from .actor import ManagerClient

    own_app = serve.get_replica_context().app_name
    api = serve.get_deployment_handle(API_DEPLOYMENT, API_APP)
    local = LocalHandle(replica)

    def handle_of(app: str) -> Any:
        return local if app == own_app else serve.get_deployment_handle(DEPLOYMENT_NAME, app)

    from .caching import ModelCaches
    from .limits_gate import FirstHopLimits

    # the version's response cache as configured (docs/serving-routing.md), in this replica
    router = GateRouter(ApiSource(ManagerClient(), api), handle_of, cache=ModelCaches())
    keys = key_cache(api)
    return FirstHop(
        model_id, router, keys, [request_rate(keys)], usage=FirstHopLimits(keys, router, own_app=own_app)
    )


async def check_key(replica: Any, request: Any) -> Any:
    """A key check alone (the benchmark's second baseline): None, or the refusal to send."""
    from starlette.responses import JSONResponse

    from ..errors import OrionError
    from .gate import error_answer

    keys = getattr(replica, "_keys", None)
    if keys is None:
        keys = replica._keys = key_cache()
    try:
        await keys.principal(request.headers.get("authorization"))
    except OrionError as exc:
        a = error_answer(exc)
        return JSONResponse(a.body, status_code=a.status, headers=a.headers)
    return None


async def respond(gate: FirstHop, request: Any) -> Any:
    """A Starlette request through the gate, as a Starlette response."""
    from starlette.responses import JSONResponse, StreamingResponse

    headers = {k.lower(): v for k, v in request.headers.items()}
    body = await request.body() if request.method == "POST" else b""
    a: Answer = await gate.handle(request.method, request.url.path, headers, body)
    if a.stream is not None:
        return StreamingResponse(a.stream, media_type="text/event-stream", headers=a.headers)
    return JSONResponse(a.body, status_code=a.status, headers=a.headers)
