"""Inference as a workload: ``workload_type: inference`` with ``model_id`` and ``input``.

It is queued, admitted and accounted like any workload (tenant checks, quotas, priorities), and
runs as a small task that asks the model through the same router policy as ``/v1`` (the model's
release split, tenant visibility), so its ``result`` holds the answer.

The scheduler launches tasks and jobs only, and the scheduler is another change's territory, so
the API hands it the inference as a task running ``run_inference`` (labelled
``orion_kind: inference``). When the scheduler learns the kind, ``as_task`` is all that goes.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from ..errors import ValidationError
from ..models import Resources, WorkloadSpec

RUNNER = "orion_ray.serving.inference:run_inference"


def request_of(model_id: str, data: Any) -> tuple[str, dict]:
    """The OpenAI request of an inference input: a string is a prompt; a mapping may hold
    ``messages`` (chat), ``prompt`` or ``text``, plus sampling fields (``max_tokens``…)."""
    if isinstance(data, str):
        return "completion", {"model": model_id, "prompt": data, "max_tokens": 64}
    if not isinstance(data, dict):
        raise ValidationError("inference input must be a string or an object", [
            {"field": "input", "problem": "expected a string, or {'text'|'prompt'|'messages'}"}])
    body = {k: v for k, v in data.items() if k not in ("text", "prompt", "messages")}
    body.setdefault("max_tokens", 64)
    body["model"] = model_id
    if "messages" in data:
        return "chat", {**body, "messages": data["messages"]}
    prompt = data.get("prompt", data.get("text"))
    if not isinstance(prompt, str):
        raise ValidationError("inference input needs a text", [
            {"field": "input", "problem": "give 'text', 'prompt' or 'messages'"}])
    return "completion", {**body, "prompt": prompt}


def as_task(spec: WorkloadSpec, tenant_id: str) -> WorkloadSpec:
    """The task the scheduler runs for an inference workload (validated input, small bundle)."""
    kind, body = request_of(spec.model_id, spec.input)
    from serve_apps.llm.protocol import ChatRequest, CompletionRequest
    try:
        (ChatRequest if kind == "chat" else CompletionRequest).model_validate(body)
    except Exception as exc:  # pydantic's error, reported on the input field
        raise ValidationError("invalid inference input", [
            {"field": "input", "problem": str(exc).splitlines()[-1][:300]}]) from None
    labels = {**spec.metadata.labels, "orion_kind": "inference", "orion_model": spec.model_id}
    return spec.model_copy(update={
        "workload_type": "task", "function": RUNNER, "args": [],
        "kwargs": {"kind": kind, "body": body, "tenant_id": tenant_id},
        "model_id": None, "input": None,
        "resources": spec.resources or Resources(cpu=0.1),
        "metadata": spec.metadata.model_copy(update={"labels": labels})})


def run_inference(kind: str, body: dict, tenant_id: Optional[str]) -> dict:
    """Runs inside the workload's Ray task: one request through the router's policy."""
    from ray import serve
    from serve_apps.llm.replica import DEPLOYMENT_NAME
    from .router import ModelRouter
    from .actor import ManagerClient

    async def ask():
        router = ModelRouter(ManagerClient(), lambda app: serve.get_deployment_handle(
            DEPLOYMENT_NAME, app), report_every_s=0)
        answer, version = await router.complete(kind, body, tenant_id, {})
        choice = answer["choices"][0]
        text = choice["message"]["content"] if kind == "chat" else choice["text"]
        return {"model_id": body["model"], "version": version, "output": text,
                "finish_reason": choice["finish_reason"], "usage": answer["usage"]}

    return asyncio.run(ask())
