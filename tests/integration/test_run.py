"""Task and job workloads run to the end inside Orion's own placement groups (or, with
``scheduler.pin_single_bundle_tasks``, a single-bundle task pinned to its node without one)."""

from __future__ import annotations

import sys

import pytest
import ray
from ray.util.placement_group import placement_group_table

from .conftest import wait_for

pytestmark = pytest.mark.integration


def pg_state(wid: str):
    for info in placement_group_table().values():
        if info["name"] == f"orion-{wid}":
            return info["state"]
    return None


def test_task_completes_with_result_and_history(orion):
    wid = orion.submit({"workload_type": "task", "function": "math:factorial", "args": [10]})
    w = orion.wait(wid)
    assert w["status"] == "completed", w
    assert w["result"] == 3628800
    assert [h["status"] for h in w["history"]] == ["submitted", "queued", "starting", "running", "completed"]
    assert w["worker_id"] and w["placement"][0]["node_id"] == w["worker_id"]
    assert w["started_at"] and w["finished_at"] and w["execution_time_ms"] is not None
    wait_for(lambda: pg_state(wid) == "REMOVED", 10, what="the placement group to be removed")


def test_task_runs_inside_its_own_placement_group(orion):
    wid = orion.submit(
        {"workload_type": "task", "function": "tests.integration.helpers:where", "resources": {"cpu": 1}}
    )
    w = orion.wait(wid)
    assert w["status"] == "completed", w
    pg_ids = [pid for pid, info in placement_group_table().items() if info["name"] == f"orion-{wid}"]
    assert w["result"]["pg"] in pg_ids
    assert w["result"]["workload_id"] == wid


def test_whole_gpus_are_the_reserved_ones_on_the_requested_type(orion):
    spec = {
        "workload_type": "task",
        "function": "tests.integration.helpers:sleep_then",
        "args": [0.5],
        "resources": {"cpu": 0.5, "gpu": 2, "gpu_type": "H100"},
    }
    where = {
        "workload_type": "task",
        "function": "tests.integration.helpers:where",
        "resources": {"cpu": 0.5, "gpu": 2, "gpu_type": "H100"},
    }
    ids = [orion.submit(where), orion.submit(where)]
    results = [orion.wait(i) for i in ids]
    assert all(r["status"] == "completed" for r in results), results
    h100 = [n["NodeID"] for n in ray.nodes() if n["Labels"].get("ray.io/accelerator-type") == "H100"][0]
    seen = []
    for r in results:
        assert r["result"]["node"] == h100 == r["worker_id"]
        assert len(r["result"]["gpu_ids"]) == 2
        assert r["result"]["cuda_visible_devices"] == ",".join(r["result"]["gpu_ids"])
        seen.append(set(r["result"]["gpu_ids"]))
    del spec


def test_concurrent_gpu_workloads_see_disjoint_gpus(orion):
    hold = {
        "workload_type": "task",
        "function": "tests.integration.helpers:where_after",
        "args": [1.5],
        "resources": {"cpu": 0.5, "gpu": 2, "gpu_type": "A100"},
    }
    ids = [orion.submit(hold), orion.submit(hold)]
    results = [orion.wait(i) for i in ids]
    assert all(r["status"] == "completed" for r in results), results
    a, b = (set(r["result"]["gpu_ids"]) for r in results)
    assert len(a) == len(b) == 2 and not (a & b), (a, b)


def test_fractional_gpu_sees_one_device(orion):
    wid = orion.submit(
        {
            "workload_type": "task",
            "function": "tests.integration.helpers:where",
            "resources": {"cpu": 0.5, "gpu": 0.5},
        }
    )
    w = orion.wait(wid)
    assert w["status"] == "completed", w
    assert len(w["result"]["gpu_ids"]) == 1


def test_gang_strict_spread_lands_on_two_nodes(orion):
    wid = orion.submit(
        {
            "workload_type": "task",
            "function": "tests.integration.helpers:where",
            "bundles": [{"cpu": 0.5, "gpu": 1}, {"cpu": 0.5, "gpu": 1}],
            "placement": "strict_spread",
        }
    )
    w = orion.wait(wid)
    assert w["status"] == "completed", w
    nodes = [p["node_id"] for p in w["placement"]]
    assert len(nodes) == 2 and nodes[0] != nodes[1]
    assert w["result"]["node"] == nodes[0]


