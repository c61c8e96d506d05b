"""The OpenAI-compatible routes, on Orion's own FastAPI app (same port, same keys, under ``/v1``).

A tenant key sees its tenant's models and the shared ones; an admin key sees every model.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from serve_apps.llm.protocol import ChatRequest, CompletionRequest

from .limits_gate import UsageGate, admit

VERSION_HEADER = "x-orion-model-version"


def install_openai_routes(app: FastAPI, principal: Callable, router_of: Callable[[Request], Any]) -> None:
    """Add ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` to ``app``."""

    @app.get("/v1/models", tags=["openai"])
    async def models(request: Request, p=Depends(principal)):
        """The models this key may call."""
        seen = await router_of(request).models(p.tenant_id)
        return {
            "object": "list",
            "data": [
                {
                    "id": m,
                    "object": "model",
                    "created": 0,
                    "owned_by": e.get("tenant_id") or "shared",
                    "versions": sorted(e["versions"]),
                }
                for m, e in sorted(seen.items())
            ],
        }

    async def answer(kind: str, body: Any, request: Request, p) -> Any:
        router = router_of(request)
        data = body.model_dump(mode="json", exclude_unset=True)
        data["model"] = body.model
        headers = {k.lower(): v for k, v in request.headers.items()}
        # the tenant's serving limits (429 naming the limit), then its tokens settled and counted
        state = request.app.state
        gate = UsageGate(state, router, p.tenant_id, body.model, admit(state, p.tenant_id, body.model, data))
        if body.stream:
            try:
                events, version = await router.stream(kind, data, p.tenant_id, headers, on_usage=gate.done)
            except BaseException:
                gate.close()
                raise
            return StreamingResponse(
                events, media_type="text/event-stream", headers={VERSION_HEADER: version}
            )
        try:
            result, version = await router.complete(kind, data, p.tenant_id, headers, on_usage=gate.done)
        finally:
            gate.close()
        return JSONResponse(result, headers={VERSION_HEADER: version})

    @app.post("/v1/completions", tags=["openai"])
    async def completions(body: CompletionRequest, request: Request, p=Depends(principal)):
        """Text completion (``stream: true`` for server-sent events)."""
        return await answer("completion", body, request, p)

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat(body: ChatRequest, request: Request, p=Depends(principal)):
        """Chat completion (``stream: true`` for server-sent events)."""
        return await answer("chat", body, request, p)
