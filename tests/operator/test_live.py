"""The operator end to end: kubectl-style requests to kmock's Kubernetes API, the real operator
(kopf), a live Orion (`orion up`). What runs: Orion's ``test`` engine in Ray Serve replicas (the
example names no engine, and Orion serves engines in the Ray cluster's image — no container
runtime here pulls ``veritasstack/sentiment-api``); a task through Orion's scheduler."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.e2e

# the example, verbatim (deploy/examples/sentiment-analysis-api.yaml is its text)
EXAMPLE_PATH = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "sentiment-analysis-api.yaml"
EXAMPLE = yaml.safe_load(EXAMPLE_PATH.read_text())


def _orion(live_orion: dict) -> httpx.Client:
    return httpx.Client(
        base_url=live_orion["url"], headers={"Authorization": f"Bearer {live_orion['api_key']}"}, timeout=30
    )


def _deployments(live_orion: dict, model_id: str) -> list[dict]:
    with _orion(live_orion) as c:
        r = c.get("/internal/deployments", params={"model_id": model_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_the_example_verbatim_serves_3_replicas_rolls_out_a_change_and_is_removed(
    kube_with_operator, live_orion
):
    kube = kube_with_operator
    assert httpx.get(kube.liveness, timeout=10).status_code == 200  # the Deployment's probe
    name = EXAMPLE["metadata"]["name"]
    kube.apply(copy.deepcopy(EXAMPLE))
    obj = kube.wait(name, lambda o: (o or {}).get("status", {}).get("phase") == "Ready")
    status = obj["status"]
    assert status["phase"] == "Ready", status
    assert status["replicasReady"] == 3 and status["form"] == "serving" and status["tenant"] == "default"
    assert obj["metadata"]["finalizers"] == ["orion.veritasstack.io/finalizer"]
    # Orion's own view: one healthy deployment of 3 replicas, 2 CPUs each, autoscaling 2..20
    (dep,) = _deployments(live_orion, name)
    assert dep["id"] == status["orionId"] and dep["status"] == "healthy" and dep["running_replicas"] == 3
    assert dep["spec"]["cpus_per_replica"] == 2.0 and dep["tenant_id"] == "default"
    auto = dep["spec"]["autoscaling"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["initial_replicas"]) == (2, 20, 3)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["FieldsNotApplied"]["status"] == "True" and "image" in conds["FieldsNotApplied"]["message"]

    # a new image is a new version, rolled out through Orion's release; the old one is undeployed
    old = status["version"]
    kube.patch_spec(name, {"image": "veritasstack/sentiment-api:v1.3.0"})
    obj = kube.wait(
        name,
        lambda o: (
            (o or {}).get("status", {}).get("version") not in (None, old)
            and not o["status"].get("previousVersions")
            and o["status"].get("phase") == "Ready"
        ),
    )
    assert obj["status"]["version"] != old and obj["status"]["phase"] == "Ready", obj["status"]
    deps = _deployments(live_orion, name)
    assert [d["version"] for d in deps] == [obj["status"]["version"]], deps
    with _orion(live_orion) as c:
        release = c.get(f"/internal/models/{name}/release").json()
    assert release["weights"] == {obj["status"]["version"]: 100.0}, release

    # a record deleted behind the operator's back is recreated, and said so
    with _orion(live_orion) as c:
        assert c.delete(f"/internal/deployments/{obj['status']['orionId']}").status_code == 202
    obj = kube.wait(name, lambda o: (o or {}).get("status", {}).get("recreations"))
    assert obj["status"]["recreations"] == 1
    assert {c["type"]: c for c in obj["status"]["conditions"]}["Recreated"]["status"] == "True"
    obj = kube.wait(name, lambda o: (o or {}).get("status", {}).get("phase") == "Ready")
    assert obj["status"]["phase"] == "Ready", obj["status"]  # recreated and serving again

    kube.delete(name)
    assert kube.wait(name, lambda o: o is None) is None  # the finalizer was released
    assert _deployments(live_orion, name) == []


def test_a_batch_task_runs_to_completion_with_its_status_mirrored(kube_with_operator, live_orion):
    kube = kube_with_operator
    manifest = {
        "apiVersion": "orion.veritasstack.io/v1",
        "kind": "AIWorkload",
        "metadata": {"name": "factorial"},
        "spec": {
            "priority": "high",
            "workload": {
                "workload_type": "task",
                "function": "math:factorial",
                "args": [10],
                "resources": {"cpu": 1},
            },
        },
    }
    created = kube.apply(manifest)
    obj = kube.wait("factorial", lambda o: (o or {}).get("status", {}).get("phase") == "Succeeded")
    status = obj["status"]
    assert status["phase"] == "Succeeded" and status["result"] == {"value": 3628800}, status
    assert status["requestId"] == f"k8s-{created['metadata']['uid']}" and status["attempts"] == 1
    with _orion(live_orion) as c:
        record = c.get(f"/api/v1/workloads/{status['orionId']}").json()
    assert record["status"] == "completed" and record["tenant_id"] == "default"
    assert record["priority"] == "high"
    kube.delete("factorial")
    assert kube.wait("factorial", lambda o: o is None) is None


def test_a_spec_orion_refuses_is_a_condition_not_a_crash_loop(kube_with_operator):
    kube = kube_with_operator
    manifest = {
        "apiVersion": "orion.veritasstack.io/v1",
        "kind": "AIWorkload",
        "metadata": {"name": "bad-task"},
        "spec": {"workload": {"workload_type": "task", "resources": {"cpu": -1}}},
    }
    kube.apply(manifest)
    obj = kube.wait("bad-task", lambda o: (o or {}).get("status", {}).get("phase") == "Invalid")
    valid = {c["type"]: c for c in obj["status"]["conditions"]}["Valid"]
    assert valid["status"] == "False" and valid["reason"] == "RefusedByOrion", valid
    assert "function" in valid["message"] or "resources" in valid["message"], valid
    kube.delete("bad-task")
    assert kube.wait("bad-task", lambda o: o is None) is None


PIPELINE = """\
version: 1
pipeline_id: operator_small
nodes:
  - {id: fetch_data, kind: python_task, params: {rows: 4}, outs: [dataset_uri]}
  - {id: compute_features, kind: python_task, ins: [dataset_uri], outs: [feature_table]}
