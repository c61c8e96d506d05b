"""Pipelines through the real scheduler (its loop's reconcile, its intake, its cycle) over the
in-memory ``FakeRuntime``, which here runs each node's function itself, in-process, with the
keyword arguments Orion launched it with: the issue's three nodes pass real values end to end; a
scheduler restart mid-run loses nothing and runs nothing twice; cancel; and the REST routes
(``/api/orch/...``) with tenancy. No Ray, no sleeps."""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os

import httpx
import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.async_client import AsyncOrionClient
from orion_ray.client import OrionClient
from orion_ray.config import PolicyConfig, SchedulerConfig
from orion_ray.errors import NotFound, ValidationError
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.recovery import recover
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_pipeline_spec import ISSUE_YAML

NODES = ("fetch_data", "compute_features", "train_model")
REFS = {n: f"tests.pipelines.nodes:{n}" for n in NODES}
ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
BOB = {"Authorization": "Bearer bob-key"}
# the issue's spec asks for 4-8 CPUs, 16-32 GiB and a GPU per node: one fake node holds each
BIG = [fake_node("n1", gpus=4, cpus=16)]


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


async def just_yield(_s: float) -> None:
    await asyncio.sleep(0)


def on_loop(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "orion.db")


def make(db, rt, clock):
    return Scheduler(SQLiteStore(db), rt, SchedulerConfig(), PolicyConfig(), clock=clock, sleep=just_yield)


def body(**runtime):
    return {"dag_spec": ISSUE_YAML, "refs": REFS, "runtime_params": runtime}


def execute(rt: FakeRuntime, key: str) -> None:
    """Run a launched task's function as a worker would (env vars from its runtime_env)."""
    run = rt.runs[key]
    module, _, name = run.launch["function"].partition(":")
    env = (run.launch["runtime_env"] or {}).get("env_vars", {})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = getattr(importlib.import_module(module), name)(*run.launch["args"], **run.launch["kwargs"])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    rt.complete(run.workload_id, result=result)


async def step(s: Scheduler, rt: FakeRuntime, clock: Clock) -> None:
    """One loop turn by hand: reconcile, take new rows in, one cycle, let the drivers run, and
    execute whatever runs."""
    clock.t += 1
    s.pipelines.tick(True)
    s.ingest.pull()
    s.run_cycle()
    for _ in range(50):
        await asyncio.sleep(0)
    for key in rt.live_runs():
        execute(rt, key)
    for _ in range(50):
        await asyncio.sleep(0)


async def until_done(s, rt, clock, sid, tenant=None, limit=20):
    for _ in range(limit):
        got = await s.pipeline_status(sid, tenant)
        if got["state"] not in ("running", "cancelling"):
            return got
        await step(s, rt, clock)
    raise AssertionError(f"run {sid} never finished: {got}")


@on_loop
async def test_the_issues_pipeline_runs_end_to_end_passing_values(db):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    ack = await s.pipeline_submit(body(submission_id="bt-1", labels={"team": "xs"}), "default", "admin")
    assert ack == {"submission_id": "bt-1", "state": "running"}
    done = await until_done(s, rt, clock, "bt-1")
    assert done["state"] == "succeeded", done
    assert [n["state"] for n in done["nodes"]] == ["succeeded"] * 3
    results = {n["node_id"]: s.store.get(n["workload_id"]).result for n in done["nodes"]}
    assert results["compute_features"]["feature_table"] == "features[xs_v2] of mem://dataset?rows=3"
    assert results["train_model"] == {
        "model_uri": "mem://model/bilstm/30",
        "metrics_json": {"epochs": 30, "trained_on": "features[xs_v2] of mem://dataset?rows=3"},
    }
    train = s.store.get(done["nodes"][2]["workload_id"])
    assert train.spec.resources.gpu == 1 and train.spec.resources.cpu == 8  # the node's own resources
    assert train.spec.metadata.request_id == "bt-1/train_model/1"
    assert [k.split(":")[1] for k in rt.runs] == ["1", "1", "1"]  # each node ran once


