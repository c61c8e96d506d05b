"""The model replica: one Serve deployment per model version, driving one engine.

The router in Orion's ingress calls ``complete`` / ``stream`` through a deployment handle (one hop).
``__call__`` answers HTTP: as the first hop of the model's own base URL (``http="gate"``: key,
visibility and release split decided here, see ``orion_ray/serving/gate.py``), or plainly
(``http="direct"``: no key, this version only — the benchmark's baseline, never in production;
``http="key"``: the same after a key check).
``check_health`` asks the engine: Serve replaces a replica that fails it.
"""

from __future__ import annotations

import importlib
import json
import uuid
from typing import Any, AsyncIterator

from ray import serve

from .engines import make_engine
from .protocol import ChatRequest, CompletionRequest, chunk_body, completion_body

DEPLOYMENT_NAME = "LLMReplica"
GATE = "orion_ray.serving.first_hop"  # the default gate module (``gate=`` names another)


class LLMReplica:
    """``restart_nonce`` changes when the deployment is restarted, so Serve replaces every replica."""

    def __init__(
        self,
        engine: str,
        engine_args: dict[str, Any],
        model_id: str,
        version: str,
        restart_nonce: int = 0,
        http: str = "gate",
        gate: str = GATE,
    ):
        self.model_id, self.version = model_id, version
        self.engine = make_engine(engine, dict(engine_args))
        self.http = http
        self._gate: Any = None
        # the module that builds the first hop's gate, named by whoever deploys this replica: the
        # replica is Orion's Serve app, but Orion's serving package sits above it, not below
        self._gate_module = gate

    def _gate_builder(self) -> Any:
        return importlib.import_module(self._gate_module)

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

    async def _events(self, kind: str, body: dict) -> AsyncIterator[bytes]:
        """``stream`` as server-sent events (direct HTTP)."""
        async for chunk in self.stream(kind, body):
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def inject(self, **faults: Any) -> None:
        """Change the test engine's injected faults (tests only; other engines refuse)."""
        if not hasattr(self.engine, "configure"):
            raise TypeError(f"engine {self.engine.name} takes no injected faults")
        self.engine.configure(**faults)

    def record_replica_metadata(self) -> dict:
        """What Serve's request routers see of this replica: its rank (the weighted router)."""
        rank = getattr(serve.get_replica_context(), "rank", None)
        rank = getattr(rank, "rank", rank)  # a ReplicaRank (Ray 2.60) or a plain int
        return {"rank": rank if isinstance(rank, int) else None}

    async def check_health(self) -> None:
        await self.engine.check_health()

    async def __call__(self, request) -> Any:
        """HTTP: ``POST …/v1/completions`` or ``…/v1/chat/completions`` with an OpenAI body (and
        ``GET …/v1/models`` at the gate)."""
        from starlette.responses import JSONResponse

        if self.http == "gate":
            hop = self._gate_builder()
            if self._gate is None:
                self._gate = hop.build_first_hop(self, self.model_id)
            return await hop.respond(self._gate, request)
        if self.http == "key":  # the benchmark's baseline that checks a key and nothing else
            refused = await self._gate_builder().check_key(self, request)
            if refused is not None:
                return refused

        kind = "chat" if request.url.path.rstrip("/").endswith("chat/completions") else "completion"
        try:
            body = json.loads(await request.body())
            if body.get("stream"):
                from starlette.responses import StreamingResponse

                return StreamingResponse(self._events(kind, body), media_type="text/event-stream")
            return JSONResponse(await self.complete(kind, body))
        except ValueError as exc:  # pydantic's ValidationError and bad JSON are ValueErrors
            return JSONResponse(
                {"error": {"code": "validation_error", "message": str(exc)[:500]}}, status_code=422
            )


class GpuMeteredReplica(LLMReplica):
    """A replica that reports its GPUs' utilisation to Serve's autoscaler (a deployment with
    ``autoscaling.target_gpu_utilization``; ``orion_ray/serving/gpu_policy.py`` reads it).
    ``probe(gpu_ids)``: the mean utilisation in percent, or None (``gpu_probe.nvml_utilization``;
    tests pass a fake)."""

    probe: Any = None

    async def record_autoscaling_stats(self) -> dict:
        """Serve's custom autoscaling metrics: ``{"gpu_utilization": percent}``, or nothing when
        no device reports."""
        import asyncio

        import ray

        from .gpu_probe import nvml_utilization

        probe = self.probe or nvml_utilization
        value = await asyncio.to_thread(probe, [str(g) for g in ray.get_gpu_ids()])
        return {} if value is None else {"gpu_utilization": float(value)}


def build_replica_app(
    engine: str,
    engine_args: dict,
    model_id: str,
    version: str,
    *,
    restart_nonce: int = 0,
    options: dict | None = None,
    http: str = "gate",
    gate: str = GATE,
    gpu_metered: bool = False,
):
    """The bound Serve application of one model version (``options``: Serve deployment options —
    replicas or autoscaling, actor resources, placement-group bundles; ``http``: what ``__call__``
    is, ``gate`` or ``direct``; ``gpu_metered``: its replicas report GPU utilisation to Serve's
    autoscaler)."""
    dep = serve.deployment(
        GpuMeteredReplica if gpu_metered else LLMReplica,
        name=DEPLOYMENT_NAME,
        health_check_period_s=2,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
    )
    return dep.options(**(options or {})).bind(
        engine, engine_args, model_id, version, restart_nonce, http, gate
    )
