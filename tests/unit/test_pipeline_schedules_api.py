"""The schedule, trigger and event routes over the in-process app (FastAPI TestClient), reads both
through the scheduler and from the store (as a Serve replica reads): status codes, tenancy (a
tenant sees and changes its own only, an admin all), 4xx naming the field, and the SDK and CLI
calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.async_client import AsyncOrionClient
from orion_ray.client import OrionClient
from orion_ray.config import SchedulerConfig
from orion_ray.errors import Conflict, NotFound, ValidationError
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

from .test_pipeline_scheduler import ACME, ADMIN, BOB, REFS
from .test_pipeline_spec import ISSUE_YAML

SUB = {"dag_spec": ISSUE_YAML, "refs": REFS}
SCHED = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris", "submission": SUB}
TRIG = {
    "name": "on-ready",
    "event_type": "dataset.ready",
    "match_labels": {"dataset": "xs"},
    "submission": SUB,
}


@pytest.fixture(params=["scheduler", "store"])
def api(tmp_path, request):
    db = str(tmp_path / "orion.db")
    store = SQLiteStore(db)
    sched = Scheduler(store, runtime=FakeRuntime(), config=SchedulerConfig())
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme", hash_key("bob-key"): "bob"})
    access = StoreAccess(db, max_queue_size=10_000) if request.param == "store" else None
    client = TestClient(build_app(keys, backend=sched, access=access))
    yield client, sched
    client.close()
    if access is not None:
        access.close()
    store.close()


def test_schedule_routes_create_read_pause_resume_delete(api):
    client, _ = api
    r = client.post("/api/orch/schedules", json=SCHED, headers=ACME)
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["name"] == "nightly" and got["tenant_id"] == "acme" and got["concurrency_policy"] == "allow"
    assert got["catch_up"] is False and got["starting_deadline_seconds"] is None and got["next_slot"]
    assert client.post("/api/orch/schedules", json=SCHED, headers=ACME).status_code == 200  # the same again
    changed = client.post("/api/orch/schedules", json={**SCHED, "cron": "0 3 * * *"}, headers=ACME)
    assert changed.status_code == 409
    listed = client.get("/api/orch/schedules", headers=ACME).json()
    assert [s["name"] for s in listed["items"]] == ["nightly"] and listed["next_cursor"] is None
    assert client.get("/api/orch/schedules/nightly", headers=ACME).json()["cron"] == "0 2 * * *"
    assert client.post("/api/orch/schedules/nightly/pause", headers=ACME).json()["paused"] is True
    assert client.get("/api/orch/schedules/nightly", headers=ACME).json()["paused"] is True
    assert client.post("/api/orch/schedules/nightly/resume", headers=ACME).json()["paused"] is False
    assert client.delete("/api/orch/schedules/nightly", headers=ACME).json()["deleted"] is True
    assert client.get("/api/orch/schedules/nightly", headers=ACME).status_code == 404


def test_a_tenant_sees_and_manages_its_own_schedules_only_and_the_admin_all(api):
    client, _ = api
    assert client.post("/api/orch/schedules", json=SCHED, headers=ACME).status_code == 201
    assert client.post("/api/orch/triggers", json=TRIG, headers=ACME).status_code == 201
    for method, path in [
        ("GET", "/api/orch/schedules/nightly"),
        ("POST", "/api/orch/schedules/nightly/pause"),
        ("POST", "/api/orch/schedules/nightly/resume"),
        ("DELETE", "/api/orch/schedules/nightly"),
        ("GET", "/api/orch/triggers/on-ready"),
        ("DELETE", "/api/orch/triggers/on-ready"),
    ]:
        r = client.request(method, path, headers=BOB)
        assert r.status_code == 404 and "acme" not in r.text, (method, path, r.text)
    r = client.post("/api/orch/schedules/nightly/backfill", json={"start": 0, "end": 1}, headers=BOB)
    assert r.status_code == 404
    assert client.get("/api/orch/schedules", headers=BOB).json()["items"] == []
    assert client.get("/api/orch/triggers", headers=BOB).json()["items"] == []
    assert client.get("/api/orch/schedules?tenant_id=acme", headers=BOB).status_code == 403
    assert client.post("/api/orch/schedules?tenant_id=acme", json=SCHED, headers=BOB).status_code == 403
    # bob's event of the same type fires none of acme's triggers
    fired = client.post(
        "/api/orch/events", json={"type": "dataset.ready", "labels": {"dataset": "xs"}}, headers=BOB
    )
    assert fired.status_code == 202 and fired.json()["fired"] == []
    assert [s["tenant_id"] for s in client.get("/api/orch/schedules", headers=ADMIN).json()["items"]] == [
        "acme"
    ]
    assert client.get("/api/orch/schedules/nightly", headers=ADMIN).json()["tenant_id"] == "acme"
    assert client.post("/api/orch/schedules?tenant_id=bob", json=SCHED, headers=ADMIN).status_code == 201
    ambiguous = client.get("/api/orch/schedules/nightly", headers=ADMIN)
    assert ambiguous.status_code == 409 and ambiguous.json()["error"]["details"][0]["field"] == "tenant_id"
    assert client.get("/api/orch/schedules/nightly?tenant_id=bob", headers=ADMIN).json()["tenant_id"] == "bob"
    assert client.get("/api/orch/schedules", headers=BOB).json()["items"][0]["name"] == "nightly"
    assert client.get("/api/orch/schedules").status_code == 401


def test_events_fire_matching_triggers_and_answer_what_fired(api):
    client, _ = api
    assert client.post("/api/orch/triggers", json=TRIG, headers=ACME).status_code == 201
    r = client.post(
        "/api/orch/events", json={"type": "dataset.ready", "labels": {"dataset": "xs"}}, headers=ACME
    )
    assert r.status_code == 202, r.text
    got = r.json()
    sid = f"on-ready-ev{got['event_id']}"
    assert got["fired"] == [{"trigger": "on-ready", "submission_id": sid, "error": None}]
    assert client.get(f"/api/orch/status/{sid}", headers=ACME).status_code == 200
    assert client.get(f"/api/orch/status/{sid}", headers=BOB).status_code == 404
    trig = client.get("/api/orch/triggers/on-ready", headers=ACME).json()
    assert trig["fired"] == 1 and trig["last_run"] == sid and trig["match_labels"] == {"dataset": "xs"}


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/api/orch/schedules", {**SCHED, "cron": "0 25 * * *"}, "cron"),
        ("/api/orch/schedules", {**SCHED, "timezone": "Nowhere/Land"}, "timezone"),
        ("/api/orch/schedules", {**SCHED, "concurrency_policy": "queue"}, "concurrency_policy"),
        ("/api/orch/schedules", {**SCHED, "name": "a/b"}, "name"),
        ("/api/orch/schedules", {**SCHED, "submission": {"dag_spec": "nodes: ["}}, "submission.dag_spec"),
        ("/api/orch/schedules", {k: v for k, v in SCHED.items() if k != "cron"}, "cron"),
        (
            "/api/orch/schedules",
            {**SCHED, "submission": {**SUB, "runtime_params": [1]}},
            "submission.runtime_params",
        ),
        ("/api/orch/schedules", {**SCHED, "submission": [1]}, "submission"),
        ("/api/orch/triggers", {**TRIG, "event_type": ""}, "event_type"),
        ("/api/orch/triggers", {**TRIG, "match_labels": {"k": 3}}, "match_labels.k"),
        ("/api/orch/events", {"type": "workload.completed"}, "type"),
        ("/api/orch/events", {"type": "x", "labels": {"k" * 200: "v"}}, "labels"),
        ("/api/orch/events", {"labels": {}}, "type"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api, path, body, field):
    client, _ = api
    r = client.post(path, json=body, headers=ACME)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == field, r.json()


def test_backfill_route(api):
    client, sched = api
    client.post("/api/orch/schedules", json={**SCHED, "cron": "0 * * * *", "timezone": "UTC"}, headers=ACME)
    now = sched.clock()
    start = (now // 3600 - 3) * 3600
    r = client.post(
        "/api/orch/schedules/nightly/backfill", json={"start": start, "end": start + 7200}, headers=ACME
    )
    assert r.status_code == 202 and r.json()["slots"] == 3 and r.json()["submitted"] == 3
    again = client.post(
        "/api/orch/schedules/nightly/backfill", json={"start": start, "end": start + 7200}, headers=ACME
    )
    assert again.json()["submitted"] == 0
    too_many = client.post(
        "/api/orch/schedules/nightly/backfill",
        json={"start": start - 2000 * 3600, "end": start},
        headers=ACME,
    )
    assert too_many.status_code == 422 and "1000" in too_many.json()["error"]["message"]


def test_the_sdk_and_the_async_sdk_have_the_schedule_calls(api):
    client, _ = api
    sdk = OrionClient("http://testserver", "acme-key", transport=client._transport)
    assert sdk.create_schedule(SCHED)["name"] == "nightly"
    assert [s["name"] for s in sdk.list_schedules()["items"]] == ["nightly"]
    assert sdk.pause_schedule("nightly")["paused"] and not sdk.resume_schedule("nightly")["paused"]
    assert sdk.get_schedule("nightly")["timezone"] == "Europe/Paris"
    assert sdk.create_trigger(TRIG)["event_type"] == "dataset.ready"
    assert sdk.post_event("dataset.ready", {"dataset": "xs"})["fired"][0]["trigger"] == "on-ready"
    assert [t["name"] for t in sdk.list_triggers()["items"]] == ["on-ready"]
    with pytest.raises(Conflict):
        sdk.create_schedule({**SCHED, "cron": "1 2 * * *"})
    with pytest.raises(ValidationError):
        sdk.post_event("pipeline.failed")
    assert sdk.delete_trigger("on-ready")["deleted"] and sdk.delete_schedule("nightly")["deleted"]
    with pytest.raises(NotFound):
        sdk.get_schedule("nightly")

    async def scenario():
        transport = httpx.ASGITransport(app=client.app)
        async with AsyncOrionClient("http://testserver", "bob-key", transport=transport) as a:
            assert (await a.create_schedule(SCHED))["tenant_id"] == "bob"
            assert (await a.pause_schedule("nightly"))["paused"]
            assert (await a.list_schedules())["items"][0]["name"] == "nightly"
            assert (await a.create_trigger(TRIG))["name"] == "on-ready"
            assert (await a.post_event("dataset.ready", {"dataset": "xs"}))["fired"]

    asyncio.run(scenario())


def test_the_cli_creates_lists_pauses_backfills_and_posts_events(api, tmp_path, monkeypatch, capsys):
    from orion_ray import cli
    from orion_ray.pipelines import cli as pipeline_cli

    client, sched = api
    monkeypatch.setattr(
        pipeline_cli,
        "_client",
        lambda: OrionClient("http://testserver", "acme-key", transport=client._transport),
    )
    monkeypatch.setattr(
        "orion_ray.pipelines.schedule_cli._client",
        lambda: OrionClient("http://testserver", "acme-key", transport=client._transport),
    )
    f = tmp_path / "s.yaml"
    f.write_text(json.dumps({**SCHED, "cron": "0 * * * *", "timezone": "UTC"}))
    assert cli.main(["schedule", "create", str(f), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "nightly"
    assert cli.main(["schedule", "list"]) == 0
    assert capsys.readouterr().out.startswith("nightly")
    assert cli.main(["schedule", "pause", "nightly", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["paused"] is True
    assert cli.main(["schedule", "resume", "nightly"]) == 0
    capsys.readouterr()
    start = (sched.clock() // 3600 - 2) * 3600
    assert (
        cli.main(["schedule", "backfill", "nightly", "--start", str(start), "--end", str(start + 3600)]) == 0
    )
    assert "2 slots, 2 new runs" in capsys.readouterr().out
    end = dt.datetime.fromtimestamp(start + 7200, dt.timezone.utc).isoformat()
    assert cli.main(["schedule", "backfill", "nightly", "--start", str(start), "--end", end]) == 0
    assert "3 slots, 1 new runs" in capsys.readouterr().out
    assert cli.main(["schedule", "backfill", "nightly", "--start", "soon", "--end", end]) == 2
    assert "start" in capsys.readouterr().err
    t = tmp_path / "t.yaml"
    t.write_text(json.dumps(TRIG))
    assert cli.main(["trigger", "create", str(t)]) == 0
    capsys.readouterr()
    assert cli.main(["event", "dataset.ready", "--label", "dataset=xs"]) == 0
    assert "on-ready" in capsys.readouterr().out
    assert cli.main(["schedule", "delete", "nightly", "-o", "json"]) == 0
    assert cli.main(["schedule", "get", "nightly"]) != 0
