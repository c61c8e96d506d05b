"""The control plane's config, observability and interfaces (issue 17): GET /api/v1/config with
drift, /metrics per region, the audit view of regions' status changes, the alert rules, and the
SDK and CLI against the app in process."""

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from orion_ray import regions_cli
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.async_client import AsyncOrionClient
from orion_ray.cli import main
from orion_ray.client import OrionClient
from orion_ray.control_plane.observability import METRICS
from orion_ray.control_plane.routes import build_control_plane_app
from orion_ray.control_plane.service import ControlPlane
from orion_ray.errors import NotFound
from orion_ray.store.sqlite import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
EAST = {"Authorization": "Bearer east-key"}
WEST = {"Authorization": "Bearer west-key"}
ALERTS = Path(__file__).resolve().parents[2] / "cluster_configs" / "monitoring" / "regions-alerts.yml"
SECTIONS = {"tenants": {"acme": {"weight": 2}}, "quotas": {"acme": {"cpu": 8}}, "prices": {"gpu:A100": 3}}


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    store = SQLiteStore(str(tmp_path / "cp.db"))
    plane = ControlPlane(store, lost_timeout_s=60, clock=clock)
    keys = KeyRing([hash_key("admin-key")], {})
    regions = {hash_key("east-key"): "us-east-1", hash_key("west-key"): "us-west-2"}
    app = build_control_plane_app(plane, keys, regions)
    c = TestClient(app)
    for name in ("us-east-1", "us-west-2", "eu-west-1"):
        assert c.post("/api/v1/regions", json={"name": name}, headers=ADMIN).status_code == 201
    yield {"c": c, "clock": clock, "plane": plane, "app": app}
    c.close()
    store.close()


