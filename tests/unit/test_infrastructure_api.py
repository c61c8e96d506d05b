"""The infrastructure admin routes: each works with the admin key and refuses a tenant key."""

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

from .test_node_lifecycle import NodesRuntime, node, running

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}

ROUTES = [
    ("GET", "/admin/v1/infrastructure/nodes"),
    ("GET", "/admin/v1/infrastructure/gpu-utilization"),
    ("POST", "/admin/v1/infrastructure/nodes/n1/cordon"),
    ("POST", "/admin/v1/infrastructure/nodes/n1/uncordon"),
    ("POST", "/admin/v1/infrastructure/nodes/n1/drain"),
    ("GET", "/admin/v1/scaling/events"),
    ("GET", "/admin/v1/infrastructure/health"),
    ("GET", "/internal/resources/available"),
]


@pytest.fixture
def app(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(store, NodesRuntime([node("n1"), node("n2")]))
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"})
    client = TestClient(build_app(keys, backend=sched))
    yield client, sched
    client.close()
    store.close()


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_the_admin_key(app, method, path):
    client, _ = app
    r = client.request(method, path, headers=ACME)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.request(method, path).status_code == 401
    r = client.request(method, path, headers=ADMIN)
    assert r.status_code in (200, 202), r.text


def test_node_operations_through_the_api(app):
    client, sched = app
    running(sched, "w1", "n1", gpus=2.0)
    nodes = client.get("/admin/v1/infrastructure/nodes", headers=ADMIN).json()
    assert {n["node_id"]: n["status"] for n in nodes["items"]} == {"n1": "ready", "n2": "ready"}
    assert nodes["items"][0]["workloads"] == ["w1"]
    r = client.post("/admin/v1/infrastructure/nodes/n2/cordon", json={"reason": "maintenance"}, headers=ADMIN)
    assert r.json()["status"] == "cordoned" and r.json()["cordon_reason"] == "maintenance"
    avail = client.get("/internal/resources/available", headers=ADMIN).json()
    assert avail["gpus_free"] == 2.0  # n1's 2 free GPUs; cordoned n2 is not available
    r = client.post("/admin/v1/infrastructure/nodes/n1/drain", json={"deadline_s": 600}, headers=ADMIN)
    assert r.status_code == 202 and r.json()["status"] == "draining"
    events = client.get("/admin/v1/scaling/events?kind=node", headers=ADMIN).json()["items"]
    assert [e["outcome"] for e in events[:2]] == ["draining", "cordoned"]
    health = client.get("/admin/v1/infrastructure/health", headers=ADMIN).json()
    assert health["nodes"] == {"draining": 1, "cordoned": 1}
    assert health["autoscaler"]["status"] == "not_running"


@pytest.mark.parametrize(
    "method,path,body,field",
    [
        ("POST", "/admin/v1/infrastructure/nodes/n1/drain", {"deadline_s": -5}, "deadline_s"),
        ("POST", "/admin/v1/infrastructure/nodes/n1/drain", {"deadline_s": "soon"}, "deadline_s"),
        ("POST", "/admin/v1/infrastructure/nodes/n1/drain", {"grace": 5}, "grace"),
        ("POST", "/admin/v1/infrastructure/nodes/n1/cordon", {"reason": "x" * 600}, "reason"),
        ("POST", "/admin/v1/infrastructure/nodes/bad%20id/cordon", None, "node_id"),
        ("GET", "/admin/v1/scaling/events?limit=0", None, "limit"),
        ("GET", "/admin/v1/scaling/events?kind=DROP%20TABLE", None, "kind"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(app, method, path, body, field):
    client, _ = app
    r = client.request(method, path, json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert any(field in d["field"] for d in r.json()["error"]["details"]), r.json()


def test_unknown_node_is_404_and_a_gone_node_409(app):
    client, sched = app
    r = client.post("/admin/v1/infrastructure/nodes/nope/drain", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    client.get("/admin/v1/infrastructure/nodes", headers=ADMIN)
    sched.runtime.alive = [node("n1")]
    r = client.post("/admin/v1/infrastructure/nodes/n2/cordon", headers=ADMIN)
    assert r.status_code == 409 and "terminated" in r.json()["error"]["message"]
