"""Model serving on a real Ray cluster: Orion's API app and the serving manager on Ray Serve,
model versions as Serve applications, traffic through the router in the ingress.

One Serve instance (and one API app) for the whole module; each test deploys its own models.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from .conftest import _free_port, start_orion, stop_orion, wait_for

pytestmark = pytest.mark.integration

ADMIN_KEY = "serving-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def api(ray_cluster, tmp_path_factory):
    """Serve on a free loopback port, with ``orion-api``, the scheduler (for inference workloads)
    and the ``orion-serving`` manager."""
    import ray
    from ray import serve

    from orion_ray.api.auth import hash_key
    from orion_ray.api.serve_app import APP_NAME, build_api_app
    from orion_ray.serving.actor import deploy_manager
    from orion_ray.serving.deployer import RayKv

    start_orion(ray_cluster, str(tmp_path_factory.mktemp("serving") / "orion.db"))
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    manager = deploy_manager(tick_s=0.3)
    try:
        serve.run(build_api_app([hash_key(ADMIN_KEY)], 1_048_576), name=APP_NAME, route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=120) as client:
            yield client
    finally:
        ray.kill(manager, no_restart=True)
        serve.shutdown()
        stop_orion()
        RayKv().clear()


def deploy(client, **spec) -> dict:
    r = client.post("/internal/deployments/create", json={"engine": "test", **spec})
    assert r.status_code == 201, r.text
    return r.json()


def healthy(client, dep_id: str, replicas: int = 1, timeout: float = 120) -> dict:
    def ready():
        d = client.get(f"/internal/deployments/{dep_id}/status").json()
        return d if d["status"] == "healthy" and d["running_replicas"] == replicas else None

    return wait_for(ready, timeout, 0.3, f"{dep_id} healthy with {replicas} replicas")


def undeploy(client, *dep_ids: str) -> None:
    for dep_id in dep_ids:
        r = client.delete(f"/internal/deployments/{dep_id}")
        assert r.status_code == 202, r.text


def complete(client, model: str, prompt: str = "hello", **body) -> httpx.Response:
    return client.post("/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": 4, **body})


def test_cpu_model_served_through_the_openai_routes(api):
    from serve_apps.llm.engines.cpu import cpu_engine_available

    why = cpu_engine_available()
    if why:
        pytest.skip(f"CPU model not installed: {why}")
    deploy(api, model_id="smollm2", engine="cpu", engine_args={"n_ctx": 1024})
    healthy(api, "smollm2--v1")
    assert "smollm2" in [m["id"] for m in api.get("/v1/models").json()["data"]]
    chat = {
        "model": "smollm2",
        "temperature": 0,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
    r = api.post("/v1/chat/completions", json=chat)
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]["message"]["content"]
    assert "Paris" in answer and r.json()["usage"]["completion_tokens"] > 0
    r = api.post("/v1/chat/completions", json={**chat, "stream": True})
    events = [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    streamed = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert streamed == answer
    r = api.post("/v1/chat/completions", json={**chat, "max_tokens": 100_000})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "max_tokens"
    r = api.post("/v1/completions", json={"model": "smollm2", "prompt": "word " * 2000, "max_tokens": 8})
    assert r.status_code == 422 and "context" in r.text  # the engine's limit, not a 500
    undeploy(api, "smollm2--v1")


def test_canary_rolls_back_on_injected_errors_then_a_healthy_one_is_promoted(api):
    deploy(api, model_id="chat", version="v1")
    deploy(api, model_id="chat", version="v2", engine_args={"error_rate": 1.0})
    deploy(api, model_id="chat", version="v3")
    for v in ("v1", "v2", "v3"):
        healthy(api, f"chat--{v}")
    canary = {
        "model_id": "chat",
        "strategy": "canary",
        "stable": "v1",
        "candidate": "v2",
        "steps": [{"weight": 50, "duration": "1s"}, {"weight": 100, "duration": "1s"}],
        "success_criteria": {"error_rate": 0.2, "min_requests": 3},
    }
    assert api.put("/internal/models/chat/release", json=canary).status_code == 200

    def rolled_back():
        for i in range(5):
            complete(api, "chat", f"p{i}")
        return api.get("/internal/models/chat/release").json()["phase"] == "rolled_back"

    wait_for(rolled_back, 60, 0.2, "the canary to roll back")
    seen = {complete(api, "chat", f"q{i}").headers["x-orion-model-version"] for i in range(10)}
    assert seen == {"v1"}
    events = api.get("/internal/events", params={"model_id": "chat"}).json()["items"]
    assert events[0]["kind"] == "rolled_back" and "error rate" in events[0]["message"]

    assert api.put("/internal/models/chat/release", json={**canary, "candidate": "v3"}).status_code == 200

    def promoted():
        for i in range(5):
            assert complete(api, "chat", f"r{i}").status_code == 200
        return api.get("/internal/models/chat/release").json()["phase"] == "promoted"

    wait_for(promoted, 60, 0.2, "the canary to be promoted")
    kinds = [e["kind"] for e in api.get("/internal/events", params={"model_id": "chat"}).json()["items"]]
    assert kinds[:3] == ["promoted", "advanced", "started"]
    assert {complete(api, "chat", f"s{i}").headers["x-orion-model-version"] for i in range(5)} == {"v3"}
    undeploy(api, "chat--v1", "chat--v2", "chat--v3")  # the last version may go with its release
    assert api.get("/internal/deployments", params={"model_id": "chat"}).json()["items"] == []


def test_gpu_replicas_scale_and_are_accounted(api, ray_cluster):
    import ray

    from orion_ray.serving.actor import serving_gpu_usage, serving_gpus_by_node

    free_before = ray.available_resources().get("GPU", 0)
    deploy(api, model_id="gpumodel", gpus_per_replica=1, tenant_id="acme")
    healthy(api, "gpumodel--v1")
    r = api.post("/admin/v1/models/gpumodel/scale", json={"replicas": 3})
    assert r.status_code == 200, r.text
    healthy(api, "gpumodel--v1", replicas=3)
    wait_for(
        lambda: ray.available_resources().get("GPU", 0) == free_before - 3,
        30,
        0.2,
        "Ray to count 3 serving GPUs",
    )
    usage = serving_gpu_usage()
    assert usage["total"] == 3 and usage["by_tenant"] == {"acme": 3}
    by_node = serving_gpus_by_node()
    gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}
    assert sum(by_node.values()) == 3 and set(by_node) <= gpu_nodes
    assert api.get("/internal/serving/gpus").json() == usage
    r = api.post("/admin/v1/models/gpumodel/scale", json={"replicas": 0})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "replicas"
    r = api.post(
        "/admin/v1/models/gpumodel/scale",
        json={"autoscaling": {"min_replicas": 0, "max_replicas": 2, "downscale_delay": "1s"}},
    )
    assert r.status_code == 200, r.text
    wait_for(
        lambda: ray.available_resources().get("GPU", 0) == free_before,
        90,
        0.3,
        "the idle deployment to scale to zero and release its GPUs",
    )
    assert serving_gpu_usage()["total"] == 0
    undeploy(api, "gpumodel--v1")


def test_failing_health_check_replaces_the_replica(api):
    from ray import serve

    from orion_ray.serving.manager import app_name

    deploy(api, model_id="sick")
    healthy(api, "sick--v1")
    handle = serve.get_deployment_handle("LLMReplica", app_name("sick--v1"))
    before = handle.inject.remote(healthy=False).result(timeout_s=30)
    assert before is None

    def restarted():
        return api.get("/internal/deployments/sick--v1/status").json()["status"] == "unhealthy"

    wait_for(restarted, 60, 0.2, "Serve to see the failing health check")
    healthy(api, "sick--v1")  # Serve replaced it with a fresh, healthy replica
    assert complete(api, "sick").status_code == 200
    undeploy(api, "sick--v1")


def test_stuck_deployment_is_restarted_and_reported(api):
    deploy(
        api,
        model_id="broken",
        engine="cpu",
        ready_deadline="3s",
        engine_args={"model_path": "/nonexistent/model.gguf"},
    )

    def reported():
        kinds = [
            e["kind"] for e in api.get("/internal/events", params={"model_id": "broken"}).json()["items"]
        ]
        return "stuck" in kinds and "restarted" in kinds

    wait_for(reported, 90, 0.5, "the stuck deployment to be restarted")
    d = api.get("/internal/deployments/broken--v1/status").json()
    assert d["restarts"] >= 1 and d["status"] != "healthy"
    undeploy(api, "broken--v1")


def test_cli_lists_deployments(api, capsys, monkeypatch):
    from orion_ray import cli

    deploy(api, model_id="listed")
    monkeypatch.setenv("ORION_URL", str(api.base_url).rstrip("/"))
    monkeypatch.setenv("ORION_API_KEY", ADMIN_KEY)
    assert cli.main(["deployments", "--model", "listed", "-o", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in items] == ["listed--v1"]
    assert cli.main(["undeploy", "listed--v1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "deleted"


def test_inference_workload_runs_against_the_deployment(api):
    deploy(api, model_id="sentiment-v2", engine_args={"reply": "positive"})
    healthy(api, "sentiment-v2--v1")
    r = api.post(
        "/api/v1/workloads",
        json={
            "workload_type": "inference",
            "model_id": "sentiment-v2",
            "input": {"text": "This product is amazing!"},
            "metadata": {"tenant_id": "acme"},
        },
    )
    assert r.status_code == 202, r.text
    wid = r.json()["workload_id"]
    done = wait_for(
        lambda: (lambda w: w if w["status"] in ("completed", "failed") else None)(
            api.get(f"/api/v1/workloads/{wid}").json()
        ),
        90,
        0.3,
        "the inference to finish",
    )
    assert done["status"] == "completed", done
    assert done["result"]["output"] == "positive" and done["result"]["version"] == "v1"
    assert done["tenant_id"] == "acme" and done["workload_type"] == "inference"
    undeploy(api, "sentiment-v2--v1")


def test_manager_restart_keeps_deployments_and_releases(api):
    import ray

    from orion_ray.serving.actor import MANAGER_NAME, NAMESPACE

    deploy(api, model_id="durable", version="v1")
    deploy(api, model_id="durable", version="v2")
    healthy(api, "durable--v1")
    api.put(
        "/internal/models/durable/release",
        json={"model_id": "durable", "stable": "v1", "weights": {"v1": 60, "v2": 40}},
    ).raise_for_status()
    actor = ray.get_actor(MANAGER_NAME, namespace=NAMESPACE)
    pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    ray.kill(actor, no_restart=False)  # crash it: Ray restarts it
    back = wait_for(lambda: _alive_pid(MANAGER_NAME, NAMESPACE, pid), 60, 0.3, "the manager to restart")
    assert back != pid
    items = api.get("/internal/deployments", params={"model_id": "durable"}).json()["items"]
    assert [d["id"] for d in items] == ["durable--v1", "durable--v2"]
    assert api.get("/internal/models/durable/release").json()["weights"] == {"v1": 60, "v2": 40}
    healthy(api, "durable--v2")  # its loop reconciles statuses again
    api.put(
        "/internal/models/durable/release", json={"model_id": "durable", "stable": "v1"}
    ).raise_for_status()
    undeploy(api, "durable--v2", "durable--v1")


def _alive_pid(name: str, namespace: str, old_pid: int):
    import ray

    try:
        actor = ray.get_actor(name, namespace=namespace)
        pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=5)
    except Exception:  # restarting
        return None
    return pid if pid != old_pid else None
