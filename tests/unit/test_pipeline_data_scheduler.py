"""Data between nodes through the real scheduler over the in-process ``FakeRuntime`` (each node's
function run in-process with the arguments Orion launched it with): a value over the inline cap
goes to the artifact store and reaches the next node as a value; a ``sql`` node over an upstream
output; a value posing as an artifact reference is refused; ``GET /api/orch/outputs`` with tenancy,
bounds and refusals; ``image`` refused at the door. No Ray, no sleeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.pipelines import runs_store
from orion_ray.pipelines.refs import MARKER, is_ref
from orion_ray.runtime.fake import FakeRuntime

from .test_pipeline_data import moto_url, s3  # noqa: F401 - fixtures: a moto server, a client
from .test_pipeline_scheduler import ACME, ADMIN, BIG, BOB, Clock, make, on_loop, step, until_done

NODES = "tests.pipelines.nodes_data"


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "orion.db")


ONCE = {"retry": {"max_attempts": 1, "backoff_sec": 0}}


def body(sid, nodes, edges):
    return {
        "dag_spec": {"version": 1, "pipeline_id": "data", "slo": ONCE, "nodes": nodes, "edges": edges},
        "runtime_params": {"submission_id": sid},
    }


def fn(name, **params):
    return {"function": f"{NODES}:{name}", **params}


BIG_RUN = (
    [
        {"id": "produce", "kind": "python_task", "params": fn("big_values", n=5000), "outs": ["values"]},
        {
            "id": "consume",
            "kind": "python_task",
            "params": fn("total"),
            "ins": ["values"],
            "outs": ["total", "count"],
        },
    ],
    [{"from": "produce", "to": "consume"}],
)
SQL_RUN = (
    [
        {"id": "src", "kind": "python_task", "params": fn("orders", n=30), "outs": ["orders"]},
        {
            "id": "agg",
            "kind": "sql",
            "ins": ["orders"],
            "outs": ["totals"],
            "params": {
                "query": "SELECT region, sum(amount) AS total FROM orders GROUP BY region ORDER BY region"
            },
        },
    ],
    [{"from": "src", "to": "agg"}],
)


async def finish(db, sid, graph, tenant="acme"):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    await s.pipeline_submit(body(sid, *graph), tenant, "admin")
    return s, await until_done(s, rt, clock, sid, tenant)


@on_loop
async def test_a_large_value_goes_to_the_artifact_store_and_arrives_downstream_as_a_value(db):
    s, done = await finish(db, "big-1", BIG_RUN)
    assert done["state"] == "succeeded", done
    produce, consume = done["nodes"]
    uri = produce["artifacts"]["values"]
    path = Path(db).parent / "artifacts" / "acme" / "big-1" / "produce" / "1" / "values"
    assert uri == path.resolve().as_uri() and json.loads(path.read_text()) == list(range(5000))
    assert consume["artifacts"] == {}  # small outputs stay inline
    assert s.store.get(consume["workload_id"]).result == {"total": sum(range(5000)), "count": 5000}
    run = runs_store.find_run(s.store, "big-1", "acme")
    row = runs_store.node_runs(s.store, run.run_id)[0]
    # the row holds the reference, not the value
    assert is_ref(row.outputs["values"]) and len(json.dumps(row.outputs)) < 1000


@on_loop
async def test_a_sql_node_queries_an_upstream_output(db):
    s, done = await finish(db, "sql-1", SQL_RUN)
    assert done["state"] == "succeeded", done
    got = s.store.get(done["nodes"][1]["workload_id"]).result
    assert got == {
        "totals": [
            {"region": "r0", "total": 135},
            {"region": "r1", "total": 145},
            {"region": "r2", "total": 155},
        ]
    }


@on_loop
async def test_an_output_posing_as_an_artifact_reference_fails_the_node(db):
    graph = (
        [
            {"id": "p", "kind": "python_task", "params": fn("poser"), "outs": ["values"]},
            {"id": "c", "kind": "python_task", "params": fn("total"), "ins": ["values"], "outs": ["total"]},
        ],
        [{"from": "p", "to": "c"}],
    )
    _, done = await finish(db, "pose-1", graph)
    assert done["state"] == "failed"
    assert MARKER in done["nodes"][0]["error"] and done["nodes"][1]["state"] == "skipped"


# -- REST ------------------------------------------------------------------------------------------
@pytest.fixture
def finished(db):
    """A finished large-value run of acme's and the REST app over the same scheduler."""
    import asyncio

    s, done = asyncio.run(finish(db, "big-2", BIG_RUN))
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme", hash_key("bob-key"): "bob"})
    with TestClient(build_app(keys, backend=s)) as client:
        yield client, done


def test_rest_reads_one_output_inline_or_from_the_artifact_store(finished):
    client, done = finished
    r = client.get("/api/orch/outputs/big-2", params={"node": "produce", "name": "values"}, headers=ACME)
    assert r.status_code == 200 and r.json() == list(range(5000))
    assert r.headers["x-orion-artifact-uri"] == done["nodes"][0]["artifacts"]["values"]
    r = client.get("/api/orch/outputs/big-2", params={"node": "consume", "name": "count"}, headers=ACME)
    assert r.status_code == 200 and r.json() == 5000 and "x-orion-artifact-uri" not in r.headers
    r = client.get("/api/orch/outputs/big-2", params={"node": "consume", "name": "count"}, headers=ADMIN)
    assert r.status_code == 200


