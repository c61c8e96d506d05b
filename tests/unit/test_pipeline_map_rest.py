"""Map (fan-out) nodes through the real scheduler over the in-memory ``FakeRuntime`` (each item's
function run in-process), and the REST route, SDK and CLI of the per-item listing with tenancy.
No Ray, no sleeps."""

from __future__ import annotations

import asyncio
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
from orion_ray.errors import NotFound, ValidationError
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_pipeline_scheduler import BIG, Clock, make, on_loop, until_done

FN = "tests.pipelines.nodes_map"
ACME = {"Authorization": "Bearer acme-key"}
BOB = {"Authorization": "Bearer bob-key"}
ADMIN = {"Authorization": "Bearer admin-key"}


def fan_out(n=8, concurrency=3, **runtime):
    """shards (a list of n) → square (a map over it) → total (the fan-in)."""
    return {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "fan",
            "nodes": [
                {"id": "shards", "kind": "python_task", "params": {"n": n}, "outs": ["shards"]},
                {
                    "id": "square",
                    "kind": "map",
                    "params": {"offset": 1},
                    "ins": ["shards"],
                    "outs": ["value"],
                    "map": {"with_param": "shards", "concurrency": concurrency},
                },
                {"id": "total", "kind": "python_task", "ins": ["value"], "outs": ["sum"]},
            ],
            "edges": [{"from": "shards", "to": "square"}, {"from": "square", "to": "total"}],
        },
        "refs": {"shards": f"{FN}:shards", "square": f"{FN}:square", "total": f"{FN}:total"},
        "runtime_params": runtime,
    }


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "orion.db")


@on_loop
async def test_a_map_runs_through_the_scheduler_with_its_fan_in(db):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    await s.pipeline_submit(fan_out(8, 3, submission_id="f1"), "default", "admin")
    done = await until_done(s, rt, clock, "f1", limit=40)
    assert done["state"] == "succeeded", done
    total = s.store.get(done["nodes"][2]["workload_id"])
    assert total.result == {"sum": sum(i * i + 1 for i in range(8)), "missing": 0}
    sq = done["nodes"][1]
    assert (sq["total_tasks"], sq["completed_tasks"], sq["failed_tasks"], sq["running_tasks"]) == (8, 8, 0, 0)
    assert done["progress"]["total_tasks"] == 10 and done["progress"]["completed_tasks"] == 10
    item_runs = [k for k, r in rt.runs.items() if r.launch["function"].endswith(":square")]
    assert len(item_runs) == 8  # each item ran once
    page = await s.pipeline_items("f1", "square", -1, 100, None, None)
    assert [i["index"] for i in page["items"]] == list(range(8))
    assert all(i["state"] == "succeeded" and i["attempt"] == 1 for i in page["items"])


@on_loop
async def test_cancel_through_the_scheduler_stops_the_items_in_flight(db):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    body = fan_out(8, 3, submission_id="f2")
    body["dag_spec"]["nodes"] = body["dag_spec"]["nodes"][1:2]  # the map alone, over a literal list
    body["dag_spec"]["nodes"][0].update(ins=[], map={"with_items": list(range(8)), "concurrency": 3})
    body["dag_spec"]["edges"] = []
    body["refs"] = {"square": f"{FN}:square"}
    await s.pipeline_submit(body, "default", "admin")
    for _ in range(2):
        s.pipelines.tick(True)
        s.ingest.pull()
        s.run_cycle()
        for _ in range(50):
            await asyncio.sleep(0)
    assert len(rt.live_runs()) == 3  # three items run, five wait
    assert (await s.pipeline_cancel("f2", None, "admin"))["state"] == "cancelling"
    for _ in range(4):
        clock.t += 1
        s.pipelines.tick(True)
        for _ in range(50):
            await asyncio.sleep(0)
    got = await s.pipeline_status("f2", None)
    assert got["state"] == "cancelled", got
    assert got["nodes"][0]["cancelled_tasks"] == 8 and got["nodes"][0]["running_tasks"] == 0
    page = await s.pipeline_items("f2", "square", -1, 100, None, None)
    started = [i for i in page["items"] if i["workload_id"]]
    assert len(started) == 3 and all(
        s.store.get(i["workload_id"]).status == Status.CANCELLED for i in started
    )
    assert len(rt.runs) == 3  # nothing else started


# -- REST, SDK, CLI ------------------------------------------------------------------------------------
@pytest.fixture(params=["scheduler", "store"])
def api(db, request):
    """Every REST test twice: through the scheduler, and from the store as a Serve replica reads."""
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


