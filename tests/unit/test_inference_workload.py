"""``workload_type: inference``: validated, checked against the tenant's models, and queued as
the task that asks the model (the scheduler runs tasks and jobs)."""

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.models import WorkloadSpec
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.serving.inference import RUNNER, as_task, request_of
from orion_ray.serving.router import ModelRouter
from orion_ray.store import SQLiteStore

from .serving_fakes import LocalServing
from .test_api import assert_error

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
OTHER = {"Authorization": "Bearer other-key"}


@pytest.fixture
def client(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    app = build_app(
        KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme", hash_key("other-key"): "other"}),
        backend=Scheduler(store, runtime=FakeRuntime()),
    )
    serving = LocalServing()
    app.state.serving = serving.client
    app.state.model_router = ModelRouter(serving.client, serving.handle_of, table_ttl_s=0)
    with TestClient(app) as c:
        c.post(
            "/internal/deployments/create",
            headers=ADMIN,
            json={"model_id": "sentiment-v2", "tenant_id": "acme"},
        ).raise_for_status()
        yield c
    store.close()


def test_inference_is_queued_as_the_task_that_asks_the_model(client):
    r = client.post(
        "/api/v1/workloads",
        headers=ACME,
        json={
            "workload_type": "inference",
            "model_id": "sentiment-v2",
            "priority": "high",
            "input": {"text": "This product is amazing!", "max_tokens": 8},
        },
    )
    assert r.status_code == 202, r.text
    w = client.get(f"/api/v1/workloads/{r.json()['workload_id']}", headers=ACME).json()
    assert w["tenant_id"] == "acme" and w["priority"] == "high" and w["status"] == "queued"
    spec = client.app.state.backend.lookup(w["workload_id"], None).spec
    assert spec.workload_type == "inference" and w["workload_type"] == "inference"
    task = as_task(spec, "acme")  # what the scheduler launches
    assert task.workload_type == "task" and task.function == RUNNER
    # no tenant in the request: the runner takes it from Orion (the executor's ORION_TENANT_ID)
    assert task.kwargs == {
        "kind": "completion",
        "body": {"model": "sentiment-v2", "prompt": "This product is amazing!", "max_tokens": 8},
    }
    assert spec.metadata.labels["orion_kind"] == "inference" and spec.resources.cpu == 0.1


def test_inference_on_an_unknown_or_foreign_model_is_404(client):
    body = {"workload_type": "inference", "model_id": "sentiment-v2", "input": "hi"}
    assert_error(client.post("/api/v1/workloads", headers=OTHER, json=body), 404, "not_found")
    assert_error(
        client.post("/api/v1/workloads", headers=ACME, json={**body, "model_id": "nope"}), 404, "not_found"
    )


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"input": 42}, "input"),
        ({"input": {"text": "x", "max_tokens": 0}}, "input"),
        ({"input": {"nothing": 1}}, "input"),
        ({"input": None}, ""),
        ({"input": "x", "function": "math:floor"}, ""),
    ],
)
def test_bad_inference_is_422(client, extra, field):
    body = {"workload_type": "inference", "model_id": "sentiment-v2", **extra}
    err = assert_error(client.post("/api/v1/workloads", headers=ACME, json=body), 422, "validation_error")
    assert any(d["field"].startswith(field) for d in err["details"]), err


def test_spec_rules():
    WorkloadSpec(workload_type="inference", model_id="m", input="hi")
    with pytest.raises(ValidationError, match="belong to inference"):
        WorkloadSpec(workload_type="task", function="math:floor", model_id="m")
    assert request_of("m", {"messages": [{"role": "user", "content": "x"}]})[0] == "chat"
    assert request_of("m", "hello")[1] == {"model": "m", "prompt": "hello", "max_tokens": 64}
