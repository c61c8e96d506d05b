"""A region applies a config snapshot without a restart: the scheduler's method, its REST routes
and the autoscaler's pool swap, in process (nothing runs)."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.autoscaler.pool_spec import parse_autoscale_pools
from orion_ray.autoscaler.pool_swap import PoolSwap
from orion_ray.policy import config_snapshot as cfg
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
ACME_HASH = hash_key("acme-key")


def snap(version=1, **sections):
    s = cfg.build(sections, version=version)
    return {"version": s.version, "sha256": s.sha256, "body": dict(s.body)}


V1 = dict(
    tenants={"acme": {"weight": 2}, "beta": {}},
    quotas={"acme": {"cpu": 4}},
    pools={"cpu-small": {"resources": {"CPU": 2}, "max_size": 3}},
    prices={"cpu": 0.05},
)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def scheduler(store):
    s = Scheduler(store, runtime=FakeRuntime())
    asyncio.run(s.configure_tenants([{"id": "acme"}], {ACME_HASH: "acme"}, None, "orion up"))
    return s


def run(coro):
    return asyncio.run(coro)


def test_apply_swaps_every_section_and_reports_what_changed(store):
    s = scheduler(store)
    out = run(s.apply_config_snapshot(snap(**V1)))
    assert out["outcome"] == "applied" and out["refused"] == []
    assert out["applied"]["version"] == 1
    assert out["changed"] == {
        "tenants": ["acme", "beta"],
        "quotas": ["acme"],
        "pools": ["cpu-small"],
        "prices": ["cpu"],
    }
    assert out["pools"]["added"] == ["cpu-small"]
    assert s.tenants.get("acme").quota == {"cpu": 4.0} and s.tenants.get("acme").weight == 2
    assert s.tenants.keys == {ACME_HASH: "acme"}  # the tenant's key kept: snapshots carry no keys
    assert s.policy.tenants["acme"].weight == 2  # the policy's view is rebuilt in the same step
    view = run(s.autoscaler_view())
    assert view["pools_config"]["version"] == 1
    assert [p["name"] for p in view["pools_config"]["pools"]] == ["cpu-small"]
    applied = run(s.applied_config())
    assert (applied["version"], applied["pools"], applied["prices"]) == (1, ["cpu-small"], {"cpu": 0.05})


def test_the_applied_version_survives_a_restart(store):
    run(scheduler(store).apply_config_snapshot(snap(**V1)))
    again = Scheduler(store, runtime=FakeRuntime())
    applied = run(again.applied_config())
    assert applied["version"] == 1 and applied["sha256"] == snap(**V1)["sha256"]
    assert again.tenants.get("acme").quota == {"cpu": 4.0}
    assert run(again.autoscaler_view())["pools_config"]["version"] == 1


def test_a_bad_snapshot_changes_nothing(store):
    s = scheduler(store)
    run(s.apply_config_snapshot(snap(**V1)))
    bad = snap(
        2, tenants={"acme": {"weight": 5}}, quotas={"acme": {"cpu": -1}}, pools={"x": {"max_size": -1}}
    )
    out = run(s.apply_config_snapshot(bad))
    assert out["outcome"] == "invalid" and out["applied"]["version"] == 1
    assert {r["field"] for r in out["refused"]} >= {"quotas.acme.cpu", "pools.x.max_size"}
    assert s.tenants.get("acme").weight == 2 and s.tenants.get("acme").quota == {"cpu": 4.0}
    assert run(s.applied_config())["version"] == 1


def test_stale_forked_and_repeated_versions(store):
    s = scheduler(store)
    run(s.apply_config_snapshot(snap(2, **V1)))
    assert run(s.apply_config_snapshot(snap(1, **V1)))["outcome"] == "stale"
    forked = run(s.apply_config_snapshot(snap(2, prices={"cpu": 9})))
    assert forked["outcome"] == "stale" and forked["refused"][0]["field"] == "sha256"
    assert run(s.apply_config_snapshot(snap(2, **V1))) == {
        "outcome": "unchanged",
        "applied": {"version": 2, "sha256": snap(2, **V1)["sha256"]},
        "changed": {},
        "refused": [],
    }


def test_a_removed_pool_with_nodes_is_retired_not_dropped(store):
    s = scheduler(store)
    run(s.apply_config_snapshot(snap(**V1)))
    run(s.autoscaler_report({"pools": [{"pool": "cpu-small", "current": 1, "target": 1}]}))
    out = run(s.apply_config_snapshot(snap(2, **{**V1, "pools": {"gpu": {"resources": {"GPU": 1}}}})))
    assert out["pools"] == {
        "added": ["gpu"],
        "changed": [],
        "removed": ["cpu-small"],
        "retiring": ["cpu-small"],
    }
    pools = {p["name"]: p for p in run(s.autoscaler_view())["pools_config"]["pools"]}
    assert pools["cpu-small"]["max_size"] == 0 and pools["gpu"]["resources"] == {"GPU": 1.0}


def test_a_local_reload_reports_version_0_so_the_control_plane_applies_again(store):
    s = scheduler(store)
    run(s.apply_config_snapshot(snap(**V1)))
    run(s.configure_tenants([{"id": "acme"}], {ACME_HASH: "acme"}, None, "orion reload"))
    applied = run(s.applied_config())
    assert (
        applied["version"] == 0
        and applied["last_version"] == 1
        and applied["overridden"]["by"] == "orion reload"
    )
    assert run(s.apply_config_snapshot(snap(**V1)))["outcome"] == "applied"


# -- REST ------------------------------------------------------------------------------------------
@pytest.fixture
def client(store):
    s = scheduler(store)
    keys = KeyRing([hash_key("admin-key")], {ACME_HASH: "acme"})
    with TestClient(build_app(keys, backend=s)) as c:
        yield c


def test_rest_apply_and_applied(client):
    r = client.post("/admin/v1/config/apply", json=snap(**V1), headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["applied"]["version"] == 1
    text = cfg.build(V1, version=2).text()  # the control plane's served form: canonical text
    r = client.post(
        "/admin/v1/config/apply", json={"version": 2, "sha256": cfg.digest(text), "text": text}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    r = client.get("/admin/v1/config/applied", headers=ADMIN)
    assert r.status_code == 200 and r.json()["version"] == 2


def test_rest_refusals_name_the_field(client):
    r = client.post("/admin/v1/config/apply", json=snap(**{"prices": {"cpu": -1}}), headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "prices.cpu", r.text
    bad_hash = dict(snap(**V1), sha256="0" * 64)
    r = client.post("/admin/v1/config/apply", json=bad_hash, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "sha256"
    r = client.post("/admin/v1/config/apply", json={"version": 1, "sha256": "0" * 64}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "body"
    r = client.post("/admin/v1/config/apply", json={**snap(**V1), "extra": 1}, headers=ADMIN)
    assert r.status_code == 422
    assert client.post("/admin/v1/config/apply", json=snap(3, **V1), headers=ADMIN).status_code == 200
    r = client.post("/admin/v1/config/apply", json=snap(2, **V1), headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"]["details"][0]["field"] == "version"


def test_rest_is_admin_only(client):
    assert client.post("/admin/v1/config/apply", json=snap(**V1), headers=ACME).status_code == 403
    assert client.get("/admin/v1/config/applied", headers=ACME).status_code == 403
    assert client.get("/admin/v1/config/applied").status_code == 401


# -- the autoscaler's swap -----------------------------------------------------------------------
def test_pool_swap_follows_the_version_and_goes_back_to_the_regions_own():
    own = parse_autoscale_pools([{"name": "base", "resources": {"CPU": 4}}])
    swap = PoolSwap(own, {"base": "base"}, lambda raw: parse_autoscale_pools(raw, {}))
    pools, types = swap.update(None, own, {"base": "base"})
    assert pools is own
    cfg_pools = {
        "version": 3,
        "pools": [
            {"name": "gpu", "resources": {"GPU": 1}},
            {"name": "old", "resources": {"CPU": 1}, "max_size": 0, "retired": True},
        ],
    }
    pools, types = swap.update(cfg_pools, pools, types)
    assert [p.name for p in pools] == ["gpu", "old"] and types == {"gpu": "gpu", "old": "old"}
    assert swap.update(cfg_pools, pools, types)[0] is pools  # same version: nothing rebuilt
    pools, types = swap.update(None, pools, types)
    assert [p.name for p in pools] == ["base"]


def test_pool_swap_keeps_the_running_pools_when_a_version_cannot_be_parsed():
    own = parse_autoscale_pools([{"name": "base", "resources": {"CPU": 1}}])
    swap = PoolSwap(own, {"base": "base"}, lambda raw: parse_autoscale_pools(raw, {}))
    pools, _ = swap.update({"version": 2, "pools": [{"name": "x", "max_size": -1}]}, own, {})
    assert pools is own
