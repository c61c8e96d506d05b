"""The control plane's REST routes (orion_ray/control_plane/routes.py) over the pure core, with TestClient:
regions, heartbeats, drain, dispatch with failover, global quotas, sequenced status, loss and
fencing, config snapshots, and a restart that loses nothing. No Ray, no clusters."""

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.control_plane.routes import build_control_plane_app
from orion_ray.control_plane.service import ControlPlane
from orion_ray.policy.global_quota import GlobalQuota
from orion_ray.store.sqlite import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
EAST = {"Authorization": "Bearer east-key"}
WEST = {"Authorization": "Bearer west-key"}
QUOTAS = {"acme": GlobalQuota("acme", concurrent={"gpu": 4}, gpu_hours={"gpu": 100}, window_s=3600)}


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    path = str(tmp_path / "cp.db")

    def start():
        plane = ControlPlane(SQLiteStore(path), quotas=QUOTAS, lost_timeout_s=60, clock=clock)
        keys = KeyRing([hash_key("admin-key")], {hash_key("tenant-key"): "acme"})
        regions = {hash_key("east-key"): "us-east-1", hash_key("west-key"): "us-west-2"}
        return plane, TestClient(build_control_plane_app(plane, keys, regions))

    plane, c = start()
    for name in ("us-east-1", "us-west-2"):
        assert c.post("/api/v1/regions", json={"name": name}, headers=ADMIN).status_code == 201
    return {"plane": plane, "c": c, "clock": clock, "start": start}


