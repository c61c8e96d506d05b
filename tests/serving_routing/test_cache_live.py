"""The response cache on a real Serve: the second identical request is answered from the cache
(the CPU model, SmolLM2, when it is installed; the test engine otherwise)."""

from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = pytest.mark.timeout(240)


class _Table:
    """The manager's side of the router: a fixed routing table (the manager's own is unit-tested)."""

    def __init__(self, table: dict):
        self.table = table

    async def call(self, method: str, *args):
        assert method == "routing_table"
        return self.table

    def report_nowait(self, samples: list) -> None:
        pass


def test_a_cached_answer_is_served_on_the_second_identical_request(serve_cluster):
    from ray import serve

    from orion_ray.metrics import OrionMetrics
    from orion_ray.serving.caching import ModelCaches
    from orion_ray.serving.deployer import ServeDeployer
    from orion_ray.serving.manager import app_name
    from orion_ray.serving.router import ModelRouter
    from orion_ray.serving_specs import DeploymentSpec
    from serve_apps.llm.engines.cpu import cpu_engine_available
    from serve_apps.llm.replica import DEPLOYMENT_NAME

    engine = "cpu" if cpu_engine_available() is None else "test"  # the test engine: a note below
    spec = DeploymentSpec.model_validate(
        {
            "model_id": "smol",
            "engine": engine,
            "caching": {
                "ttl": "5m",
                "max_size": "1MB",
                "cache_key_patterns": ["inference:{{model_id}}:{{input_hash}}"],
            },
        }
    )
    app = app_name(spec.id)
    deployer = ServeDeployer()
    deployer.deploy(spec, app, 0)
    deadline = time.time() + 180
    while deployer.statuses().get(app, {}).get("status") != "RUNNING":
        assert time.time() < deadline, deployer.statuses()
        time.sleep(0.5)
    table = {
        "smol": {
            "tenant_id": None,
            "versions": {"v1": app},
            "weights": {"v1": 100.0},
            "release": None,
            "caching": {"v1": spec.caching.model_dump(mode="json")},
        }
    }
    metrics = OrionMetrics(ray_mirror=False)
    router = ModelRouter(
        _Table(table),
        lambda a: serve.get_deployment_handle(DEPLOYMENT_NAME, a),
        report_every_s=0,
        cache=ModelCaches(metrics=metrics),
    )
    body = {"model": "smol", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}

    async def twice():
        return [await router.complete("completion", dict(body), None, {}) for _ in range(2)]

    (first, v1), (second, v2) = asyncio.run(twice())
    assert v1 == v2 == "v1" and first["choices"][0]["text"]
    assert second["id"] == first["id"]  # the same answer object: the replica was not asked again
    text = metrics.render()
    assert 'orion_serving_cache_hits_total{model="smol",version="v1"} 1.0' in text
    assert 'orion_serving_cache_misses_total{model="smol",version="v1"} 1.0' in text
    deployer.delete(app)
