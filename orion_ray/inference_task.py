"""An inference workload as the task that runs it: a pure conversion of one spec into another.

``workload_type: inference`` (``model_id`` and ``input``) is queued, admitted and accounted like any
workload, and runs as a small task (``RUNNER``, labelled ``orion_kind: inference``) that asks the
model through the router's policy (``orion_ray.serving.inference.run_inference``). Both the API
and the scheduler convert with ``as_task``; it lives in the model layer so the scheduler needs no
import of the serving package (which reaches the scheduler by actor name).
"""

from __future__ import annotations

from typing import Any

from .errors import ValidationError
from .models import Resources, WorkloadSpec

RUNNER = "orion_ray.serving.inference:run_inference"


def request_of(model_id: str, data: Any) -> tuple[str, dict]:
    """The OpenAI request of an inference input: a string is a prompt; a mapping may hold
    ``messages`` (chat), ``prompt`` or ``text``, plus sampling fields (``max_tokens``…)."""
    if isinstance(data, str):
        return "completion", {"model": model_id, "prompt": data, "max_tokens": 64}
    if not isinstance(data, dict):
        raise ValidationError(
            "inference input must be a string or an object",
            [{"field": "input", "problem": "expected a string, or {'text'|'prompt'|'messages'}"}],
        )
    body = {k: v for k, v in data.items() if k not in ("text", "prompt", "messages")}
    body.setdefault("max_tokens", 64)
    body["model"] = model_id
    if "messages" in data:
        return "chat", {**body, "messages": data["messages"]}
    prompt = data.get("prompt", data.get("text"))
    if not isinstance(prompt, str):
        raise ValidationError(
            "inference input needs a text",
            [{"field": "input", "problem": "give 'text', 'prompt' or 'messages'"}],
        )
    return "completion", {**body, "prompt": prompt}


def as_task(spec: WorkloadSpec, tenant_id: str) -> WorkloadSpec:
    """The task the scheduler runs for an inference workload (validated input, small bundle)."""
    kind, body = request_of(spec.model_id, spec.input)
    from serve_apps.llm.protocol import ChatRequest, CompletionRequest

    try:
        (ChatRequest if kind == "chat" else CompletionRequest).model_validate(body)
    except Exception as exc:  # pydantic's error, reported on the input field
        raise ValidationError(
            "invalid inference input", [{"field": "input", "problem": str(exc).splitlines()[-1][:300]}]
        ) from None
    labels = {**spec.metadata.labels, "orion_kind": "inference", "orion_model": spec.model_id}
    return spec.model_copy(
        update={
            "workload_type": "task",
            "function": RUNNER,
            "args": [],
            # no tenant here: the runner takes it from Orion (the executor's ORION_TENANT_ID)
            "kwargs": {"kind": kind, "body": body},
            "model_id": None,
            "input": None,
            "resources": spec.resources or Resources(cpu=0.1),
            "metadata": spec.metadata.model_copy(update={"labels": labels}),
        }
    )
