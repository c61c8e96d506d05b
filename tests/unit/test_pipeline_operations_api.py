"""Pipeline operations through the real scheduler over the in-memory ``FakeRuntime`` (which here
runs each node's function in-process): a failed run retried from its failed node (succeeded
nodes not run again, new idempotency keys), 409s, audit; the REST routes (retry, logs, lineage,
workers) with tenancy, read through the scheduler and from the store; the SDK (``wait_pipeline``)
and the CLI (``retry``, ``logs``); the pipeline metrics. No Ray, no sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
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
from orion_ray.errors import Conflict, NotFound
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

from .test_pipeline_scheduler import ACME, ADMIN, BIG, BOB, Clock, make, on_loop

NODES = ("extract", "validate", "publish")
REFS = {n: f"tests.pipelines.nodes_operations:{n}" for n in NODES}


def spec(gate: str, **slo) -> dict:
    return {
        "version": 1,
        "pipeline_id": "ops",
        "slo": slo,
        "nodes": [
            {"id": "extract", "kind": "python_task", "outs": ["table"]},
            {
                "id": "validate",
                "kind": "python_task",
                "params": {"gate": gate},
                "ins": ["table"],
                "outs": ["checked"],
            },
            {"id": "publish", "kind": "python_task", "ins": ["checked"], "outs": ["report"]},
        ],
        "edges": [{"from": "extract", "to": "validate"}, {"from": "validate", "to": "publish"}],
    }


def body(gate: str, **runtime) -> dict:
    return {"dag_spec": spec(gate), "refs": REFS, "runtime_params": runtime}


def execute(rt: FakeRuntime, key: str) -> None:
    """Run a launched task's function as a worker would: its printed output is its logs, an
    exception its error (``"<Type>: message"``)."""
    run = rt.runs[key]
    module, _, name = run.launch["function"].partition(":")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            result = getattr(importlib.import_module(module), name)(**run.launch["kwargs"])
    except Exception as exc:
        rt.fail(run.workload_id, f"{type(exc).__name__}: {exc}", logs=out.getvalue())
        return
    rt.complete(run.workload_id, result=result, logs=out.getvalue())


async def step(s: Scheduler, rt: FakeRuntime, clock: Clock) -> None:
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


async def until_done(s, rt, clock, sid, limit=30):
    for _ in range(limit):
        got = await s.pipeline_status(sid, None)
        if got["state"] not in ("running", "cancelling"):
            return got
        await step(s, rt, clock)
    raise AssertionError(f"run {sid} never finished: {got}")


@on_loop
async def test_a_failed_run_is_retried_from_its_failed_node(tmp_path):
    db, gate = str(tmp_path / "o.db"), tmp_path / "gate"
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    await s.pipeline_submit(body(str(gate), submission_id="ops-1"), "acme", "acme")
    failed = await until_done(s, rt, clock, "ops-1")
    states = {n["node_id"]: (n["state"], n["user_failures"], n["system_failures"]) for n in failed["nodes"]}
    assert failed["state"] == "failed" and states == {
        "extract": ("succeeded", 0, 0),
        "validate": ("failed", 1, 0),
        "publish": ("skipped", 0, 0),
    }
    with pytest.raises(Conflict):  # a running run is not retried
        await s.pipeline_submit(body(str(gate), submission_id="ops-2"), "acme", "acme")
        await s.pipeline_retry("ops-2", "acme", "acme")
    gate.write_text("ok")  # the cause fixed
    again = await s.pipeline_retry("ops-1", "acme", "acme")
    assert again["state"] == "running" and again["retries"] == 1 and again["error"] is None
    assert [n["state"] for n in again["nodes"]] == ["succeeded", "pending", "pending"]
    done = await until_done(s, rt, clock, "ops-1")
    assert done["state"] == "succeeded", done
    keys = [s.store.get(r.workload_id).spec.metadata.request_id for r in rt.runs.values()]
    assert [k for k in keys if k.startswith("ops-1/")] == [
        "ops-1/extract/1",
        "ops-1/validate/1",
        "ops-1/validate/2",  # a new attempt, a new idempotency key
        "ops-1/publish/1",
    ]  # extract not run again
    validate = {n["node_id"]: n for n in done["nodes"]}["validate"]
    assert (
        validate["attempt"] == 2
        and s.store.get(validate["workload_id"]).spec.metadata.request_id == "ops-1/validate/2"
    )
    assert s.store.get(validate["workload_id"]).result == {"checked": "mem://table?rows=3#ok"}
    with pytest.raises(Conflict):  # a succeeded run has nothing to retry
        await s.pipeline_retry("ops-1", "acme", "acme")
    with pytest.raises(NotFound):  # another tenant's run
        await s.pipeline_retry("ops-1", "bob", "bob")
    audit = [a for a in s.store.audit_log(50) if a["action"] == "pipeline_retry"]
    assert len(audit) == 1 and audit[0]["who"] == "acme"


@on_loop
async def test_logs_lineage_and_metrics_of_a_run(tmp_path):
    db, gate = str(tmp_path / "o.db"), tmp_path / "gate"
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    await s.pipeline_submit(body(str(gate), submission_id="ops-3"), "acme", "acme")
    await until_done(s, rt, clock, "ops-3")
    logs = await s.pipeline_logs("ops-3", "validate", None, "acme")
    assert logs["attempt"] == 1 and logs["status"] == "failed" and "validate: checking" in logs["logs"]
    with pytest.raises(NotFound):
        await s.pipeline_logs("ops-3", "publish", None, "acme")  # skipped: never ran
    gate.write_text("ok")
    await s.pipeline_retry("ops-3", "acme", "acme")
    await until_done(s, rt, clock, "ops-3")
    first = await s.pipeline_logs("ops-3", "validate", 1, "acme")
    second = await s.pipeline_logs("ops-3", "validate", None, "acme")
    assert first["status"] == "failed" and second["attempt"] == 2 and second["status"] == "completed"
    events = (await s.pipeline_lineage("ops-3", "acme"))["events"]
    assert [e["eventType"] for e in events].count("START") == 4 and events[-1]["eventType"] == "COMPLETE"
    s.pipelines.refresh_metrics()
    text = s.metrics.render()
    assert 'orion_pipeline_runs{status="succeeded"} 1.0' in text
    assert 'orion_pipeline_node_retries_total{kind="system"}' not in text  # no system failure here
    assert "orion_pipeline_node_seconds_bucket" in text


# -- REST, SDK, CLI -----------------------------------------------------------------------------------
@pytest.fixture(params=["scheduler", "store"])
def api(tmp_path, request):
    db = str(tmp_path / "o.db")
    store = SQLiteStore(db)
    sched = Scheduler(store, runtime=FakeRuntime(BIG), config=SchedulerConfig())
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme", hash_key("bob-key"): "bob"})
    access = StoreAccess(db, max_queue_size=10_000) if request.param == "store" else None
    client = TestClient(build_app(keys, backend=sched, access=access))
    yield client, sched, tmp_path
    client.close()
    if access is not None:
        access.close()
    store.close()


def run_to_end(client, sched, sid):
    """Drive the scheduler by hand, on the TestClient's loop (where its driver tasks run)."""
    rt = sched.runtime

    async def go():
        for _ in range(30):
            sched.pipelines.tick(True)
            sched.ingest.pull()
            sched.run_cycle()
            for _ in range(50):
                await asyncio.sleep(0)
            for key in rt.live_runs():
                execute(rt, key)
            for _ in range(50):
                await asyncio.sleep(0)
            got = await sched.pipeline_status(sid, None)
            if got["state"] not in ("running", "cancelling"):
                return got
        raise AssertionError(got)

    return client.portal.call(go)