def started(client, sched, sid="r1"):
    """A run whose map node has launched its first items (upstream completed by hand)."""
    assert (
        client.post("/api/orch/submit", json=fan_out(8, 3, submission_id=sid), headers=ACME).status_code
        == 202
    )
    sched.pipelines.tick(True)
    st = client.get(f"/api/orch/status/{sid}", headers=ACME).json()
    w = sched.store.get(st["nodes"][0]["workload_id"])
    w.status, w.result = Status.COMPLETED, {"shards": list(range(8))}
    sched.store.update(w, ("completed", 0.0, ""))
    sched.pipelines.tick(True)


def test_rest_status_has_the_counters_and_items_are_paged(api):
    client, sched = api
    started(client, sched)
    st = client.get("/api/orch/status/r1", headers=ACME).json()
    sq = st["nodes"][1]
    assert (sq["total_tasks"], sq["running_tasks"], sq["pending_tasks"]) == (8, 3, 5)
    assert st["progress"]["total_tasks"] == 10 and st["progress"]["completed_tasks"] == 1
    r = client.get("/api/orch/status/r1/items", params={"node": "square", "limit": 2}, headers=ACME)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [i["index"] for i in page["items"]] == [0, 1] and page["next_after"] == 1
    assert page["items"][0]["state"] == "submitted" and page["items"][0]["workload_id"].startswith("wl-")
    nxt = client.get("/api/orch/status/r1/items?node=square&after=1&limit=1000", headers=ACME).json()
    assert [i["index"] for i in nxt["items"]] == list(range(2, 8)) and nxt["next_after"] is None
    pending = client.get("/api/orch/status/r1/items?node=square&state=pending", headers=ACME).json()
    assert [i["index"] for i in pending["items"]] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    "query,field",
    [
        ("node=square&limit=1001", "limit"),
        ("node=square&limit=0", "limit"),
        ("node=square&after=-5", "after"),
        ("node=square&state=odd", "state"),
        ("node=total", "node"),
        ("node=nothing", "node"),
        ("", "node"),
    ],
)
def test_rest_bad_listing_queries_are_422s_naming_the_field(api, query, field):
    client, sched = api
    started(client, sched)
    r = client.get(f"/api/orch/status/r1/items?{query}", headers=ACME)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["details"][0]["field"]


def test_rest_listing_is_tenant_scoped(api):
    client, sched = api
    started(client, sched)
    r = client.get("/api/orch/status/r1/items?node=square", headers=BOB)
    assert r.status_code == 404 and "wl-" not in r.text
    assert client.get("/api/orch/status/r1/items?node=square", headers=ADMIN).status_code == 200
    assert client.get("/api/orch/status/nothing/items?node=square", headers=ACME).status_code == 404


def test_the_sdks_list_items(api):
    client, sched = api
    started(client, sched)
    sdk = OrionClient("http://testserver", "acme-key", transport=client._transport)
    page = sdk.pipeline_items("r1", "square", limit=2)
    assert [i["index"] for i in page["items"]] == [0, 1] and page["total_tasks"] == 8
    assert (
        sdk.pipeline_items("r1", "square", after=page["next_after"], state="submitted")["items"][0]["index"]
        == 2
    )
    with pytest.raises(NotFound):
        sdk.pipeline_items("nothing", "square")
    with pytest.raises(ValidationError):
        sdk.pipeline_items("r1", "total")

    async def scenario():
        transport = httpx.ASGITransport(app=client.app)
        async with AsyncOrionClient("http://testserver", "acme-key", transport=transport) as a:
            got = await a.pipeline_items("r1", "square", limit=3)
            assert [i["index"] for i in got["items"]] == [0, 1, 2]

    asyncio.run(scenario())


def test_the_cli_shows_counters_and_lists_items(api, monkeypatch, capsys):
    from orion_ray import cli
    from orion_ray.pipelines import cli as pipeline_cli

    client, sched = api
    started(client, sched)
    monkeypatch.setattr(
        pipeline_cli,
        "_client",
        lambda: OrionClient("http://testserver", "acme-key", transport=client._transport),
    )
    assert cli.main(["pipeline", "status", "r1"]) == 0
    out = capsys.readouterr().out
    assert "r1  running  tasks 1/10 done, 0 failed, 3 running" in out
    assert "square" in out and "tasks 0/8 done" in out
    assert cli.main(["pipeline", "status", "r1", "--items", "square", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "r1  square  submitted  tasks 0/8 done" in out and "--after 1" in out
    assert cli.main(["pipeline", "status", "r1", "--items", "square", "--after", "6", "-o", "json"]) == 0
    assert [i["index"] for i in json.loads(capsys.readouterr().out)["items"]] == [7]
    assert cli.main(["pipeline", "status", "r1", "--items", "total"]) == 2
    assert "node" in capsys.readouterr().err
