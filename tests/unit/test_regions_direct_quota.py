"""Runs submitted straight to a region count in the control plane's global quota (issue 17):
the pure steps (policy/direct_usage.py), the durable hold (store/direct_runs.py, schema 12) and the
control plane's REST over them — held from the first change seen, refused beyond the limit, kept
across a restart, released at the end, GPU-hours charged. No Ray, no sockets."""

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.control_plane.routes import build_control_plane_app
from orion_ray.control_plane.service import ControlPlane
from orion_ray.policy.direct_usage import DirectRun, demand_of, direct_key, on_change
from orion_ray.policy.global_quota import GlobalQuota
from orion_ray.store.sqlite import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
EAST = {"Authorization": "Bearer east-key"}
WEST = {"Authorization": "Bearer west-key"}
QUOTAS = {"acme": GlobalQuota("acme", concurrent={"gpu": 2}, gpu_hours={"gpu": 3}, window_s=86_400)}


# == pure ==========================================================================================
def test_demand_sums_a_gangs_bundles_with_the_gpu_type():
    spec = {"bundles": [{"cpu": 2, "gpu": 1, "gpu_type": "A100"}, {"cpu": 2, "gpu": 1}]}
    assert demand_of(spec) == {"gpu": 2.0, "cpu": 4.0, "gpu:A100": 2.0}
    assert demand_of({"resources": {"cpu": 0.5}}) == {"cpu": 0.5}
    assert demand_of({}) == {"cpu": 1.0}  # the model's default bundle
    assert demand_of({"resources": {"cpu": 0, "gpu": 0}}) == {}


def _c(status, at=10.0, **kw):
    return {
        "workload_id": "wl-1",
        "status": status,
        "at": at,
        "tenant_id": "acme",
        "demand": {"gpu": 1},
        **kw,
    }


def test_a_direct_run_is_held_from_its_first_change_until_its_end():
    first = on_change(None, "east", _c("queued"))
    assert first.hold and first.run.status == "queued" and first.run.started_at is None
    assert first.run.key == direct_key("east", "wl-1") == "rg-east-wl-1"
    run = on_change(first.run, "east", _c("running", at=20)).run
    assert run.started_at == 20 and not on_change(first.run, "east", _c("running")).hold
    again = on_change(run, "east", _c("running", at=25)).run  # a second start keeps the first
    assert again.started_at == 20
    end = on_change(again, "east", _c("completed", at=80))
    assert end.release and end.charge_until == 80 and end.run.ended_at == 80
    assert on_change(end.run, "east", _c("running", at=90)).run is None  # never moves back


def test_an_end_never_seen_running_holds_and_charges_nothing():
    assert on_change(None, "east", _c("completed")).run is None
    q = on_change(None, "east", _c("queued")).run
    end = on_change(q, "east", _c("cancelled", at=30))
    assert end.release and end.charge_until is None
    assert not on_change(None, "east", _c("queued", tenant_id="")).hold  # no tenant: nothing held


# == the control plane =============================================================================
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
        keys = KeyRing([hash_key("admin-key")], {})
        regions = {hash_key("east-key"): "east", hash_key("west-key"): "west"}
        return plane, TestClient(build_control_plane_app(plane, keys, regions))

    plane, c = start()
    for name, h in (("east", EAST), ("west", WEST)):
        c.post("/api/v1/regions", json={"name": name}, headers=ADMIN)
        r = c.post(
            f"/api/v1/regions/{name}/heartbeat", json={"free_gpus": {"gpu": 4}, "free_cpus": 8}, headers=h
        )
        assert r.status_code == 200
    return {"plane": plane, "c": c, "clock": clock, "start": start}


