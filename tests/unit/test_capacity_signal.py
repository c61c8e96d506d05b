"""Failed launches reach the queue: explain says why a workload waits on a pool, and with
``reject_when_capacity_unavailable`` a workload that needs new nodes of a failing pool gets a 429."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.config import PolicyConfig
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

from .test_node_lifecycle import NodesRuntime, node

ADMIN = {"Authorization": "Bearer admin-key"}
GANG = {
    "workload_type": "task",
    "function": "math:factorial",
    "placement": "strict_spread",
    "bundles": [{"cpu": 1, "gpu": 4, "gpu_type": "A100"}] * 3,
}
NOW = 1_800_000_000.0


def report(sched, waiting=None, failed_at=None):
    pool = {
        "pool": "a100",
        "policy": "reactive",
        "current": 2,
        "target": 4,
        "direction": "up",
        "trigger": "queue",
        "reason": "1 pending gang",
        "held_by_cooldown": False,
        "provisioning": 2,
        "pending_gangs": 1,
        "released": [],
        "last_failed_launch": None
        if failed_at is None
        else {
            "at": failed_at,
            "details": "InsufficientInstanceCapacity in us-east-1a, us-east-1b",
            "count": 2,
        },
        "spec": {
            "node_resources": {"CPU": 2.0, "GPU": 4.0},
            "labels": {"orion.io/pool": "a100", "ray.io/accelerator-type": "A100"},
            "min_size": 0,
            "max_size": 8,
        },
    }
    asyncio.new_event_loop().run_until_complete(
        sched.autoscaler_report({"loop": "ok", "pools": [pool], "waiting": waiting or {}})
    )


@pytest.fixture
def app(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(
        store,
        NodesRuntime([node("n1"), node("n2")]),
        policy=PolicyConfig(reject_when_capacity_unavailable=True),
    )
    sched.clock = lambda: NOW
    client = TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=sched))
    yield client, sched
    client.close()
    store.close()


def test_explain_says_the_pool_is_scaling_then_that_its_launch_failed(app):
    client, sched = app
    sched.policy_config = PolicyConfig()  # no back-pressure: the gang is queued
    wid = client.post("/api/v1/workloads", json=GANG, headers=ADMIN).json()["workload_id"]
    report(sched, {wid: "a100"})
    codes = {
        r["code"]: r["message"]
        for r in client.get(f"/api/v1/workloads/{wid}/explain", headers=ADMIN).json()["reasons"]
    }
    assert "scaling up 2 → 4" in codes["scaling_up"]
    report(sched, {wid: "a100"}, failed_at=NOW - 30)
    codes = {
        r["code"]: r["message"]
        for r in client.get(f"/api/v1/workloads/{wid}/explain", headers=ADMIN).json()["reasons"]
    }
    assert "InsufficientInstanceCapacity" in codes["capacity_launch_failed"]
    report(sched, {wid: ""})
    codes = [
        r["code"] for r in client.get(f"/api/v1/workloads/{wid}/explain", headers=ADMIN).json()["reasons"]
    ]
    assert "no_pool" in codes


def test_429_only_when_the_gang_needs_a_pool_whose_launch_failed_recently(app):
    client, sched = app
    report(sched, failed_at=NOW - 30)
    r = client.post("/api/v1/workloads", json=GANG, headers=ADMIN)
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "capacity_unavailable" and "InsufficientInstanceCapacity" in err["message"]
    assert r.headers.get("Retry-After") == "60"
    assert err["details"][0]["field"] == "resources"
    small = dict(GANG, bundles=[{"cpu": 1, "gpu": 4, "gpu_type": "A100"}] * 2)
    assert client.post("/api/v1/workloads", json=small, headers=ADMIN).status_code == 202  # fits
    report(sched, failed_at=NOW - 3600)  # an old failure no longer counts
    assert client.post("/api/v1/workloads", json=GANG, headers=ADMIN).status_code == 202
    assert len(sched.active) == 2 and not sched.book.shapes.keys() - set(sched.active)