@on_loop
async def test_a_scheduler_restart_mid_run_loses_nothing_and_runs_nothing_twice(db):
    rt, clock = FakeRuntime(BIG), Clock()
    first = make(db, rt, clock)
    await first.pipeline_submit(body(submission_id="bt-2"), "default", "admin")
    first.pipelines.tick(True)
    first.ingest.pull()
    first.run_cycle()
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(rt.live_runs()) == 1  # fetch_data is running
    await first.stop()  # the scheduler dies here; its run goes on in Ray
    second = make(db, rt, clock)
    await recover(
        store=second.store,
        runtime=rt,
        book=second.book,
        driver=second.driver,
        observe=second.observe,
        clock=clock,
    )
    done = await until_done(second, rt, clock, "bt-2")
    assert done["state"] == "succeeded"
    assert len(rt.runs) == 3 and len(second.store.list(limit=100)) == 3  # one workload, one run per node


@on_loop
async def test_cancel_stops_the_running_node(db):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    await s.pipeline_submit(body(submission_id="bt-3"), "default", "admin")
    s.pipelines.tick(True)
    s.ingest.pull()
    s.run_cycle()
    for _ in range(50):
        await asyncio.sleep(0)
    got = await s.pipeline_cancel("bt-3", None, "admin")
    assert got["state"] == "cancelling"
    for _ in range(3):
        s.pipelines.tick(True)
        for _ in range(50):
            await asyncio.sleep(0)
    got = await s.pipeline_status("bt-3", None)
    assert got["state"] == "cancelled" and {n["state"] for n in got["nodes"]} == {"cancelled"}
    assert s.store.get(got["nodes"][0]["workload_id"]).status == Status.CANCELLED


# -- REST ---------------------------------------------------------------------------------------------
@pytest.fixture(params=["scheduler", "store"])
def api(db, request):
    """Every REST test twice: reads through the scheduler, and (as a Serve replica does) from the
    store."""
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


def test_rest_submit_status_cancel(api):
    client, sched = api
    r = client.post("/api/orch/submit", json=body(submission_id="r1"), headers=ACME)
    assert r.status_code == 202 and r.json() == {"submission_id": "r1", "state": "running"}
    again = client.post("/api/orch/submit", json=body(submission_id="r1"), headers=ACME)
    assert again.status_code == 202 and again.json()["submission_id"] == "r1"  # idempotent
    changed = client.post("/api/orch/submit", json=body(submission_id="r1", labels={"a": "b"}), headers=ACME)
    assert changed.status_code == 409
    sched.pipelines.tick(True)
    st = client.get("/api/orch/status/r1", headers=ACME)
    assert st.status_code == 200
    got = st.json()
    assert got["pipeline_id"] == "bt_xs_bilstm_v1" and got["state"] == "running"
    assert [(n["node_id"], n["state"], n["attempt"]) for n in got["nodes"]] == [
        ("fetch_data", "submitted", 1),
        ("compute_features", "pending", 0),
        ("train_model", "pending", 0),
    ]
    assert got["nodes"][0]["workload_id"].startswith("wl-")
    c = client.post("/api/orch/cancel/r1", headers=ACME)
    assert c.status_code == 202 and c.json()["state"] == "cancelling"


def test_rest_tenancy(api):
    client, _ = api
    sid = client.post("/api/orch/submit", json=body(), headers=ACME).json()["submission_id"]
    assert sid.startswith("pl-")  # generated when the runtime params give none
    for path in (f"/api/orch/status/{sid}",):
        r = client.get(path, headers=BOB)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.post(f"/api/orch/cancel/{sid}", headers=BOB).status_code == 404
    assert client.get(f"/api/orch/status/{sid}", headers=ADMIN).status_code == 200
    other = client.post("/api/orch/submit?tenant_id=bob", json=body(), headers=ACME)
    assert other.status_code == 403
    assert client.get("/api/orch/status/nothing-here", headers=ACME).status_code == 404
    assert client.post("/api/orch/submit", json=body()).status_code == 401


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"dag_spec": ISSUE_YAML}, "dag_spec.nodes.fetch_data.params.function"),  # no code named
        (
            {"dag_spec": ISSUE_YAML.replace("ray_job", "spark_sql"), "refs": REFS},
            "dag_spec.nodes.train_model.kind",
        ),
        ({"dag_spec": "nodes: ["}, "dag_spec"),
        (
            {"dag_spec": ISSUE_YAML, "refs": {**REFS, "fetch_data": "os:system"}},
            "dag_spec.nodes.fetch_data.function",
        ),
        (
            {"dag_spec": ISSUE_YAML, "refs": REFS, "runtime_params": {"env": {"LD_PRELOAD": "x"}}},
            "dag_spec.nodes.fetch_data.runtime_env.env_vars.LD_PRELOAD",
        ),
        ({"dag_spec": ISSUE_YAML, "refs": REFS, "extra": 1}, "extra"),
    ],
)
def test_rest_refusals_are_422s_naming_the_field(api, bad, field):
    client, _ = api
    r = client.post("/api/orch/submit", json=bad, headers=ACME)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["details"][0]["field"] == field, err