def beat(c, name, headers, **kw):
    r = c.post(f"/api/v1/regions/{name}/heartbeat", json={"free_gpus": {"A100": 4}, **kw}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


# -- config and drift ------------------------------------------------------------------------------
def test_config_shows_the_wanted_snapshot_and_which_regions_applied_it(env):
    c = env["c"]
    assert c.get("/api/v1/config", headers=ADMIN).json()["version"] == 0
    pub = c.put("/api/v1/config", json={"sections": SECTIONS}, headers=ADMIN).json()
    beat(c, "us-east-1", EAST, applied_config_version=1, applied_config_sha256=pub["sha256"])
    beat(c, "us-west-2", WEST, applied_config_version=0)
    got = c.get("/api/v1/config", headers=ADMIN).json()
    assert (got["version"], got["sha256"]) == (1, pub["sha256"])
    assert got["body"]["quotas"] == {"acme": {"cpu": 8}}
    assert got["regions"] == {"applied": ["us-east-1"], "behind": ["us-west-2"], "unknown": ["eu-west-1"]}
    assert "body" not in c.get("/api/v1/config?body=false", headers=ADMIN).json()
    regions = {r["name"]: r for r in c.get("/api/v1/regions", headers=ADMIN).json()["items"]}
    assert regions["us-east-1"]["drift"] is False and regions["us-west-2"]["drift"] is True
    assert regions["us-east-1"]["applied_config_sha256"] == pub["sha256"]
    # a region's key may not read the operator's views
    assert c.get("/api/v1/config", headers=EAST).status_code in (401, 403)


def test_a_forked_hash_is_behind_even_at_the_same_version(env):
    c = env["c"]
    c.put("/api/v1/config", json={"sections": SECTIONS}, headers=ADMIN)
    beat(c, "us-east-1", EAST, applied_config_version=1, applied_config_sha256="f" * 64)
    assert c.get("/api/v1/config", headers=ADMIN).json()["regions"]["behind"] == ["us-east-1"]


def test_regions_carry_heartbeat_age_and_launch_p95(env):
    c, clock = env["c"], env["clock"]
    beat(c, "us-east-1", EAST, launch_health={"ok": True, "failures_recent": 2, "p95_launch_s": 95.5})
    clock.t += 30
    r = c.get("/api/v1/regions/us-east-1", headers=ADMIN).json()
    assert (r["heartbeat_age_s"], r["launch_p95_s"], r["launch_failures"]) == (30.0, 95.5, 2)
    assert c.get("/api/v1/regions/eu-west-1", headers=ADMIN).json()["heartbeat_age_s"] is None
    bad = {"launch_health": {"p95_launch_s": -1}}
    assert c.post("/api/v1/regions/us-east-1/heartbeat", json=bad, headers=EAST).status_code == 422


# -- metrics -----------------------------------------------------------------------------------------
def samples(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_per_region(env):
    c, clock = env["c"], env["clock"]
    c.put("/api/v1/config", json={"sections": SECTIONS}, headers=ADMIN)
    beat(c, "us-east-1", EAST, queue_depth=7, applied_config_version=1, launch_health={"p95_launch_s": 420})
    c.post("/api/v1/regions/us-west-2/state", json={"state": "draining"}, headers=ADMIN)
    clock.t += 12
    r = c.get("/metrics")  # no key: like a region's /metrics, nothing of a tenant's is in it
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = samples(r.text)
    assert s['orion_region_state{region="us-east-1",state="active"}'] == 1
    assert s['orion_region_state{region="us-west-2",state="draining"}'] == 1
    assert s['orion_region_state{region="us-west-2",state="active"}'] == 0
    assert s['orion_region_free_gpus{region="us-east-1",gpu_type="A100"}'] == 4
    assert s['orion_region_queue_depth{region="us-east-1"}'] == 7
    assert s['orion_region_applied_config_version{region="us-east-1"}'] == 1
    assert s['orion_region_config_drift{region="us-east-1"}'] == 0
    assert s['orion_region_config_drift{region="eu-west-1"}'] == 1
    assert s['orion_region_heartbeat_age_seconds{region="us-east-1"}'] == 12
    assert s['orion_region_launch_p95_seconds{region="us-east-1"}'] == 420
    assert 'orion_region_launch_p95_seconds{region="us-west-2"}' not in s  # never reported
    assert s["orion_config_wanted_version"] == 1 and s["orion_regions"] == 3
    for name in METRICS:
        assert f"# TYPE {name} gauge" in r.text


def test_a_lost_region_shows_in_metrics(env):
    c, clock, plane = env["c"], env["clock"], env["plane"]
    beat(c, "us-east-1", EAST)
    clock.t += 200
    plane.tick()
    s = samples(c.get("/metrics").text)
    assert s['orion_region_lost{region="us-east-1"}'] == 1
    assert s['orion_region_state{region="us-east-1",state="inactive"}'] == 1


def test_alert_rules_are_valid_and_name_only_control_plane_metrics():
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    slo = next(r for r in rules if r["alert"] == "OrionRegionLaunchSloBreached")
    assert "orion_region_launch_p95_seconds" in slo["expr"] and "> 300" in slo["expr"] and slo["for"] == "10m"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"(\d+[smhdwy])+", str(rule["for"]))
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert set(re.findall(r"\borion_[a-z0-9_]+", rule["expr"])) <= set(METRICS)


# -- audit -------------------------------------------------------------------------------------------
def change(seq, wid, status, gen=None):
    return {"seq": seq, "workload_id": wid, "status": status, "at": 1000.0 + seq, "generation": gen}


def test_audit_aggregates_regions_status_changes_with_their_region(env):
    c = env["c"]
    east = [change(1, "w1", "running"), change(2, "w1", "completed")]
    assert c.post("/api/v1/regions/us-east-1/status", json={"changes": east}, headers=EAST).status_code == 200
    # a resend is a no-op, in the audit as well
    c.post("/api/v1/regions/us-east-1/status", json={"changes": east}, headers=EAST)
    c.post("/api/v1/regions/us-west-2/status", json={"changes": [change(1, "w2", "failed")]}, headers=WEST)
    c.post("/api/v1/regions/us-west-2/state", json={"state": "draining"}, headers=ADMIN)
    items = c.get("/api/v1/audit", headers=ADMIN).json()["items"]
    status = [(i["region"], i["target"], i["details"]["status"]) for i in items if i["action"] == "status"]
    assert status == [
        ("us-west-2", "w2", "failed"),
        ("us-east-1", "w1", "completed"),
        ("us-east-1", "w1", "running"),
    ]
    assert any(i["action"] == "region_state" and i["region"] == "us-west-2" for i in items)
    east_only = c.get("/api/v1/audit?region=us-east-1", headers=ADMIN).json()["items"]
    assert {i["region"] for i in east_only} == {"us-east-1"} and len(east_only) == 2
    page = c.get("/api/v1/audit?limit=1", headers=ADMIN).json()
    nxt = c.get(f"/api/v1/audit?limit=1&cursor={page['next_cursor']}", headers=ADMIN).json()
    assert nxt["items"][0]["id"] < page["items"][0]["id"]
    assert c.get("/api/v1/audit?workload_id=w2", headers=ADMIN).json()["items"][0]["target"] == "w2"
    assert c.get("/api/v1/audit", headers=EAST).status_code in (401, 403)
    assert c.get("/api/v1/audit?region=Bad_Name", headers=ADMIN).status_code == 422


def test_a_stale_generation_is_audited_apart(env):
    c, plane = env["c"], env["plane"]
    beat(c, "us-east-1", EAST)
    beat(c, "us-west-2", WEST)
    run = {"run_id": "r1", "tenant_id": "acme", "cpus": 1}
    first = c.post("/api/v1/dispatch", json=run, headers=ADMIN).json()
    refused = {"accepted": False, "kind": "refused"}
    assert c.post("/api/v1/dispatch/r1/outcome", json=refused, headers=ADMIN).status_code == 200
    second = c.post("/api/v1/dispatch", json=run, headers=ADMIN).json()
    assert second["generation"] == first["generation"] + 1 == plane.assignments["r1"].generation
    old = change(1, "r1", "running", gen=first["generation"])
    r = c.post(f"/api/v1/regions/{first['region']}/status", json={"changes": [old]}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["stale"], r.text
    items = c.get(f"/api/v1/audit?region={first['region']}", headers=ADMIN).json()["items"]
    assert [(i["action"], i["details"]["generation"]) for i in items] == [
        ("status_stale", first["generation"])
    ]


# -- SDK -----------------------------------------------------------------------------------------------
def test_sdk_against_the_control_plane(env):
    client = OrionClient("http://cp", "admin-key", transport=env["c"]._transport)
    assert [r["name"] for r in client.regions()] == ["eu-west-1", "us-east-1", "us-west-2"]
    assert client.drain_region("us-east-1")["state"] == "draining"
    assert client.region("us-east-1")["operator_state"] == "draining"
    assert client.activate_region("us-east-1")["state"] == "active"
    assert client.publish_config(SECTIONS)["version"] == 1
    assert client.publish_config(SECTIONS)["version"] == 1  # nothing changed: no new version
    assert client.config()["body"]["prices"] == {"gpu:A100": 3}
    with pytest.raises(NotFound):
        client.region("nowhere")


def test_async_sdk_against_the_control_plane(env):
    async def go():
        transport = httpx.ASGITransport(app=env["app"])
        async with AsyncOrionClient("http://cp", "admin-key", transport=transport) as client:
            assert len(await client.regions()) == 3
            assert (await client.drain_region("us-west-2"))["state"] == "draining"
            assert (await client.activate_region("us-west-2"))["state"] == "active"
            assert (await client.region("us-west-2"))["name"] == "us-west-2"
            assert (await client.publish_config(SECTIONS))["version"] == 1
            assert (await client.config())["version"] == 1

    asyncio.run(go())


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.fixture
def cli(env, monkeypatch):
    monkeypatch.setattr(
        regions_cli, "make_client", lambda url, key: OrionClient(url, key, transport=env["c"]._transport)
    )
    monkeypatch.setenv("ORION_CONTROL_PLANE_URL", "http://cp")
    monkeypatch.setenv("ORION_CONTROL_PLANE_KEY", "admin-key")
    return env


def test_cli_regions_table(cli, capsys):
    c = cli["c"]
    c.put("/api/v1/config", json={"sections": SECTIONS}, headers=ADMIN)
    beat(c, "us-east-1", EAST, queue_depth=3, applied_config_version=1, launch_health={"p95_launch_s": 61})
    assert main(["regions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATE",
        "LOST",
        "HEARTBEAT",
        "FREE",
        "GPUS",
        "QUEUE",
        "CONFIG",
        "LAUNCH",
        "P95",
    ]
    east = next(line for line in lines if line.startswith("us-east-1")).split()
    assert east == ["us-east-1", "active", "no", "0s", "A100:4", "3", "1/1", "61s"]
    west = next(line for line in lines if line.startswith("us-west-2")).split()
    assert west[3] == "never" and west[6:8] == ["0/1", "drift"]
    assert main(["regions", "-o", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_cli_drain_activate_and_show(cli, capsys):
    assert main(["region", "drain", "us-east-1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "draining"
    assert main(["region", "activate", "us-east-1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "active"
    assert main(["region", "show", "nowhere"]) == 2
    assert "no region" in capsys.readouterr().err


def test_cli_config_publish_from_an_orion_yaml_and_show(cli, capsys, tmp_path):
    f = tmp_path / "orion.yaml"
    f.write_text(
        "orion:\n  tenants:\n    - {id: acme, weight: 3, api_key_env: ORION_KEY_ACME}\n"
        "  worker_pools:\n    - {name: cpu, resources: {CPU: 4}, max_size: 2}\n"
    )
    assert main(["config", "publish", str(f), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(["config", "show", "--body", "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["body"]["tenants"] == {"acme": {"weight": 3}}  # api_key_env is one machine's
    assert shown["body"]["pools"] == {"cpu": {"resources": {"CPU": 4}, "max_size": 2}}
    assert main(["config", "show", "-o", "json"]) == 0
    assert "body" not in json.loads(capsys.readouterr().out)
    bad = tmp_path / "bad.yaml"
    bad.write_text("colours: {}\n")
    assert main(["config", "publish", str(bad)]) == 1
    assert "colours: not a config section" in capsys.readouterr().err


def test_cli_needs_the_control_planes_url_and_key(monkeypatch, capsys):
    monkeypatch.delenv("ORION_CONTROL_PLANE_URL", raising=False)
    monkeypatch.delenv("ORION_CONTROL_PLANE_KEY", raising=False)
    monkeypatch.setenv("ORION_API_KEY", "the-regions-own-key")  # never sent to a control plane
    assert main(["regions"]) == 1
    assert "ORION_CONTROL_PLANE_URL" in capsys.readouterr().err
    assert main(["regions", "--control-plane", "http://cp"]) == 1
    assert "ORION_CONTROL_PLANE_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    "doc, sections",
    [
        ({"tenants": [{"id": "a", "weight": 2}]}, {"tenants": {"a": {"weight": 2}}}),
        ({"pools": [{"name": "p", "max_size": 1}]}, {"pools": {"p": {"max_size": 1}}}),
        ({"prices": {"cpu": 0.1}}, {"prices": {"cpu": 0.1}}),
        (
            {"orion": {"policy": {"reserve_after_s": 5}}},
            {"tenants": {}, "pools": {}, "policies": {"reserve_after_s": 5}},
        ),
    ],
)
def test_sections_from_a_file(doc, sections):
    assert regions_cli.sections_from_document(doc) == sections


@pytest.mark.parametrize("doc", [[], {"prices": [{"name": "x"}]}, {"tenants": [{"weight": 1}]}, {"nope": {}}])
def test_bad_files_are_refused(doc):
    with pytest.raises(ValueError):
        regions_cli.sections_from_document(doc)
