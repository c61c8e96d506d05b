"""Inference as a workload, on the serving side: ``run_inference`` runs inside the workload's Ray
task and asks the model through the same router policy as ``/v1`` (the model's release split,
tenant visibility), so the workload's ``result`` holds the answer.

The spec conversion (``as_task``, ``request_of``, ``RUNNER``) is a model-layer function in
``orion_ray.inference_task``, re-exported here.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..inference_task import RUNNER, as_task, request_of

__all__ = ["RUNNER", "as_task", "request_of", "run_inference"]


def run_inference(kind: str, body: dict, **_request: Any) -> dict:
    """Runs inside the workload's Ray task: one request through the router's policy.

    The tenant whose models are visible is the one Orion runs the task for (``ORION_TENANT_ID``,
    set by the executor from the workload's record), never one named in the request: a
    ``tenant_id`` in the task's kwargs (a spec stored before this rule) is ignored."""
    from ray import serve

    from serve_apps.llm.replica import DEPLOYMENT_NAME

    from .actor import ManagerClient
    from .router import ModelRouter

    # never None: None is the admin's view (every tenant's models)
    tenant_id: str = os.environ.get("ORION_TENANT_ID") or "default"

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
