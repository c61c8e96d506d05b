"""The controller's fast path on a live Orion: a layered 100-node DAG (the benchmark's shape,
smaller) runs to the end with every value right and every node run exactly once, while the
controller reads only what moved between sweeps; its counters on ``/health`` account for every
node transition. No timing assertions (the benchmark measures speed: ``benchmarks/pipelines.py``)."""

from __future__ import annotations

import json

import httpx
import pytest

from benchmarks import _pipeline_dags as dags
from tests.pipelines.live import Live, runs_of

pytestmark = pytest.mark.e2e

FN = "tests.pipelines.nodes_performance:node"


def test_a_layered_dag_runs_every_node_once_with_the_right_values(live, tmp_path):
    width, depth = 10, 10
    before = httpx.get(live.url + "/health", timeout=30).json()["pipelines"]
    sid = live.submit(
        {
            "dag_spec": dags.dag_spec(width, depth, function=FN),
            "runtime_params": {"submission_id": "perf-live", "env": Live.node_env(tmp_path)},
        }
    )
    done = live.wait_run(sid, within_s=600)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)[:4000]
    assert runs_of(tmp_path) == {f"o_{n['node_id']}": 1 for n in done["nodes"]}  # each once
    by_id = {n["node_id"]: n for n in done["nodes"]}
    with live.client("alice") as c:
        for nid, want in dags.expected_sinks(width, depth).items():
            got = c.get(f"/api/v1/workloads/{by_id[nid]['workload_id']}").json()["result"]
            assert got == {f"o_{nid}": want}
    after = httpx.get(live.url + "/health", timeout=30).json()["pipelines"]
    # launched and succeeded, each node once (a scheduler restarted meanwhile by another test
    # module would have reset the counters: then they only count from its restart)
    if after["transitions"] >= before["transitions"]:
        assert after["transitions"] - before["transitions"] >= 2 * width * depth
    assert after["reconciles"] >= 1 and after["busy_s"] >= 0