def test_job_runs_in_its_reservation_with_logs(orion, ray_cluster):
    wid = orion.submit(
        {
            "workload_type": "job",
            "entrypoint": f"{sys.executable} -c \"import os; print('CVD=' + "
            f"os.environ['CUDA_VISIBLE_DEVICES']); print('hello')\"",
            "resources": {"cpu": 0.5, "gpu": 1},
        }
    )
    w = orion.wait(wid)
    assert w["status"] == "completed", (w, orion.logs(wid))
    logs = orion.logs(wid)
    assert "hello" in logs and "CVD=" in logs
    assert len(logs.split("CVD=")[1].split()[0].split(",")) == 1
    assert "Runtime env is setting up" not in logs
    from ray.job_submission import JobSubmissionClient

    job = JobSubmissionClient(ray_cluster.dashboard_url).get_job_info(f"orion-{wid}-1")
    assert job.metadata["orion_workload_id"] == wid
    assert job.metadata["orion_tenant_id"] == "default"


def test_failing_job_reports_exit_code(orion):
    wid = orion.submit(
        {"workload_type": "job", "entrypoint": "echo oops >&2; exit 3", "resources": {"cpu": 0.5}}
    )
    w = orion.wait(wid)
    assert w["status"] == "failed"
    assert "exit code 3" in w["error"]
    assert "oops" in orion.logs(wid)


def test_task_result_must_be_json(orion):
    wid = orion.submit({"workload_type": "task", "function": "tests.integration.helpers:not_json"})
    w = orion.wait(wid)
    assert w["status"] == "failed" and "JSON" in w["error"]


def test_task_logs_are_kept(orion):
    wid = orion.submit(
        {"workload_type": "task", "function": "tests.integration.helpers:fail", "args": ["kaput"]}
    )
    w = orion.wait(wid)
    assert w["status"] == "failed" and "kaput" in w["error"]
    assert "about to fail" in orion.logs(wid)


def _pin(orion, on: bool) -> None:
    """Turn ``scheduler.pin_single_bundle_tasks`` on or off in the module's running Orion (the
    scheduler reads it each cycle), instead of starting a second Orion."""
    ray.get(
        orion.actor.__ray_call__.remote(
            lambda self: setattr(self.scheduler.config, "pin_single_bundle_tasks", on)
        ),
        timeout=30,
    )


def test_a_pinned_task_runs_on_the_chosen_node_without_a_group(orion):
    _pin(orion, True)
    try:
        cpu = orion.submit(
            {"workload_type": "task", "function": "tests.integration.helpers:where", "resources": {"cpu": 1}},
            tenant="team-a",
        )
        gpu = orion.submit(
            {
                "workload_type": "task",
                "function": "tests.integration.helpers:where",
                "resources": {"cpu": 0.5, "gpu": 1, "gpu_type": "H100"},
            }
        )
        results = {wid: orion.wait(wid) for wid in (cpu, gpu)}
    finally:
        _pin(orion, False)
    h100 = [n["NodeID"] for n in ray.nodes() if n["Labels"].get("ray.io/accelerator-type") == "H100"][0]
    for wid, w in results.items():
        assert w["status"] == "completed", w
        assert [h["status"] for h in w["history"]] == [
            "submitted",
            "queued",
            "starting",
            "running",
            "completed",
        ]
        r = w["result"]
        assert r["node"] == w["worker_id"] == w["placement"][0]["node_id"]  # where Orion chose
        assert r["pg"] is None and pg_state(wid) is None  # no group, not even a removed one
        assert r["workload_id"] == wid
    assert results[cpu]["result"]["tenant"] == "team-a"  # workers shared within a tenant only
    assert results[gpu]["result"]["tenant"] == "default"
    assert results[gpu]["result"]["node"] == h100 and len(results[gpu]["result"]["gpu_ids"]) == 1
    # the setting off again: the next task has its group, as before
    wid = orion.submit({"workload_type": "task", "function": "tests.integration.helpers:where"})
    w = orion.wait(wid)
    assert w["status"] == "completed" and w["result"]["pg"] is not None, w
    assert w["result"]["tenant"] == "default"  # a group's worker carries its tenant's marker too