def beat(c, name, headers, **kw):
    body = {"free_gpus": {"A100": 8}, "free_cpus": 64, **kw}
    r = c.post(f"/api/v1/regions/{name}/heartbeat", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def dispatch(c, run_id, **kw):
    body = {"run_id": run_id, "tenant_id": "acme", "gpus": 1, "gpu_type": "A100", "cpus": 1, **kw}
    return c.post("/api/v1/dispatch", json=body, headers=ADMIN)


# == regions and keys ==============================================================================
def test_regions_list_shows_state_capacity_and_config_drift(env):
    c = env["c"]
    beat(c, "us-east-1", EAST, queue_depth=3, applied_config_version=0, gpu_types=["H100", "A100"])
    v = c.put("/api/v1/config", json={"sections": {"tenants": {"acme": {}}}}, headers=ADMIN).json()["version"]
    items = {r["name"]: r for r in c.get("/api/v1/regions", headers=ADMIN).json()["items"]}
    east = items["us-east-1"]
    assert east["state"] == "active" and east["free_gpus"] == {"A100": 8} and east["queue_depth"] == 3
    assert east["gpu_types"] == ["A100", "H100"]  # offered, free or not (a pool that can launch)
    assert east["wanted_config_version"] == v == 1 and east["drift"]
    beat(c, "us-east-1", EAST, applied_config_version=1)
    assert c.get("/api/v1/regions/us-east-1", headers=ADMIN).json()["drift"] is False


def test_a_region_key_speaks_only_for_its_region_and_is_not_admin(env):
    c = env["c"]
    r = c.post("/api/v1/regions/us-west-2/heartbeat", json={}, headers=EAST)
    assert r.status_code == 403 and "us-east-1" in r.json()["error"]["message"]
    assert c.get("/api/v1/regions", headers=EAST).status_code == 401
    assert c.get("/api/v1/regions", headers={"Authorization": "Bearer tenant-key"}).status_code == 403
    assert c.get("/api/v1/regions").status_code == 401


def test_bad_input_is_a_4xx_naming_the_field(env):
    c = env["c"]
    r = c.post("/api/v1/regions", json={"name": "Not A Name"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "name"
    r = c.post("/api/v1/regions/us-east-1/heartbeat", json={"free_cpu": 3}, headers=EAST)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "free_cpu"
    r = c.post("/api/v1/regions/us-east-1/heartbeat", json={"queue_depth": -1}, headers=EAST)
    assert r.json()["error"]["details"][0]["field"] == "queue_depth"
    r = c.post("/api/v1/regions/us-east-1/state", json={"state": "paused"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "state"
    r = dispatch(c, "r", gpus=-1)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "gpus"
    r = c.put("/api/v1/config", json={"sections": {"colours": {}}}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "colours"
    assert c.get("/api/v1/regions/eu-north-9", headers=ADMIN).status_code == 404


# == dispatch ======================================================================================
def test_dispatch_goes_to_the_best_region_with_an_idempotency_key(env):
    c = env["c"]
    beat(c, "us-east-1", EAST, free_gpus={"A100": 2})
    beat(c, "us-west-2", WEST, free_gpus={"A100": 8})
    r = dispatch(c, "run-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["region"] == "us-west-2" and body["generation"] == 1
    assert body["idempotency_key"] == "cp-run-1-g1" and body["reasons"]["us-west-2"][0]["code"] == "chosen"
    again = dispatch(c, "run-1").json()  # a retried call: the same assignment, no second hold
    assert (again["region"], again["idempotency_key"]) == ("us-west-2", "cp-run-1-g1")
    assert env["plane"].tables.usage("acme", now=1000, window_s=3600).concurrent["gpu"] == 1


def test_a_drained_region_takes_nothing_new(env):
    c = env["c"]
    beat(c, "us-east-1", EAST)
    beat(c, "us-west-2", WEST)
    assert c.post("/api/v1/regions/us-west-2/state", json={"state": "draining"}, headers=ADMIN).json()[
        "state"
    ] == ("draining")
    assert dispatch(c, "r", preference=["us-west-2"]).json()["region"] == "us-east-1"


def test_a_refusal_releases_blocks_and_the_next_dispatch_goes_elsewhere(env):
    c = env["c"]
    beat(c, "us-east-1", EAST, free_gpus={"A100": 8})
    beat(c, "us-west-2", WEST, free_gpus={"A100": 2})
    assert dispatch(c, "r").json()["region"] == "us-east-1"
    out = c.post(
        "/api/v1/dispatch/r/outcome",
        json={"accepted": False, "kind": "throttled", "gpu_type": "A100"},
        headers=ADMIN,
    ).json()
    assert out == {"run_id": "r", "region": None, "generation": 2, "status": "dispatched"}
    r = dispatch(c, "r").json()
    assert r["region"] == "us-west-2" and r["idempotency_key"] == "cp-r-g2"
    assert r["reasons"]["us-east-1"][0]["code"] == "blocked"
    assert (
        c.post("/api/v1/dispatch/r/outcome", json={"accepted": True}, headers=ADMIN).json()["status"]
        == "submitted"
    )
    assert env["plane"].tables.get("cp-r-g1").state == "released"
    assert env["plane"].tables.get("cp-r-g2").state == "committed"


def test_a_failure_without_a_kind_is_a_422(env):
    c = env["c"]
    beat(c, "us-east-1", EAST)
    dispatch(c, "r")
    r = c.post("/api/v1/dispatch/r/outcome", json={"accepted": False}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "kind"
    assert c.post("/api/v1/dispatch/zz/outcome", json={"accepted": True}, headers=ADMIN).status_code == 404


def test_nowhere_to_go_is_a_429_with_every_region_s_reason(env):
    c = env["c"]
    beat(c, "us-east-1", EAST)
    r = dispatch(c, "r", region_selector={"data": "eu"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "5"
    fields = {d["field"]: d["problem"] for d in r.json()["error"]["details"]}
    assert "label data=eu" in fields["region:us-east-1"] and "region:us-west-2" in fields


def test_the_global_quota_holds_across_regions(env):
    c = env["c"]
    beat(c, "us-east-1", EAST)
    beat(c, "us-west-2", WEST)
    assert dispatch(c, "a", gpus=2).status_code == 200
    assert dispatch(c, "b", gpus=2).status_code == 200
    r = dispatch(c, "c", gpus=1)
    assert r.status_code == 429 and "global limit 4" in r.json()["error"]["message"]
    # the run ends: its hold goes back
    region = env["plane"].assignments["a"].region
    key = EAST if region == "us-east-1" else WEST
    ch = [{"seq": 1, "workload_id": "a", "generation": 1, "status": "completed", "at": 1001}]
    assert c.post(f"/api/v1/regions/{region}/status", json={"changes": ch}, headers=key).status_code == 200
    assert dispatch(c, "c", gpus=1).status_code == 200


# == status, loss, fencing =========================================================================
def test_status_is_sequenced_resends_are_no_ops_and_a_gap_asks_for_a_resync(env):
    c = env["c"]
    beat(c, "us-east-1", EAST)
    dispatch(c, "w")

    def send(*seqs, status="running"):
        ch = [{"seq": s, "workload_id": "w", "generation": 1, "status": status, "at": 1000 + s} for s in seqs]
        return c.post("/api/v1/regions/us-east-1/status", json={"changes": ch}, headers=EAST)

    assert send(1, 2).json()["last_seq"] == 2
    assert send(1, 2).json() == {"applied": 0, "last_seq": 2, "duplicates": 2, "stale": []}
    r = send(5)
    assert r.status_code == 409 and r.json()["error"]["details"][0]["resync_from"] == 3
    assert send(3, 4, 5).json()["last_seq"] == 5


def test_a_lost_region_s_work_is_redispatched_and_its_return_is_fenced(env):
    c, plane, clock = env["c"], env["plane"], env["clock"]
    beat(c, "us-east-1", EAST, free_gpus={"A100": 8})
    beat(c, "us-west-2", WEST, free_gpus={"A100": 1})
    assert dispatch(c, "q").json()["region"] == "us-east-1"
    clock.t += 30
    beat(c, "us-west-2", WEST, free_gpus={"A100": 1})
    clock.t += 40  # east silent 70 s > 60
    out = plane.tick()
    assert out["lost"] == ["us-east-1"] and out["redispatch"] == ["q"]
    assert c.get("/api/v1/regions/us-east-1", headers=ADMIN).json()["state"] == "inactive"
    r = dispatch(c, "q").json()
    assert (r["region"], r["generation"]) == ("us-west-2", 2)
    assert plane.tables.get("cp-q-g1").state == "released"
    # east returns still holding generation 1: told to cancel it; its late status is kept apart
    back = beat(c, "us-east-1", EAST, assigned=[["q", 1]])
    assert back["returned"] and back["state"] == "active"
    assert back["cancel"] == [{"workload_id": "q", "generation": 1}]
    ch = [{"seq": 1, "workload_id": "q", "generation": 1, "status": "running", "at": 1071}]
    r = c.post("/api/v1/regions/us-east-1/status", json={"changes": ch}, headers=EAST).json()
    assert r["stale"] == [{"workload_id": "q", "generation": 1}] and r["applied"] == 0


# == config ========================================================================================
def test_config_publish_versions_only_on_change_and_serves_verified_text(env):
    c = env["c"]
    secs = {"pools": {"gpu": {"max": 4}}, "prices": {"us-east-1": {"A100": 4.1}}}
    v1 = c.put("/api/v1/config", json={"sections": secs}, headers=ADMIN).json()
    assert c.put("/api/v1/config", json={"sections": secs}, headers=ADMIN).json() == v1
    v2 = c.put(
        "/api/v1/config", json={"sections": {**secs, "pools": {"gpu": {"max": 8}}}}, headers=ADMIN
    ).json()
    assert v2["version"] == 2 and v2["sha256"] != v1["sha256"]
    got = c.get("/api/v1/config/snapshots/1", headers=EAST).json()
    assert got["sha256"] == v1["sha256"] and '"max":4' in got["text"]
    assert c.get("/api/v1/config/snapshots/9", headers=ADMIN).status_code == 404
    assert c.get("/api/v1/config/snapshots/1").status_code == 401
    assert beat(c, "us-east-1", EAST)["wanted_config"] == v2


# == restart =======================================================================================
def test_a_control_plane_restart_loses_nothing(env):
    c, clock = env["c"], env["clock"]
    beat(c, "us-east-1", EAST)
    c.post("/api/v1/regions/us-west-2/state", json={"state": "draining"}, headers=ADMIN)
    dispatch(c, "a", gpus=3)
    c.put("/api/v1/config", json={"sections": {"tenants": {"acme": {}}}}, headers=ADMIN)
    ch = [{"seq": 1, "workload_id": "a", "generation": 1, "status": "running", "at": 1001}]
    c.post("/api/v1/regions/us-east-1/status", json={"changes": ch}, headers=EAST)
    env["plane"].store.close()
    plane, c2 = env["start"]()  # a new process on the same store
    items = {r["name"]: r for r in c2.get("/api/v1/regions", headers=ADMIN).json()["items"]}
    assert items["us-west-2"]["state"] == "draining" and items["us-east-1"]["status_seq"] == 1
    assert items["us-east-1"]["wanted_config_version"] == 1
    held = plane.tables.usage("acme", now=clock.t, window_s=3600).concurrent
    assert held == {"gpu": 3.0, "gpu:A100": 3.0, "cpu": 1.0}
    assert dispatch(c2, "b", gpus=2).status_code == 429  # the global quota remembers the 3 GPUs
    # the restarted plane does not declare regions lost before one timeout from its own start
    clock.t += 59
    assert plane.tick()["lost"] == []


def test_assignments_survive_a_restart_so_loss_and_fencing_still_work(env):
    c, clock = env["c"], env["clock"]
    beat(c, "us-east-1", EAST, free_gpus={"A100": 8})
    beat(c, "us-west-2", WEST, free_gpus={"A100": 1})
    assert dispatch(c, "q").json()["region"] == "us-east-1"
    env["plane"].store.close()
    plane, c2 = env["start"]()
    assert dispatch(c2, "q").json()["idempotency_key"] == "cp-q-g1"  # known: the same answer
    clock.t += 61
    beat(c2, "us-west-2", WEST, free_gpus={"A100": 1})
    assert plane.tick()["lost"] == ["us-east-1"]  # one timeout after the restart
    assert dispatch(c2, "q").json()["region"] == "us-west-2"
    plane.store.close()
    plane, c3 = env["start"]()
    assert beat(c3, "us-east-1", EAST, assigned=[["q", 1]])["cancel"] == [
        {"workload_id": "q", "generation": 1}
    ]
    assert plane.assignments["q"].generation == 2 and plane.assignments["q"].region == "us-west-2"


def test_a_dispatch_retried_while_its_region_is_full_returns_the_assignment(env):
    c = env["c"]
    beat(c, "us-east-1", EAST, free_gpus={"A100": 1})
    assert dispatch(c, "r").json()["region"] == "us-east-1"
    beat(c, "us-east-1", EAST, free_gpus={"A100": 0}, queue_depth=10_000)
    again = dispatch(c, "r")
    assert again.status_code == 200 and again.json()["reasons"]["us-east-1"][0]["code"] == "assigned"


def test_a_region_lost_with_running_work_fails_it_with_a_reason(env):
    c, plane, clock = env["c"], env["plane"], env["clock"]
    beat(c, "us-east-1", EAST)
    dispatch(c, "run", region="us-east-1")
    ch = [{"seq": 1, "workload_id": "run", "generation": 1, "status": "running", "at": 1001}]
    c.post("/api/v1/regions/us-east-1/status", json={"changes": ch}, headers=EAST)
    clock.t += 61
    out = plane.tick()
    assert out["failed"][0][0] == "run" and "region_lost: us-east-1" in out["failed"][0][1]
    assert plane.assignments["run"].status == "failed"
    assert plane.tables.get("cp-run-g1").state == "released"


def test_a_lost_region_s_runs_are_redispatched_from_their_stored_requests_even_after_a_restart(env):
    c, clock = env["c"], env["clock"]
    beat(c, "us-east-1", EAST, free_gpus={"A100": 8})
    beat(c, "us-west-2", WEST, free_gpus={"A100": 1}, labels={"data": "us"})
    assert dispatch(c, "q", preference=["us-east-1"]).json()["region"] == "us-east-1"
    assert dispatch(c, "sel", region_selector={"data": "eu"}).status_code == 429  # never assigned
    env["plane"].store.close()
    plane, c2 = env["start"]()  # the control plane restarts, then east goes silent
    clock.t += 61
    beat(c2, "us-west-2", WEST, free_gpus={"A100": 1}, labels={"data": "us"})
    assert plane.tick()["redispatch"] == ["q"]
    out = plane.redispatch()
    assert out == {"placed": {"q": "us-west-2"}, "waiting": {}}
    assert plane.assignments["q"].generation == 2
    assert plane.tables.get("cp-q-g2").state == "reserved" and plane.tables.get("cp-q-g1").state == "released"
    assert plane.redispatch() == {"placed": {}, "waiting": {}}  # nothing twice


def test_a_run_with_nowhere_to_go_waits_for_the_next_tick(env):
    c, plane, clock = env["c"], env["plane"], env["clock"]
    beat(c, "us-east-1", EAST)
    dispatch(c, "p", region="us-east-1")
    clock.t += 61
    plane.tick()
    out = plane.redispatch()
    assert out["placed"] == {} and "no region" in out["waiting"]["p"]
    beat(c, "us-east-1", EAST)  # it comes back
    assert plane.redispatch()["placed"] == {"p": "us-east-1"}


def test_gpu_hours_are_charged_while_running_and_at_the_end(env):
    c, plane, clock = env["c"], env["plane"], env["clock"]
    beat(c, "us-east-1", EAST)
    dispatch(c, "a", gpus=2)
    dispatch(c, "b", gpus=1)
    ch = [
        {"seq": 1, "workload_id": "a", "generation": 1, "status": "running", "at": 1000},
        {"seq": 2, "workload_id": "b", "generation": 1, "status": "running", "at": 1000},
        {"seq": 3, "workload_id": "a", "generation": 1, "status": "completed", "at": 2800},
    ]
    assert c.post("/api/v1/regions/us-east-1/status", json={"changes": ch}, headers=EAST).status_code == 200
    used = plane.tables.usage("acme", now=clock.t, window_s=3600).gpu_hours
    assert used == {"gpu": 1.0, "gpu:A100": 1.0}  # a: 2 GPUs for half an hour
    clock.t = 1900
    beat(c, "us-east-1", EAST)
    plane.tick()
    plane.tick()  # totals, not increments: twice is once
    used = plane.tables.usage("acme", now=clock.t, window_s=3600).gpu_hours
    assert used == {"gpu": 1.25, "gpu:A100": 1.25}  # + b: 1 GPU for a quarter of an hour so far


def test_a_lost_region_s_running_time_is_charged_and_the_new_generation_starts_afresh(env):
    c, plane, clock = env["c"], env["plane"], env["clock"]
    beat(c, "us-east-1", EAST)
    dispatch(c, "r", gpus=2, region="us-east-1")
    ch = [{"seq": 1, "workload_id": "r", "generation": 1, "status": "running", "at": 1000}]
    c.post("/api/v1/regions/us-east-1/status", json={"changes": ch}, headers=EAST)
    plane.assignments["r"] = plane.assignments["r"].__class__(
        **{**plane.assignments["r"].__dict__, "restartable": True, "retries_left": 1}
    )
    clock.t = 2800  # silent since 1000: lost, 2 GPUs × 0.5 h ran there
    assert plane.tick()["redispatch"] == ["r"]
    assert plane.tables.usage("acme", now=clock.t, window_s=3600).gpu_hours["gpu"] == 1.0
    assert plane.assignments["r"].started_at is None and plane.assignments["r"].generation == 2