def test_rest_retry_logs_lineage_and_tenancy(api):
    client, sched, tmp = api
    gate = tmp / "gate"
    with client:
        assert (
            client.post(
                "/api/orch/submit", json=body(str(gate), submission_id="r1"), headers=ACME
            ).status_code
            == 202
        )
        assert client.post("/api/orch/retry/r1", headers=ACME).status_code == 409  # running
        assert run_to_end(client, sched, "r1")["state"] == "failed"
        logs = client.get("/api/orch/logs/r1", params={"node": "validate"}, headers=ACME)
        assert (
            logs.status_code == 200
            and "gate file" not in logs.json()["logs"]
            and "validate:" in logs.json()["logs"]
        )
        for params, code in (
            ({"node": "nope"}, 404),
            ({"node": "validate", "attempt": 0}, 422),
            ({"node": "validate", "attempt": 2}, 404),
            ({"node": "a/b"}, 422),
            ({}, 422),
        ):
            r = client.get("/api/orch/logs/r1", params=params, headers=ACME)
            assert r.status_code == code, (params, r.text)
        for path in ("/api/orch/logs/r1?node=validate", "/api/orch/lineage/r1"):
            assert client.get(path, headers=BOB).status_code == 404  # another tenant's run
        assert client.post("/api/orch/retry/r1", headers=BOB).status_code == 404
        lin = client.get("/api/orch/lineage/r1", headers=ACME).json()
        assert [e["eventType"] for e in lin["events"]][-1] == "FAIL" and lin["skipped"] == ["publish"]
        gate.write_text("ok")
        r = client.post("/api/orch/retry/r1", headers=ACME)
        assert r.status_code == 202 and r.json()["state"] == "running"
        assert run_to_end(client, sched, "r1")["state"] == "succeeded"
        assert (
            client.get("/api/orch/logs/r1?node=publish", headers=ADMIN)
            .json()["workload_id"]
            .startswith("wl-")
        )


