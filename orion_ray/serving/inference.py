"""Inference as a workload, on the serving side: ``run_inference`` runs inside the workload's Ray
task and asks the model through the same router policy as ``/v1`` (the model's release split,
tenant visibility), so the workload's ``result`` holds the answer.

The spec conversion (``as_task``, ``request_of``, ``RUNNER``) is a model-layer function in
``orion_ray.inference_task``, re-exported here.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from ..inference_task import RUNNER, as_task, request_of

__all__ = ["RUNNER", "as_task", "request_of", "run_inference"]


def run_inference(kind: str, body: dict, tenant_id: Optional[str]) -> dict:
    """Runs inside the workload's Ray task: one request through the router's policy."""
    from ray import serve

    from serve_apps.llm.replica import DEPLOYMENT_NAME

    from .actor import ManagerClient
    from .router import ModelRouter

    async def ask():
        router = ModelRouter(
            ManagerClient(), lambda app: serve.get_deployment_handle(DEPLOYMENT_NAME, app), report_every_s=0
        )
        answer, version = await router.complete(kind, body, tenant_id, {})
        choice = answer["choices"][0]
        text = choice["message"]["content"] if kind == "chat" else choice["text"]
        return {
            "model_id": body["model"],
            "version": version,
            "output": text,
            "finish_reason": choice["finish_reason"],
            "usage": answer["usage"],
        }

    return asyncio.run(ask())
