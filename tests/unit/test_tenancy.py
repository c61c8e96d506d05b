"""Tenants over the REST API (in-process, scheduler never started): isolation on every route,
admin-only routes, reload without restart (validated, all or nothing), explain, queue, audit."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
TASK = {"workload_type": "task", "function": "math:factorial"}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def env(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(store, runtime=FakeRuntime())
    app = build_app(KeyRing([hash_key("admin-key")]), backend=sched)
    with TestClient(app) as client:
        r = client.post(
            "/admin/v1/reload",
            headers=ADMIN,
            json={
                "tenants": [
                    {"id": "research", "weight": 2, "quota": {"gpu": 4, "cpu": 8}},
                    # prod is granted the top classes (configured tenants get normal and below)
                    {
                        "id": "prod",
                        "max_queued": 2,
                        "allowed_priorities": ["critical", "high", "normal", "low"],
                    },
                ],
                "keys": {hash_key("research-key"): "research", hash_key("prod-key"): "prod"},
            },
        )
        assert r.status_code == 200, r.text
        app.state.keyring_at = 0.0
        yield client, sched, store
    store.close()


def submit(client, key, **fields):
    return client.post("/api/v1/workloads", json={**TASK, **fields}, headers=bearer(key))


def test_reloaded_keys_authenticate_without_restart(env):
    client, _, _ = env
    assert submit(client, "research-key").status_code == 202
    assert submit(client, "nobody-key").status_code == 401


PER_WORKLOAD = [
    ("get", "/api/v1/workloads/{id}"),
    ("delete", "/api/v1/workloads/{id}"),
    ("get", "/api/v1/workloads/{id}/logs"),
    ("get", "/api/v1/workloads/{id}/explain"),
]


@pytest.mark.parametrize("method,path", PER_WORKLOAD)
def test_other_tenant_gets_404_owner_and_admin_succeed(env, method, path):
    client, _, _ = env
    wid = submit(client, "research-key").json()["workload_id"]
    url = path.format(id=wid)
    other = client.request(method, url, headers=bearer("prod-key"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    unknown = client.request(method, path.format(id="wl-unknown"), headers=bearer("prod-key"))
    assert unknown.json() == other.json() | {
        "error": {**other.json()["error"], "message": unknown.json()["error"]["message"]}
    }
    assert client.request(method, url).status_code == 401
    assert client.request(method, url, headers=bearer("research-key")).status_code in (200, 202)
    assert client.request(method, url, headers=ADMIN).status_code in (200, 202)


def test_lists_and_queue_show_only_the_callers_tenant(env):
    client, _, _ = env
    mine = submit(client, "research-key").json()["workload_id"]
    theirs = submit(client, "prod-key").json()["workload_id"]
    listed = client.get("/api/v1/workloads?tenant_id=prod", headers=bearer("research-key")).json()
    assert [w["workload_id"] for w in listed["items"]] == [mine]
    q = client.get("/api/v1/queue", headers=bearer("research-key")).json()
    assert [t["tenant_id"] for t in q["tenants"]] == ["research"]
    admin_q = client.get("/api/v1/queue", headers=ADMIN).json()
    assert {t["tenant_id"] for t in admin_q["tenants"]} >= {"research", "prod"}
    assert admin_q["total_queued"] == 2
    del theirs


@pytest.mark.parametrize(
    "method,path", [("get", "/api/v1/tenants"), ("post", "/admin/v1/reload"), ("get", "/admin/v1/audit")]
)
def test_admin_routes_refuse_tenant_keys(env, method, path):
    client, _, _ = env
    r = client.request(
        method, path, headers=bearer("research-key"), json={"tenants": []} if method == "post" else None
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.request(method, path).status_code == 401


def test_tenants_route_lists_usage(env):
    client, _, _ = env
    submit(client, "research-key")
    rows = {t["tenant_id"]: t for t in client.get("/api/v1/tenants", headers=ADMIN).json()["items"]}
    assert rows["research"]["queued"] == 1 and rows["research"]["weight"] == 2
    assert rows["research"]["quota"] == {"gpu": 4, "cpu": 8} and rows["research"]["keys"] == 1
    assert rows["prod"]["queued"] == 0


def test_invalid_reload_is_refused_and_running_config_stays(env):
    client, sched, _ = env
    before = sched.tenants.summary()
    r = client.post(
        "/admin/v1/reload", headers=ADMIN, json={"tenants": [{"id": "research", "weight": -1}], "keys": {}}
    )
    assert r.status_code == 422
    assert any(d["field"].startswith("tenants.0.weight") for d in r.json()["error"]["details"])
    r = client.post(
        "/admin/v1/reload", headers=ADMIN, json={"tenants": [{"id": "a"}], "keys": {hash_key("x"): "ghost"}}
    )
    assert r.status_code == 422
    assert sched.tenants.summary() == before
    assert submit(client, "research-key").status_code == 202


def test_admin_submits_for_configured_tenants_only(env):
    client, _, _ = env
    ok = client.post("/api/v1/workloads", headers=ADMIN, json={**TASK, "metadata": {"tenant_id": "prod"}})
    assert ok.status_code == 202
    bad = client.post("/api/v1/workloads", headers=ADMIN, json={**TASK, "metadata": {"tenant_id": "ghost"}})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "metadata.tenant_id"


def test_tenant_limit_answers_429_with_retry_after(env):
    client, _, _ = env
    assert submit(client, "prod-key").status_code == 202
    assert submit(client, "prod-key").status_code == 202
    r = submit(client, "prod-key")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert submit(client, "research-key").status_code == 202  # other tenants are unaffected


def test_explain_reports_position_and_priority(env):
    client, sched, _ = env
    low = submit(client, "research-key", priority="low").json()["workload_id"]
    submit(client, "prod-key", priority="critical")
    sched.book.wait_reasons[low] = [{"code": "capacity", "message": "no node has the free resources"}]
    e = client.get(f"/api/v1/workloads/{low}/explain", headers=bearer("research-key")).json()
    assert e["position"] == {"overall": 2, "tenant": 1}
    codes = [r["code"] for r in e["reasons"]]
    assert "priority" in codes and "capacity" in codes


def test_explain_notes_quota(env):
    client, sched, _ = env
    wid = submit(client, "research-key", resources={"cpu": 1, "gpu": 8}).json()["workload_id"]
    sched.run_cycle()  # the cycle checks quota (no cluster here: nothing else is decided)
    e = client.get(f"/api/v1/workloads/{wid}/explain", headers=ADMIN).json()
    assert any(r["code"] == "quota" and "gpu" in r["message"] for r in e["reasons"])


def test_audit_records_who_did_what(env):
    client, _, _ = env
    wid = submit(client, "research-key").json()["workload_id"]
    client.delete(f"/api/v1/workloads/{wid}", headers=ADMIN)
    items = client.get("/admin/v1/audit", headers=ADMIN).json()["items"]
    actions = [(i["who"], i["action"], i["target"]) for i in items]
    assert ("research", "submit", wid) in actions
    assert ("admin", "cancel", wid) in actions
    assert any(a == "configure_tenants" for _, a, _ in actions)
    assert "research-key" not in str(items)  # keys never recorded in clear


def test_keys_are_stored_only_as_hashes(env, tmp_path):
    _, _, store = env
    raw = (tmp_path / "orion.db").read_bytes()
    wal = tmp_path / "orion.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"research-key" not in raw and hash_key("research-key").encode() in raw