def test_rest_workers_is_the_admins(api):
    client, sched, _ = api
    with client:
        assert client.get("/api/v1/workers", headers=ACME).status_code == 403
        r = client.get("/api/v1/workers", headers=ADMIN)
        assert r.status_code == 200
        got = r.json()
        assert got["count"] == 1 and got["items"][0]["node_id"] == "n1"
        item = got["items"][0]
        assert {"tasks", "tasks_completed", "reserved", "in_use", "last_activity", "resources"} <= set(item)


def test_workers_show_a_pipeline_nodes_task_and_completed_counts(api):
    client, sched, tmp = api
    with client:
        client.post("/api/orch/submit", json=body(str(tmp / "g"), submission_id="w1"), headers=ACME)

        async def launch():
            sched.pipelines.tick(True)
            sched.ingest.pull()
            sched.run_cycle()
            for _ in range(50):
                await asyncio.sleep(0)

        client.portal.call(launch)
        item = client.get("/api/v1/workers", headers=ADMIN).json()["items"][0]
        assert [t["pipeline"]["node_id"] for t in item["tasks"]] == ["extract"]
        assert item["tasks"][0]["pipeline"]["submission_id"] == "w1" and item["tasks_completed"] == 0
        run_to_end(client, sched, "w1")
        item = client.get("/api/v1/workers", headers=ADMIN).json()["items"][0]
        assert item["tasks"] == [] and item["tasks_completed"] == 1 and item["last_activity"]


def test_the_sdks_retry_logs_lineage_and_wait(api):
    client, sched, tmp = api
    gate = tmp / "gate"
    with client:
        sdk = OrionClient("http://testserver", "acme-key", transport=client._transport)
        sdk.submit_pipeline(spec(str(gate)), {"submission_id": "s1"}, REFS)
        with pytest.raises(TimeoutError):
            sdk.wait_pipeline("s1", timeout=0, poll_s=0)
        run_to_end(client, sched, "s1")
        assert sdk.wait_pipeline("s1", timeout=5)["state"] == "failed"
        assert "validate:" in sdk.pipeline_logs("s1", "validate", attempt=1)["logs"]
        assert sdk.pipeline_lineage("s1")["events"][0]["eventType"] == "START"
        gate.write_text("ok")
        assert sdk.retry_pipeline("s1")["state"] == "running"
        with pytest.raises(Conflict):
            sdk.retry_pipeline("s1")
        run_to_end(client, sched, "s1")

        async def scenario():
            transport = httpx.ASGITransport(app=client.app)
            async with AsyncOrionClient("http://testserver", "acme-key", transport=transport) as a:
                assert (await a.wait_pipeline("s1", timeout=5))["state"] == "succeeded"
                assert (await a.pipeline_logs("s1", "publish"))["status"] == "completed"
                assert len((await a.pipeline_lineage("s1"))["events"]) >= 6
                with pytest.raises(Conflict):
                    await a.retry_pipeline("s1")

        client.portal.call(scenario)


def test_the_cli_retries_and_reads_logs(api, monkeypatch, capsys):
    from orion_ray import cli
    from orion_ray.pipelines import cli as pipeline_cli

    client, sched, tmp = api
    gate = tmp / "gate"
    with client:
        monkeypatch.setattr(
            pipeline_cli,
            "_client",
            lambda: OrionClient("http://testserver", "acme-key", transport=client._transport),
        )
        client.post("/api/orch/submit", json=body(str(gate), submission_id="c1"), headers=ACME)
        run_to_end(client, sched, "c1")
        assert cli.main(["pipeline", "status", "c1"]) == 0
        assert "[failures: user 1, system 0] attempt 1: RuntimeError" in capsys.readouterr().out
        assert cli.main(["pipeline", "logs", "c1", "--node", "validate"]) == 0
        assert "validate: checking" in capsys.readouterr().out
        assert cli.main(["pipeline", "logs", "c1", "--node", "validate", "--attempt", "1", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["attempt"] == 1
        gate.write_text("ok")
        assert cli.main(["pipeline", "retry", "c1", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == "running"
        assert cli.main(["pipeline", "retry", "c1"]) == 2  # running: the 409 in one line
        assert "running" in capsys.readouterr().err
        assert cli.main(["pipeline", "output", "c1", "--node", "extract", "--name", "table"]) == 0
        assert json.loads(capsys.readouterr().out) == "mem://table?rows=3"
        assert cli.main(["pipeline", "output", "c1", "--node", "extract", "--name", "nope"]) == 2