edges: [{from: fetch_data, to: compute_features}]
"""


def test_a_pipeline_in_a_tenants_namespace_runs_as_that_tenant(kube_with_operator, live_orion):
    from tests.pipelines.live import ROOT

    kube = kube_with_operator
    refs = {n: f"tests.pipelines.nodes:{n}" for n in ("fetch_data", "compute_features")}
    spec = {"pipeline": {"dag_spec": PIPELINE, "refs": refs, "runtime_params": {"env": {"PYTHONPATH": ROOT}}}}
    manifest = {
        "apiVersion": "orion.veritasstack.io/v1",
        "kind": "AIWorkload",
        "metadata": {"name": "features"},
    }
    created = kube.apply({**manifest, "spec": spec}, namespace="team-a")
    obj = kube.wait(
        "features", lambda o: (o or {}).get("status", {}).get("phase") == "Succeeded", namespace="team-a"
    )
    status = obj["status"]
    assert status["phase"] == "Succeeded" and status["tenant"] == "team-a", status
    assert status["orionId"] == f"k8s-{created['metadata']['uid']}" and status["attempts"] == 1
    with _orion(live_orion) as c:
        run = c.get(f"/api/orch/status/{status['orionId']}").json()
        wid = run["nodes"][1]["workload_id"]
        node = c.get(f"/api/v1/workloads/{wid}").json()
    assert run["state"] == "succeeded" and node["tenant_id"] == "team-a"
    assert node["result"] == {"feature_table": "features[none] of mem://dataset?rows=4"}

    # the namespace is the tenant: naming another one is refused before Orion sees it
    other = {**manifest, "metadata": {"name": "elsewhere"}, "spec": {**spec, "tenant": "default"}}
    kube.apply(other, namespace="team-a")
    bad = kube.wait(
        "elsewhere", lambda o: (o or {}).get("status", {}).get("phase") == "Invalid", namespace="team-a"
    )
    assert {c["type"]: c for c in bad["status"]["conditions"]}["Valid"]["reason"] == "InvalidSpec"
    for name in ("features", "elsewhere"):
        kube.delete(name, namespace="team-a")
        assert kube.wait(name, lambda o: o is None, namespace="team-a") is None
