"""Data between nodes on a live Orion (`orion up`, real Ray): a node's value over the inline cap
goes to the artifact store (a directory under the Orion's home, by default) and reaches the next
node as the value itself; a ``sql`` node (DuckDB in a Ray task) queries an upstream output; both
read back through ``GET /api/orch/outputs``, tenant-scoped."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.pipelines.live import Live

pytestmark = pytest.mark.e2e

NODES = "tests.pipelines.nodes_data"
SMALL = {"cpu": "0.5", "mem": "64Mi"}


def submission(sid: str, nodes: list, edges: list, env: dict) -> dict:
    return {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "data-live",
            "slo": {"retry": {"max_attempts": 1, "backoff_sec": 0}},
            "resources": {"default": SMALL},
            "nodes": nodes,
            "edges": edges,
        },
        "runtime_params": {"submission_id": sid, "env": env},
    }


def test_a_large_value_is_an_artifact_and_arrives_downstream_as_a_value(live, tmp_path):
    nodes = [
        {
            "id": "produce",
            "kind": "python_task",
            "params": {"function": f"{NODES}:big_values", "n": 5000},
            "outs": ["values"],
        },
        {
            "id": "consume",
            "kind": "python_task",
            "params": {"function": f"{NODES}:total"},
            "ins": ["values"],
            "outs": ["total", "count"],
        },
    ]
    sid = live.submit(
        submission("data-big", nodes, [{"from": "produce", "to": "consume"}], Live.node_env(tmp_path))
    )
    done = live.wait_run(sid)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)
    produce, consume = done["nodes"]
    uri = produce["artifacts"]["values"]
    assert uri.startswith("file://") and uri.endswith("/alice/data-big/produce/1/values")
    assert json.loads(Path(unquote(urlparse(uri).path)).read_text()) == list(range(5000))
    with live.client("alice") as c:
        got = c.get(f"/api/v1/workloads/{consume['workload_id']}").json()
        assert got["result"] == {"total": sum(range(5000)), "count": 5000}  # the list itself, not a URI
        r = c.get(f"/api/orch/outputs/{sid}", params={"node": "produce", "name": "values"})
        assert r.status_code == 200 and r.json() == list(range(5000))
        assert r.headers["x-orion-artifact-uri"] == uri
    with live.client("bob") as c:
        assert (
            c.get(f"/api/orch/outputs/{sid}", params={"node": "produce", "name": "values"}).status_code == 404
        )


def test_a_sql_node_queries_an_upstream_output(live, tmp_path):
    nodes = [
        {
            "id": "src",
            "kind": "python_task",
            "params": {"function": f"{NODES}:orders", "n": 30},
            "outs": ["orders"],
        },
        {
            "id": "agg",
            "kind": "sql",
            "ins": ["orders"],
            "outs": ["totals"],
            "params": {
                "query": "SELECT region, sum(amount) AS total FROM orders GROUP BY region ORDER BY region"
            },
        },
    ]
    sid = live.submit(submission("data-sql", nodes, [{"from": "src", "to": "agg"}], Live.node_env(tmp_path)))
    done = live.wait_run(sid)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)
    with live.client("alice") as c:
        r = c.get(f"/api/orch/outputs/{sid}", params={"node": "agg", "name": "totals"})
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"region": "r0", "total": 135},
        {"region": "r1", "total": 145},
        {"region": "r2", "total": 155},
    ]