def test_the_sdk_submits_reads_and_cancels_runs(api):
    client, _ = api
    sdk = OrionClient("http://testserver", "acme-key", transport=client._transport)
    ack = sdk.submit_pipeline(ISSUE_YAML, {"submission_id": "sdk-1"}, REFS)
    assert ack == {"submission_id": "sdk-1", "state": "running"}
    assert sdk.pipeline_status("sdk-1")["pipeline_id"] == "bt_xs_bilstm_v1"
    assert sdk.cancel_pipeline("sdk-1")["state"] == "cancelling"
    with pytest.raises(NotFound):
        sdk.pipeline_status("nothing")
    with pytest.raises(ValidationError) as info:
        sdk.submit_pipeline(ISSUE_YAML)  # no code named
    assert info.value.details[0]["field"] == "dag_spec.nodes.fetch_data.params.function"


def test_the_async_sdk_has_the_same_calls(api):
    client, _ = api

    async def scenario():
        transport = httpx.ASGITransport(app=client.app)
        async with AsyncOrionClient("http://testserver", "acme-key", transport=transport) as sdk:
            ack = await sdk.submit_pipeline(ISSUE_YAML, {"submission_id": "sdk-2"}, REFS)
            assert (await sdk.pipeline_status(ack["submission_id"]))["state"] == "running"
            assert (await sdk.cancel_pipeline("sdk-2"))["state"] == "cancelling"

    asyncio.run(scenario())


# -- CLI ----------------------------------------------------------------------------------------------
def test_the_cli_submits_a_spec_file_verbatim_with_refs_and_reads_the_run(api, tmp_path, monkeypatch, capsys):
    from orion_ray import cli
    from orion_ray.pipelines import cli as pipeline_cli

    client, _ = api
    monkeypatch.setattr(
        pipeline_cli,
        "_client",
        lambda: OrionClient("http://testserver", "acme-key", transport=client._transport),
    )
    spec = tmp_path / "bt.yaml"
    spec.write_text(ISSUE_YAML)
    refs = [arg for n in NODES for arg in ("--ref", f"{n}=tests.pipelines.nodes:{n}")]
    assert cli.main(["pipeline", "submit", str(spec), "--submission-id", "cli-1", *refs, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"submission_id": "cli-1", "state": "running"}
    assert cli.main(["pipeline", "status", "cli-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cli-1  running") and "train_model" in out
    assert cli.main(["pipeline", "cancel", "cli-1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "cancelling"
    assert cli.main(["pipeline", "submit", str(spec)]) == 2  # no code named: the 422 in one line
    assert "dag_spec.nodes.fetch_data.params.function" in capsys.readouterr().err


def test_a_submission_file_keeps_its_own_runtime_params_and_refs():
    from orion_ray.pipelines.cli import body_of

    text = json.dumps({"dag_spec": {"version": 1}, "runtime_params": {"ttl_days": 3}, "refs": {"a": "m:f"}})
    body = body_of(text, refs=["b=m:g"], submission_id="s")
    assert body["runtime_params"] == {"ttl_days": 3, "submission_id": "s"}
    assert body["refs"] == {"a": "m:f", "b": "m:g"} and body["dag_spec"] == {"version": 1}
    with pytest.raises(ValueError):
        body_of("x: 1", refs=["no-equals"], submission_id=None)