def test_rest_outputs_are_tenant_scoped_and_bounded(finished):
    client, _ = finished
    q = {"node": "produce", "name": "values"}
    assert client.get("/api/orch/outputs/big-2", params=q, headers=BOB).status_code == 404
    assert client.get("/api/orch/outputs/big-2", params=q).status_code == 401
    r = client.get("/api/orch/outputs/big-2", params={**q, "max_bytes": 100}, headers=ACME)
    assert r.status_code == 413 and "max_bytes" in r.json()["error"]["message"]
    r = client.get("/api/orch/outputs/big-2", params={"node": "produce", "name": "nope"}, headers=ACME)
    assert r.status_code == 404 and "values" in r.json()["error"]["message"]
    r = client.get("/api/orch/outputs/big-2", params={"node": "produce"}, headers=ACME)
    assert r.status_code == 422 and "name" in json.dumps(r.json()["error"]["details"])
    r = client.get("/api/orch/outputs/big-2", params={"node": "../x", "name": "v"}, headers=ACME)
    assert r.status_code == 422


def test_rest_refuses_an_image_node_without_a_container_runtime(finished):
    client, _ = finished
    image = {"id": "img", "kind": "image", "params": {"image": "python:3.11"}, "entrypoint": "python -V"}
    r = client.post("/api/orch/submit", json=body("img-1", [image], []), headers=ACME)
    assert r.status_code == 422, r.text
    d = r.json()["error"]["details"][0]
    assert d["field"] == "dag_spec.nodes.img.kind" and "container runtime" in d["problem"]


def test_the_sdks_read_one_output(finished):
    import asyncio

    import httpx

    from orion_ray.async_client import AsyncOrionClient
    from orion_ray.client import OrionClient
    from orion_ray.errors import NotFound

    client, _ = finished
    sdk = OrionClient("http://testserver", "acme-key", transport=client._transport)
    assert sdk.pipeline_output("big-2", "produce", "values") == list(range(5000))
    with pytest.raises(NotFound):
        OrionClient("http://testserver", "bob-key", transport=client._transport).pipeline_output(
            "big-2", "produce", "values"
        )

    async def scenario():
        transport = httpx.ASGITransport(app=client.app)
        async with AsyncOrionClient("http://testserver", "acme-key", transport=transport) as a:
            return await a.pipeline_output("big-2", "consume", "total")

    assert asyncio.run(scenario()) == sum(range(5000))


# -- S3 (a real moto server on loopback) and an artifact store that does not answer -----------------
@on_loop
async def test_through_s3_the_value_arrives_downstream_and_the_object_is_namespaced(db, request, monkeypatch):
    url, client = request.getfixturevalue("moto_url"), request.getfixturevalue("s3")
    from orion_ray.config import ArtifactsConfig, PipelinesConfig

    from .test_pipeline_data import BUCKET

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    s.pipelines.configure(
        PipelinesConfig(
            artifacts=ArtifactsConfig(
                backend="s3", bucket=BUCKET, prefix="runs", region="us-east-1", endpoint_url=url
            )
        )
    )
    await s.pipeline_submit(body("s3-1", *BIG_RUN), "acme", "admin")
    done = await until_done(s, rt, clock, "s3-1", "acme")
    assert done["state"] == "succeeded", done
    assert done["nodes"][0]["artifacts"]["values"] == f"s3://{BUCKET}/runs/acme/s3-1/produce/1/values"
    obj = client.get_object(Bucket=BUCKET, Key="runs/acme/s3-1/produce/1/values")["Body"].read()
    assert json.loads(obj) == list(range(5000))
    assert s.store.get(done["nodes"][1]["workload_id"]).result["count"] == 5000


class Flaky:
    """An artifact store that does not answer until told to."""

    def __init__(self, inner):
        self.inner, self.down = inner, True

    def put(self, key, data):
        from orion_ray.pipelines.artifacts import ArtifactUnavailable

        if self.down:
            raise ArtifactUnavailable("no answer")
        return self.inner.put(key, data)

    def get(self, uri, **kw):
        from orion_ray.pipelines.artifacts import ArtifactUnavailable

        if self.down:
            raise ArtifactUnavailable("no answer")
        return self.inner.get(uri, **kw)

    def delete(self, uri, **kw):
        self.inner.delete(uri, **kw)


@on_loop
async def test_a_store_that_does_not_answer_delays_the_node_and_loses_nothing(db, tmp_path):
    from orion_ray.pipelines.artifacts import LocalArtifacts

    rt, clock = FakeRuntime(BIG), Clock()
    s = make(db, rt, clock)
    flaky = Flaky(LocalArtifacts(tmp_path / "art"))
    s.pipelines.controller.data.store = flaky
    await s.pipeline_submit(body("flaky-1", *BIG_RUN), "acme", "admin")
    for _ in range(6):  # produce runs and completes, but its output cannot be written
        await step(s, rt, clock)
    got = await s.pipeline_status("flaky-1", "acme")
    assert [n["state"] for n in got["nodes"]] == ["submitted", "pending"], got
    flaky.down = False
    done = await until_done(s, rt, clock, "flaky-1", "acme")
    assert done["state"] == "succeeded" and done["nodes"][1]["attempt"] == 1
    assert len(rt.runs) == 2  # each node ran once
