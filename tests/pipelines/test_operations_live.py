"""Pipeline operations on a live Orion (`orion up` in a subprocess, real Ray): a run whose middle
node fails (its own error: a user failure) ends failed with its downstream node skipped; after the
cause is fixed (the file the node checks), ``POST /api/orch/retry`` runs it again from that node
and it succeeds, the first node not run again (counted by the nodes themselves); the failed
node's logs are readable per attempt; the run's lineage has a START and a COMPLETE per node; the
workers view is the admin's."""

from __future__ import annotations

import json

import pytest

from tests.pipelines.live import Live, runs_of

pytestmark = pytest.mark.e2e

NODES = ("extract", "validate", "publish")
REFS = {n: f"tests.pipelines.nodes_operations:{n}" for n in NODES}


def spec(gate: str) -> dict:
    small = {"cpu": "0.5", "mem": "64Mi"}
    return {
        "version": 1,
        "pipeline_id": "ops_live",
        "resources": {"default": small},
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


def test_a_failed_node_is_retried_from_where_it_failed(live, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    gate = tmp_path / "gate"  # validate fails until this file exists
    body = {
        "dag_spec": spec(str(gate)),
        "refs": REFS,
        "runtime_params": {"submission_id": "ops-live", "env": Live.node_env(runs)},
    }
    sid = live.submit(body)
    failed = live.wait_run(sid)
    nodes = {n["node_id"]: n for n in failed["nodes"]}
    assert failed["state"] == "failed", json.dumps(failed, indent=1)
    assert [nodes[n]["state"] for n in NODES] == ["succeeded", "failed", "skipped"]
    assert nodes["validate"]["user_failures"] == 1 and nodes["validate"]["system_failures"] == 0
    assert "gate file" in nodes["validate"]["error"]

    with live.client("alice") as c:
        logs = c.get(f"/api/orch/logs/{sid}", params={"node": "validate"})
        assert logs.status_code == 200, logs.text
        assert "validate: checking" in logs.json()["logs"] and logs.json()["attempt"] == 1
        gate.write_text("ok")  # the cause fixed
        assert c.post(f"/api/orch/retry/{sid}").status_code == 202
        assert c.post(f"/api/orch/retry/{sid}").status_code == 409  # running (or already done)
    with live.client("bob") as c:  # another tenant reaches none of it
        assert c.get(f"/api/orch/logs/{sid}", params={"node": "validate"}).status_code == 404
        assert c.get(f"/api/orch/lineage/{sid}").status_code == 404
        assert c.get("/api/v1/workers").status_code == 403

    done = live.wait_run(sid)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)
    assert done["retries"] == 1
    assert runs_of(runs) == {"extract": 1, "validate": 2, "publish": 1}  # extract not run again
    validate = {n["node_id"]: n for n in done["nodes"]}["validate"]
    assert validate["attempt"] == 2

    with live.client("alice") as c:
        lineage = c.get(f"/api/orch/lineage/{sid}").json()
        first = c.get(f"/api/orch/logs/{sid}", params={"node": "validate", "attempt": 1}).json()
    assert first["status"] == "failed" and "validate: checking" in first["logs"]
    kinds = [(e["job"]["name"], e["eventType"]) for e in lineage["events"]]
    for node in NODES:
        assert (f"ops_live.{node}", "START") in kinds and (f"ops_live.{node}", "COMPLETE") in kinds
    assert kinds[0] == ("ops_live", "START") and kinds[-1] == ("ops_live", "COMPLETE")
    with live.client("admin") as c:
        workers = c.get("/api/v1/workers").json()
        metrics = c.get("/metrics").text
    assert (
        workers["count"] >= 1 and sum(w["tasks_completed"] for w in workers["items"]) >= 3
    )  # validate 1 failed
    assert "orion_pipeline_runs" in metrics
