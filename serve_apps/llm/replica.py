"""The model replica: one Serve deployment per model version, driving one engine.

The router in Orion's ingress calls ``complete`` / ``stream`` through a deployment handle (one hop);
``__call__`` answers plain HTTP, so the same deployment can be called directly through Serve (the
benchmark's baseline). ``check_health`` asks the engine: Serve replaces a replica that fails it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, AsyncIterator

from ray import serve

from .engines import make_engine
from .protocol import ChatRequest, CompletionRequest, chunk_body, completion_body

DEPLOYMENT_NAME = "LLMReplica"


class LLMReplica:
    """``restart_nonce`` changes when the deployment is restarted, so Serve replaces every replica."""

    def __init__(
        self, engine: str, engine_args: dict[str, Any], model_id: str, version: str, restart_nonce: int = 0
    ):
        self.model_id, self.version = model_id, version
        self.engine = make_engine(engine, dict(engine_args))

    def _parse(self, kind: str, body: dict):
        req = (ChatRequest if kind == "chat" else CompletionRequest).model_validate(body)
        prompt = (
            self.engine.chat_prompt([m.model_dump() for m in req.messages]) if kind == "chat" else req.prompt
        )
        return req, prompt

    async def complete(self, kind: str, body: dict) -> dict:
        """A whole answer in OpenAI's shape (``kind``: ``completion`` or ``chat``)."""
        req, prompt = self._parse(kind, body)
        g = await self.engine.generate(prompt, req.sampling())
        return completion_body(kind, req.model, g)

    async def stream(self, kind: str, body: dict) -> AsyncIterator[dict]:
        """OpenAI stream chunks, then one ``{"usage": …}`` item for the router's accounting."""
        req, prompt = self._parse(kind, body)
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if kind == "chat":
            yield chunk_body(kind, req.model, rid, "", None) | {
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
            }
        async for c in self.engine.stream(prompt, req.sampling()):
            if c.text or c.finish_reason:
                yield chunk_body(kind, req.model, rid, c.text, c.finish_reason)
            if c.usage:  # the router takes it off the stream (its token accounting)
                yield {"object": "orion.usage", "usage": dict(c.usage)}

    async def inject(self, **faults: Any) -> None:
        """Change the test engine's injected faults (tests only; other engines refuse)."""
        if not hasattr(self.engine, "configure"):
            raise TypeError(f"engine {self.engine.name} takes no injected faults")
        self.engine.configure(**faults)

    async def check_health(self) -> None:
        await self.engine.check_health()

    async def __call__(self, request) -> Any:
        """Direct HTTP: ``POST …/v1/completions`` or ``…/v1/chat/completions`` with an OpenAI body."""
        from starlette.responses import JSONResponse

        kind = "chat" if request.url.path.rstrip("/").endswith("chat/completions") else "completion"
        try:
            body = json.loads(await request.body())
            return JSONResponse(await self.complete(kind, body))
        except ValueError as exc:  # pydantic's ValidationError and bad JSON are ValueErrors
            return JSONResponse(
                {"error": {"code": "validation_error", "message": str(exc)[:500]}}, status_code=422
            )


def build_replica_app(
    engine: str,
    engine_args: dict,
    model_id: str,
    version: str,
    *,
    restart_nonce: int = 0,
    options: dict | None = None,
):
    """The bound Serve application of one model version (``options``: Serve deployment options —
    replicas or autoscaling, actor resources, placement-group bundles)."""
    dep = serve.deployment(
        LLMReplica,
        name=DEPLOYMENT_NAME,
        health_check_period_s=2,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
    )
    return dep.options(**(options or {})).bind(engine, engine_args, model_id, version, restart_nonce)
