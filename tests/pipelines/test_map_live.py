"""A map (fan-out) node on a live Orion (`orion up`, real Ray): 20 items over an upstream list with
concurrency 4, each item an ordinary workload run as a Ray task; the fan-in reaches the next node
in index order, the task counters reach the total, the per-item listing pages through every item,
and each item ran exactly once (counted by the items themselves)."""

from __future__ import annotations

import json

import pytest

from tests.pipelines.live import Live, runs_of

pytestmark = pytest.mark.e2e

FN = "tests.pipelines.nodes_map"
N = 20


def spec(n: int) -> dict:
    small = {"cpu": 0.25, "mem": "64Mi"}
    return {
        "version": 1,
        "pipeline_id": "fan-live",
        "resources": {"default": small},
        "nodes": [
            {"id": "shards", "kind": "python_task", "params": {"n": n}, "outs": ["shards"]},
            {
                "id": "square",
                "kind": "map",
                "params": {"offset": 1},
                "ins": ["shards"],
                "outs": ["value"],
                "map": {"with_param": "shards", "concurrency": 4},
            },
            {"id": "total", "kind": "python_task", "ins": ["value"], "outs": ["sum"]},
        ],
        "edges": [{"from": "shards", "to": "square"}, {"from": "square", "to": "total"}],
    }


def test_a_map_over_an_upstream_list_fans_out_and_in_each_item_once(live, tmp_path):
    env = Live.node_env(tmp_path)
    refs = {"shards": f"{FN}:shards", "square": f"{FN}:square", "total": f"{FN}:total"}
    sid = live.submit(
        {"dag_spec": spec(N), "refs": refs, "runtime_params": {"submission_id": "fan-live", "env": env}}
    )
    done = live.wait_run(sid, within_s=300)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)
    sq = done["nodes"][1]
    assert (sq["total_tasks"], sq["completed_tasks"], sq["failed_tasks"], sq["running_tasks"]) == (N, N, 0, 0)
    assert done["progress"]["total_tasks"] == N + 2 and done["progress"]["completed_tasks"] == N + 2
    with live.client("alice") as c:
        total = c.get(f"/api/v1/workloads/{done['nodes'][2]['workload_id']}").json()
        assert total["result"] == {"sum": sum(i * i + 1 for i in range(N)), "missing": 0}
        seen, after = [], -1
        while after is not None:
            r = c.get(f"/api/orch/status/{sid}/items", params={"node": "square", "after": after, "limit": 7})
            assert r.status_code == 200, r.text
            page = r.json()
            seen += page["items"]
            after = page["next_after"]
        assert [i["index"] for i in seen] == list(range(N))
        assert all(i["state"] == "succeeded" and i["attempt"] == 1 for i in seen)
        one = c.get(f"/api/v1/workloads/{seen[5]['workload_id']}").json()
        assert one["result"] == {"value": 26} and one["tenant_id"] == "alice"
    with live.client("bob") as c:  # another tenant sees neither the run nor its items
        assert c.get(f"/api/orch/status/{sid}/items", params={"node": "square"}).status_code == 404
    ran = runs_of(tmp_path)
    assert {k: v for k, v in ran.items() if k.startswith("square-")} == {f"square-{i}": 1 for i in range(N)}
    assert ran["shards"] == 1 and ran["total"] == 1
