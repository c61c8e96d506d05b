"""The policy through the API (in process, no cluster): configuration by reload, submission rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
TASK = {"workload_type": "task", "function": "math:factorial"}
TENANTS = [{"id": "a", "weight": 2, "quota": {"gpu": 4}}]


@pytest.fixture
def env(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(store, runtime=FakeRuntime())
    app = build_app(KeyRing([hash_key("admin-key")]), backend=sched)
    with TestClient(app) as client:
        yield client, sched, store
    store.close()


def reload(client, policy):
    return client.post(
        "/admin/v1/reload", headers=ADMIN, json={"tenants": TENANTS, "keys": {}, "policy": policy}
    )


def test_policy_is_validated_applied_and_kept_across_restarts(env, tmp_path):
    client, sched, store = env
    bad = reload(client, {"preemption": {"grace_period_s": -1}})
    assert bad.status_code == 422
    assert any(d["field"] == "policy.preemption.grace_period_s" for d in bad.json()["error"]["details"])
    bad = reload(client, {"preemption": {"protected_classes": ["urgent"]}})
    assert bad.status_code == 422 and "urgent" in bad.text
    assert sched.policy_config.reserve_after_s == 300  # nothing changed
    ok = reload(
        client, {"reserve_after_s": 5, "fair_share_half_life_s": 0, "preemption": {"min_runtime_s": 30}}
    )
    assert ok.status_code == 200, ok.text
    assert sched.policy.reserve_after_s == 5 and sched.policy.min_runtime_s == 30
    assert sched.policy.tenants["a"].weight == 2
    again = Scheduler(store, runtime=FakeRuntime())  # a restart keeps the reloaded policy
    assert again.policy_config.reserve_after_s == 5


def test_only_protected_classes_may_opt_out_of_preemption(env):
    client, _, _ = env
    r = client.post(
        "/api/v1/workloads", headers=ADMIN, json={**TASK, "priority": "low", "preemptible": False}
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "preemptible"
    r = client.post(
        "/api/v1/workloads", headers=ADMIN, json={**TASK, "priority": "high", "preemptible": False}
    )
    assert r.status_code == 202


def test_unreachable_deadline_refused_only_when_the_policy_says_so(env):
    client, _, _ = env
    soon = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    spec = {**TASK, "deadline": soon, "timeout_s": 60, "resources": {"cpu": 1, "gpu": 1}}
    assert client.post("/api/v1/workloads", headers=ADMIN, json=spec).status_code == 202
    assert reload(client, {"refuse_infeasible_deadlines": True}).status_code == 200
    r = client.post("/api/v1/workloads", headers=ADMIN, json=spec)  # no GPU node: never starts
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "deadline"
    no_deadline = {k: v for k, v in spec.items() if k != "deadline"}
    assert client.post("/api/v1/workloads", headers=ADMIN, json=no_deadline).status_code == 202


def test_queue_shows_quota_borrowing_and_fair_share(env):
    client, sched, _ = env
    assert reload(client, {}).status_code == 200
    q = client.get("/api/v1/queue", headers=ADMIN).json()
    row = next(t for t in q["tenants"] if t["tenant_id"] == "a")
    assert row["quota"] == {"gpu": 4} and row["borrowing"] == {} and row["fair_share"] == 0
    assert "fragmentation" in q and "reservation" in q