def status(c, region, headers, *changes):
    r = c.post(f"/api/v1/regions/{region}/status", json={"changes": list(changes)}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def change(seq, wid, st, at, gpus=1, tenant="acme"):
    return {
        "seq": seq,
        "workload_id": wid,
        "status": st,
        "at": at,
        "tenant_id": tenant,
        "region_workload_id": wid,
        "demand": {"gpu": gpus, "cpu": 1},
    }


def dispatch(c, run_id, gpus=1):
    body = {"run_id": run_id, "tenant_id": "acme", "gpus": gpus, "cpus": 1}
    return c.post("/api/v1/dispatch", json=body, headers=ADMIN)


def test_a_direct_run_narrows_what_the_global_quota_grants_across_regions(env):
    c = env["c"]
    status(c, "east", EAST, change(1, "wl-e", "queued", 1000), change(2, "wl-e", "running", 1000))
    assert dispatch(c, "r1").status_code == 200  # 1 direct + 1 dispatched = the limit of 2
    r = dispatch(c, "r2")
    assert r.status_code == 429 and "global limit" in r.text
    # a resent batch holds nothing twice; another region's direct run counts as well
    status(c, "east", EAST, change(1, "wl-e", "queued", 1000), change(2, "wl-e", "running", 1000))
    status(c, "west", WEST, change(1, "wl-w", "running", 1000, gpus=0))
    usage = env["plane"].tables.usage("acme", now=1000, window_s=86_400)
    assert usage.concurrent == {"gpu": 2.0, "cpu": 3.0}


def test_the_hold_survives_a_restart_and_goes_back_when_the_run_ends(env):
    c = env["c"]
    status(c, "east", EAST, change(1, "wl-e", "running", 1000, gpus=2))
    assert dispatch(c, "r1").status_code == 429
    env["plane"].store.close()
    plane, c = env["start"]()  # a restarted control plane: the hold is a row
    assert ("east", "wl-e") in plane.direct
    assert dispatch(c, "r1").status_code == 429
    env["clock"].t = 1000 + 1800
    status(c, "east", EAST, change(2, "wl-e", "completed", 2800, gpus=2))
    assert plane.direct == {}
    assert dispatch(c, "r1").status_code == 200
    used = plane.tables.usage("acme", now=2800, window_s=86_400).gpu_hours
    assert used == {"gpu": pytest.approx(1.0)}  # 2 GPUs for half an hour


def test_a_running_direct_run_is_charged_live_and_spends_the_gpu_hours(env):
    c, plane = env["c"], env["plane"]
    status(c, "west", WEST, change(1, "wl-w", "running", 1000, gpus=1))
    env["clock"].t = 1000 + 3 * 3600  # 3 GPU-hours: the window's budget
    plane.tick()
    assert plane.tables.usage("acme", now=env["clock"].t, window_s=86_400).gpu_hours == {
        "gpu": pytest.approx(3.0)
    }
    for name, h in (("east", EAST), ("west", WEST)):
        c.post(f"/api/v1/regions/{name}/heartbeat", json={"free_gpus": {"gpu": 4}}, headers=h)
    r = dispatch(c, "r1")
    assert r.status_code == 429 and "GPU-hours" in r.text


def test_a_dispatched_runs_changes_are_not_taken_for_direct_ones(env):
    c, plane = env["c"], env["plane"]
    assert dispatch(c, "r1").status_code == 200
    region = plane.assignments["r1"].region
    h = EAST if region == "east" else WEST
    ch = {**change(1, "r1", "running", 1000), "generation": 1, "region_workload_id": "wl-9"}
    status(c, region, h, ch)
    assert plane.direct == {} and plane.assignments["r1"].status == "running"


def test_a_bad_demand_is_a_422_naming_the_field(env):
    bad = {**change(1, "wl-e", "running", 1000), "demand": {"gpu": -1}}
    r = env["c"].post("/api/v1/regions/east/status", json={"changes": [bad]}, headers=EAST)
    assert r.status_code == 422 and "demand" in r.text


def test_direct_rows_are_stored_with_their_start(env):
    c, plane = env["c"], env["plane"]
    status(c, "east", EAST, change(1, "wl-e", "queued", 999), change(2, "wl-e", "running", 1001))
    assert plane.direct[("east", "wl-e")] == DirectRun(
        "east", "wl-e", "acme", {"gpu": 1.0, "cpu": 1.0}, "running", 1001.0, None
    )
