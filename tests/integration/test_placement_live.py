"""The live scheduler places with the engine: bundles pinned to its nodes, shared GPUs as Ray put them.

Fake 4-GPU nodes (H100 and A100). Shared-GPU workloads hold their reservation until the test lets
them finish, so the snapshot can be compared with what Ray actually assigned while they run.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

import pytest
import ray

from .conftest import wait_for

pytestmark = pytest.mark.integration

FRACTIONS = [0.5, 0.3, 0.5, 0.6, 0.2, 0.4]


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_shared_gpus_are_tracked_as_ray_assigned_them(orion, tmp_path):
    go = tmp_path / "go"
    ids = [
        orion.submit(
            {
                "workload_type": "task",
                "function": "tests.integration.helpers:where_when",
                "args": [str(go)],
                "resources": {"cpu": 0.1, "gpu": f, "gpu_type": "H100"},
            }
        )
        for f in FRACTIONS
    ]
    try:
        running = [orion.wait(i, ("running", "failed")) for i in ids]
        assert all(w["status"] == "running" for w in running), running
        h100 = [n["NodeID"] for n in ray.nodes() if n["Labels"].get("ray.io/accelerator-type") == "H100"][0]
        used = defaultdict(float)
        for w, f in zip(running, FRACTIONS):
            (p,) = w["placement"]
            assert p["node_id"] == h100 and p["gpu_indices_observed"], p
            used[p["gpu_indices"][0]] += f
        # Orion's view of the node, GPU by GPU, is what the runs hold
        frag = ray.get(orion.actor.fragmentation.remote(), timeout=30)
        row = next(r for r in frag["nodes"] if r["node_id"] == h100)
        assert row["gpu_free"] == [round(1 - used[g], 3) for g in range(4)], (row, dict(used))
        assert frag["summary"]["by_gpu_type"]["H100"]["free_gpus"] == round(4 - sum(FRACTIONS), 3)
    finally:
        go.touch()
    done = [orion.wait(i) for i in ids]
    assert all(w["status"] == "completed" for w in done), done
    for w in done:  # the GPU each run saw is the one Orion recorded
        assert w["result"]["gpu_ids"] == [str(g) for g in w["placement"][0]["gpu_indices"]]
    text = ray.get(orion.actor.metrics_text.remote(), timeout=30)
    assert _metric(text, "orion_placement_bundles_total", level="node", matched="false") == 0
    assert _metric(text, "orion_placement_bundles_total", level="node", matched="true") >= 6
    gpu_ok = _metric(text, "orion_placement_bundles_total", level="gpu", matched="true")
    gpu_all = gpu_ok + _metric(text, "orion_placement_bundles_total", level="gpu", matched="false")
    assert gpu_all >= len(FRACTIONS)
    print(f"shared-GPU bundles on the GPU the engine expected: {gpu_ok:g}/{gpu_all:g}")
    assert re.search(r'orion_gpu_free\{gpu_type="H100"\}', text)


def test_gang_bundles_land_on_the_engines_nodes(orion, tmp_path):
    go = tmp_path / "go"
    wid = orion.submit(
        {
            "workload_type": "task",
            "function": "tests.integration.helpers:where_when",
            "args": [str(go)],
            "placement": "spread",
            "bundles": [{"cpu": 0.5, "gpu": 1}, {"cpu": 0.5, "gpu": 1}, {"cpu": 0.5, "gpu": 2}],
        }
    )
    try:
        w = orion.wait(wid, ("running", "failed"))
        assert w["status"] == "running", w
        pg = next(
            info for info in ray.util.placement_group_table().values() if info["name"] == f"orion-{wid}"
        )
        ray_nodes = [pg["bundles_to_node_id"][i] for i in range(3)]
        assert [p["node_id"] for p in w["placement"]] == ray_nodes
        assert len(set(ray_nodes)) == 2  # SPREAD over both GPU nodes
    finally:
        go.touch()
    assert orion.wait(wid)["status"] == "completed"
    text = ray.get(orion.actor.metrics_text.remote(), timeout=30)
    assert _metric(text, "orion_placement_bundles_total", level="node", matched="false") == 0


def test_gpus_held_outside_orion_are_in_the_same_account(orion):
    """A plain Ray group (as a Serve replica would) holds 3 of the H100 node's GPUs: a 2-GPU H100
    workload waits for capacity instead of being admitted onto them, and runs once they are freed."""
    from ray.util.placement_group import placement_group, remove_placement_group

    h100 = [n["NodeID"] for n in ray.nodes() if n["Labels"].get("ray.io/accelerator-type") == "H100"][0]
    other = placement_group([{"GPU": 3.0, "CPU": 0.1}], bundle_label_selector=[{"ray.io/node-id": h100}])
    ray.get(other.ready(), timeout=60)

    def h100_row():
        frag = ray.get(orion.actor.fragmentation.remote(), timeout=30)
        return next(r for r in frag["nodes"] if r["node_id"] == h100)

    try:
        # Orion's node view is refreshed in the background: submit once it sees the held GPUs
        # (on a busy machine a fixed pause was not always enough)
        wait_for(lambda: h100_row()["free_gpus"] == 1.0, 60, what="Orion's node view to see the held GPUs")
        wid = orion.submit(
            {
                "workload_type": "task",
                "function": "math:factorial",
                "args": [3],
                "resources": {"cpu": 0.1, "gpu": 2, "gpu_type": "H100"},
            }
        )
        w = wait_for(lambda: (lambda w: w if w["reason"] else None)(orion.get(wid)), 30, what="a reason")
        assert w["status"] == "queued" and "free resources" in w["reason"], w
        assert h100_row()["free_gpus"] == 1.0
    finally:
        remove_placement_group(other)
    assert orion.wait(wid)["status"] == "completed"


def test_make_room_preempts_lower_class_batch_work_for_a_serving_replica(orion, tmp_path):
    """Low-class batch work holds every GPU of the A100 node; asking room for one 1-GPU replica
    there (as the serving manager does) preempts one of them, and the freed GPU is kept from the
    batch queue for the replica."""
    go = tmp_path / "go"
    hold = {
        "workload_type": "task",
        "function": "tests.integration.helpers:where_when",
        "args": [str(go)],
        "priority": "low",
        "resources": {"cpu": 0.1, "gpu": 1, "gpu_type": "A100"},
    }
    ids = [orion.submit(hold) for _ in range(4)]
    try:
        for wid in ids:
            assert orion.wait(wid, ("running", "failed"))["status"] == "running"
        blocker = orion.submit({**hold, "resources": {"cpu": 0.1, "gpu": 4, "gpu_type": "H100"}})
        assert orion.wait(blocker, ("running", "failed"))["status"] == "running"
        got = ray.get(orion.actor.make_room.remote([{"GPU": 1.0, "CPU": 0.1}], None, "high"), timeout=60)
        assert got["made_room"] == 1 and len(got["preempted"]) == 1, got
        victim = got["preempted"][0]
        assert victim in ids + [blocker]
        w = orion.wait(victim, ("queued",), 60)
        assert "preempted" in [h["status"] for h in w["history"]]
        # the freed GPU is claimed: the requeued victim does not take it straight back
        time.sleep(2)
        assert orion.get(victim)["status"] == "queued"
        frag = ray.get(orion.actor.fragmentation.remote(), timeout=30)
        freed = 4 if victim == blocker else 1
        assert frag["summary"]["free_gpus"] == freed - 1, frag  # the claim holds one GPU
    finally:
        go.touch()
    for wid in ids + [blocker]:
        orion.cancel(wid)
